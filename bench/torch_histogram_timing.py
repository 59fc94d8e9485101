#!/usr/bin/python3
"""Times PyTorch 1.13's HistogramObserver on the batches calibration_benchmark gives it.

Reads two raw little-endian float32 files (batch 1, batch 2), and per repetition builds a fresh
HistogramObserver() (PyTorch's defaults: quint8, per_tensor_affine, 2048 bins), feeds batch 1 then
batch 2 and calls calculate_qparams(), timing the whole. Prints one JSON line: the median seconds,
and the scale (as float32 bits) and zero point, so the benchmark can check it computed the same
qparams. One thread (torch.set_num_threads(1)), like qlab's single-threaded observer.

usage: torch_histogram_timing.py <batch1.f32> <batch2.f32> <repetitions>
"""
import json
import statistics
import struct
import sys
import time

import numpy as np
import torch
from torch.ao.quantization.observer import HistogramObserver


def main():
    torch.set_num_threads(1)
    x1 = torch.from_numpy(np.fromfile(sys.argv[1], dtype=np.float32))
    x2 = torch.from_numpy(np.fromfile(sys.argv[2], dtype=np.float32))
    times = []
    for _ in range(int(sys.argv[3])):
        start = time.perf_counter()
        observer = HistogramObserver()
        observer(x1)
        observer(x2)
        scale, zero_point = observer.calculate_qparams()
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "seconds": statistics.median(times),
        "scale_bits": struct.unpack("<I", struct.pack("<f", float(scale)))[0],
        "zero_point": int(zero_point),
    }))


if __name__ == "__main__":
    main()
