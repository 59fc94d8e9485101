#!/usr/bin/python3
"""PyTorch 1.13's ResNet latency on this machine, for bench/resnet_latency_benchmark.

  torch_resnet_latency.py <resnet18|resnet50> <threads> <runs>

Times torchvision's model at batch 1, 3x224x224, with `threads` threads: FP32 as
torch.jit.trace + freeze + optimize_for_inference (oneDNN), and int8 as FX post-training
quantization with the onednn engine and its default qconfig mapping (calibrated on 4 random
images: latency does not depend on the calibration), traced and frozen. Random-init weights.
Prints JSON: {"fp32_ms": [...], "int8_ms": [...]} (every timed run, after 10 warm-up runs).
"""
import json
import sys
import time

import torch
import torchvision
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx


def timings(model, x, runs):
    with torch.no_grad():
        for _ in range(10):
            model(x)
        ms = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            ms.append(1e3 * (time.perf_counter() - start))
    return ms


def main():
    name, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        fp32 = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
    fp32_ms = timings(fp32, x, runs)

    torch.backends.quantized.engine = "onednn"
    prepared = prepare_fx(model, get_default_qconfig_mapping("onednn"), (x,))
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn(1, 3, 224, 224))
    quantized = convert_fx(prepared)
    with torch.no_grad():
        int8 = torch.jit.freeze(torch.jit.trace(quantized, x))
    int8_ms = timings(int8, x, runs)
    print(json.dumps({"fp32_ms": fp32_ms, "int8_ms": int8_ms}))


if __name__ == "__main__":
    main()
