#!/usr/bin/python3
"""PyTorch 1.13's observers fed the same batches as qlab's: the reference for the calibration
conformance tests.

Reads a JSON list of cases, each naming a PyTorch observer, its configuration and a list of
batches (float32 values passed as IEEE bit patterns so nothing is lost in decimal round trips),
feeds the batches in order, and writes per case the observer's scale (bit patterns), zero points
and min/max (bit patterns). Used only by tests: qlab itself never calls PyTorch.

usage: torch_observers.py <cases.json> <results.json>
"""
import json
import struct
import sys

import numpy as np
import torch
from torch.ao.quantization import observer as obs

DTYPES = {"int8": torch.qint8, "uint8": torch.quint8}
QSCHEMES = {
    "per_tensor_affine": torch.per_tensor_affine,
    "per_tensor_symmetric": torch.per_tensor_symmetric,
    "per_channel_affine": torch.per_channel_affine,
    "per_channel_symmetric": torch.per_channel_symmetric,
}
DEFAULT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def to_bits(values):
    return [int(b) for b in np.asarray(values, dtype=np.float32).reshape(-1).view(np.uint32)]


def from_bits(bits, shape):
    return torch.from_numpy(np.asarray(bits, dtype=np.uint32).view(np.float32).reshape(shape))


def make_observer(case):
    dtype = case["dtype"]
    kwargs = dict(dtype=DTYPES[dtype], qscheme=QSCHEMES[case["qscheme"]])
    # Pass the range only when it is not the dtype's default: PyTorch's symmetric uint8 zero
    # point depends on whether the range was customized.
    if (case["quant_min"], case["quant_max"]) != DEFAULT_RANGES[dtype]:
        kwargs.update(quant_min=case["quant_min"], quant_max=case["quant_max"])
    kind = case["observer"]
    if kind == "minmax":
        return obs.MinMaxObserver(**kwargs)
    if kind == "moving_average":
        return obs.MovingAverageMinMaxObserver(averaging_constant=case["c"], **kwargs)
    if kind == "per_channel_minmax":
        return obs.PerChannelMinMaxObserver(ch_axis=case["axis"], **kwargs)
    if kind == "per_channel_moving_average":
        return obs.MovingAveragePerChannelMinMaxObserver(
            ch_axis=case["axis"], averaging_constant=case["c"], **kwargs)
    if kind == "histogram":
        return obs.HistogramObserver(bins=case["bins"], **kwargs)
    raise ValueError("unknown observer " + kind)


def run(case):
    observer = make_observer(case)
    for batch in case["batches"]:
        observer(from_bits(batch["bits"], batch["shape"]))
    scale, zero_point = observer.calculate_qparams()
    return {"scale_bits": to_bits(scale.float().numpy()),
            "zero_points": [int(z) for z in zero_point.reshape(-1)],
            "min_bits": to_bits(observer.min_val.numpy()),
            "max_bits": to_bits(observer.max_val.numpy())}


def main():
    torch.manual_seed(0)
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    with open(sys.argv[2], "w") as f:
        json.dump([run(case) for case in cases], f)


if __name__ == "__main__":
    main()
