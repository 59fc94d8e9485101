#!/usr/bin/python3
"""PyTorch 1.13's conv2d forward and backward times on this machine, for
bench/train_gemm_layers_benchmark.

  torch_conv_grad.py <threads> <runs> <layer>...

Each <layer> is name:batch:in_c:size:out_c:kernel:stride:pad (square input and kernel, no bias,
as in ResNet). With torch.set_num_threads(threads), float32, for each layer and for both memory
formats (contiguous NCHW, the default, and channels_last, which oneDNN can use without
reordering): after 3 warm-up iterations, `runs` timed forwards (F.conv2d with autograd recording,
as in training) and `runs` timed backwards (y.backward(dy), computing dx and dw; the forward that
records the graph is outside the timed region). Prints JSON:
  {"<name>": {"nchw": {"forward_ms": [...], "backward_ms": [...]}, "nhwc": {...}}, ...}
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def time_layer(batch, in_c, size, out_c, kernel, stride, pad, runs, memory_format):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_c, size, size, generator=gen).contiguous(memory_format=memory_format)
    w = torch.randn(out_c, in_c, kernel, kernel, generator=gen)
    w = w.contiguous(memory_format=memory_format)
    x.requires_grad_(True)
    w.requires_grad_(True)
    out = (size + 2 * pad - kernel) // stride + 1
    dy = torch.randn(batch, out_c, out, out, generator=gen).contiguous(memory_format=memory_format)
    forward_ms, backward_ms = [], []
    for i in range(3 + runs):
        x.grad = None
        w.grad = None
        start = time.perf_counter()
        y = F.conv2d(x, w, None, stride=stride, padding=pad)
        middle = time.perf_counter()
        y.backward(dy)
        end = time.perf_counter()
        if i >= 3:
            forward_ms.append(1e3 * (middle - start))
            backward_ms.append(1e3 * (end - middle))
    return {"forward_ms": forward_ms, "backward_ms": backward_ms}


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    threads, runs = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    results = {}
    for spec in sys.argv[3:]:
        name, *dims = spec.split(":")
        batch, in_c, size, out_c, kernel, stride, pad = (int(v) for v in dims)
        results[name] = {
            "nchw": time_layer(batch, in_c, size, out_c, kernel, stride, pad, runs,
                               torch.contiguous_format),
            "nhwc": time_layer(batch, in_c, size, out_c, kernel, stride, pad, runs,
                               torch.channels_last),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
