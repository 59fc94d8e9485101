"""Quantizes the shared CIFAR-10 ResNet20 with qlab from Python and prints accuracy and latency.

The Python counterpart of `bazel run //experiments:ptq` for a notebook user: load the pretrained
checkpoint, calibrate the xnnpack quantizer on training images, evaluate FP32 and int8 on test
images, time both engines. It reads the shared data's PNGs with a small decoder below (Debian's
python3 here has neither PIL nor torchvision) and normalizes them as the checkpoint was trained
(models/data/transforms.h: ImageNet mean/std).

    bazel run //python:quantize_resnet20 -- [--data_root ../shared/data] [--eval_images 2000]
or, after `bazel build //python:qlab`,
    PYTHONPATH=python:bazel-bin/python /usr/bin/python3 python/examples/quantize_resnet20.py
"""

import argparse
import csv
import os
import struct
import tarfile
import time
import zlib

import numpy as np

import qlab

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


def decode_png(data):
    """8-bit, non-interlaced gray/RGB/RGBA PNG bytes -> uint8 array [H, W, 3]."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace or color not in (0, 2, 6):
                raise ValueError("unsupported PNG (depth %d, color %d)" % (depth, color))
            channels = {0: 1, 2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    stride = width * channels
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        f, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum per channel, mod 256
            cur = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) & 255
        elif f == 2:
            cur = (line + prev) & 255
        else:  # Average / Paeth depend on the byte just decoded: one byte at a time
            cur = line.copy()
            for i in range(stride):
                a = cur[i - channels] if i >= channels else 0
                b = prev[i]
                if f == 3:
                    cur[i] = (cur[i] + ((a + b) >> 1)) & 255
                else:
                    c = prev[i - channels] if i >= channels else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[i] = (cur[i] + pred) & 255
        out[y] = cur
        prev = cur
    img = out.astype(np.uint8).reshape(height, width, channels)
    return np.repeat(img, 3, axis=2) if channels == 1 else img[:, :, :3]


def to_input(images_hwc):
    """uint8 [N, H, W, 3] -> normalized float32 NCHW, rounding as torchvision does."""
    x = images_hwc.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray((x - MEAN) / STD)


def load_test(root, count):
    folder = os.path.join(root, "cifar10-test-png")
    with open(os.path.join(folder, "labels.csv")) as f:
        rows = list(csv.DictReader(f))[:count]
    images = [decode_png(open(os.path.join(folder, "test", r["file"]), "rb").read()) for r in rows]
    return to_input(np.stack(images)), np.array([int(r["label"]) for r in rows])


def load_calibration(root, count, step=97):
    """Every `step`-th PNG of the training archive (it is stored class by class, so a fixed stride
    samples every class) until `count`: deterministic, one pass over the archive."""
    path = os.path.join(root, "cifar10-train-png", "cifar10-train-png.tar.gz")
    images, seen = [], 0
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if not member.name.endswith(".png"):
                continue
            if seen % step == 0:
                images.append(decode_png(tar.extractfile(member).read()))
                if len(images) == count:
                    break
            seen += 1
    return to_input(np.stack(images))


def median_ms(fn, x, runs):
    fn(x)  # warm-up: engines plan buffers on the first run of a batch size
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def accuracy(run, images, labels, batch=100):
    preds = [run(np.ascontiguousarray(images[i:i + batch])).argmax(1)
             for i in range(0, len(images), batch)]
    return float((np.concatenate(preds) == labels).mean())


def main():
    # The shared data sits beside the repository: ../shared/data from its root. Under `bazel run`
    # this file is in the runfiles, so the workspace comes from Bazel's BUILD_WORKSPACE_DIRECTORY.
    workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY",
                               os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_root", default=os.path.join(workspace, "..", "shared", "data"))
    parser.add_argument("--eval_images", type=int, default=2000)
    parser.add_argument("--calib_images", type=int, default=512)
    parser.add_argument("--quantizer", default="xnnpack")
    parser.add_argument("--calibrator", default="", help="registry spec; empty: the backend's")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    weights = os.path.join(args.data_root, "cifar10-resnet-akamaster", "resnet20.safetensors")
    model = qlab.Model("resnet20", weights, threads=args.threads)
    test_x, test_y = load_test(args.data_root, args.eval_images)
    calib_x = load_calibration(args.data_root, args.calib_images)

    t0 = time.perf_counter()
    model.quantize(calib_x, quantizer=args.quantizer, calibrator=args.calibrator)
    print("quantized (%s, %s) on %d images in %.1f s; %s" %
          (args.quantizer, args.calibrator or "backend default", len(calib_x),
           time.perf_counter() - t0, model.lowering_report()))

    fp32 = accuracy(model.run_fp32, test_x, test_y)
    int8 = accuracy(model.run_int8, test_x, test_y)
    print("top-1 on %d test images: fp32 %.2f%%  int8 %.2f%%  (delta %+.2f points)" %
          (len(test_y), 100 * fp32, 100 * int8, 100 * (int8 - fp32)))
    for batch in (1, 100):
        x = np.ascontiguousarray(test_x[:batch])
        print("latency batch %3d (median of 20): fp32 %.2f ms  int8 %.2f ms" %
              (batch, median_ms(model.run_fp32, x, 20), median_ms(model.run_int8, x, 20)))


if __name__ == "__main__":
    main()
