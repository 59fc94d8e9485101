"""Quantizes the shared CIFAR-10 ResNet20 with qlab from Python and prints accuracy and latency.

The Python counterpart of `bazel run //experiments:ptq` for a notebook user: load the pretrained
checkpoint, calibrate the backend quantizer on CIFAR-10 training images (a seeded subset, the one
experiments/ptq picks for the same seed), evaluate FP32, fake-quant and int8 on the first test
images, and time both engines on numpy batches. Images are decoded and preprocessed by qlab's C++
data pipeline (models/data), as the checkpoint was trained (ImageNet mean/std).

    bazel run //python:quantize_resnet20 -- [--data_root ../shared/data] [--eval_images 2000]
or, after `bazel build //python:qlab`, from the repository root,
    PYTHONPATH=python:bazel-bin/python /usr/bin/python3 python/examples/quantize_resnet20.py
"""

import argparse
import os
import time

import numpy as np

import qlab


def median_ms(fn, x, runs):
    fn(x)  # warm-up: engines plan buffers on the first run of a batch size
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_root", default="",
                        help="the data folder; empty: ../shared/data beside the workspace")
    parser.add_argument("--eval_images", type=int, default=2000, help="0: all 10,000")
    parser.add_argument("--calib_images", type=int, default=512)
    parser.add_argument("--calib_seed", type=int, default=0)
    parser.add_argument("--quantizer", default="xnnpack")
    parser.add_argument("--calibrator", default="", help="registry spec; empty: the backend's")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    root = qlab.data_root(args.data_root)
    weights = os.path.join(root, "cifar10-resnet-akamaster", "resnet20.safetensors")
    model = qlab.Model("resnet20", weights, threads=args.threads)

    t0 = time.perf_counter()
    model.quantize_on_dataset("cifar10_train", images=args.calib_images, seed=args.calib_seed,
                              quantizer=args.quantizer, calibrator=args.calibrator,
                              data_root=root)
    print("quantized (%s, %s) on %d training images in %.1f s; %s" %
          (args.quantizer, args.calibrator or "backend default", args.calib_images,
           time.perf_counter() - t0, model.lowering_report()))

    results = {engine: model.evaluate("cifar10_test", engine=engine, images=args.eval_images,
                                      data_root=root)
               for engine in ("fp32", "fake_quant", "int8")}
    fp32, int8 = results["fp32"]["top1"], results["int8"]["top1"]
    agree = np.mean(np.equal(results["int8"]["predictions"], results["fake_quant"]["predictions"]))
    print("top-1 on %d test images: fp32 %.2f%%  fake-quant %.2f%%  int8 %.2f%%  "
          "(int8 - fp32 %+.2f points; int8 agrees with fake-quant on %.1f%% of images)" %
          (results["int8"]["images"], 100 * fp32, 100 * results["fake_quant"]["top1"], 100 * int8,
           100 * (int8 - fp32), 100 * agree))

    # Latency does not depend on the pixels: numpy batches of normalized-looking noise.
    rng = np.random.default_rng(0)
    for batch in (1, 100):
        x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        print("latency batch %3d (median of 20): fp32 %.2f ms  int8 %.2f ms" %
              (batch, median_ms(model.run_fp32, x, 20), median_ms(model.run_int8, x, 20)))


if __name__ == "__main__":
    main()
