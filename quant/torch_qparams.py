#!/usr/bin/python3
"""PyTorch's qparams for a list of observed ranges: the reference qparams_conformance_test uses.

Reads a JSON list of cases (float32 values passed as their IEEE bit patterns, so nothing is lost
in decimal round trips), runs PyTorch 1.13's observer arithmetic (`_calculate_qparams` of a
MinMaxObserver / PerChannelMinMaxObserver configured like the case) and writes the scales (as
bit patterns) and zero points. Used only by tests: qlab itself never calls PyTorch.

usage: torch_qparams.py <cases.json> <results.json>
"""
import json
import struct
import sys

import torch
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

DTYPES = {"int8": torch.qint8, "uint8": torch.quint8}
QSCHEMES = {
    "per_tensor_affine": torch.per_tensor_affine,
    "per_tensor_symmetric": torch.per_tensor_symmetric,
    "per_channel_affine": torch.per_channel_affine,
    "per_channel_symmetric": torch.per_channel_symmetric,
}
DEFAULT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def from_bits(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def to_bits(value):
    return struct.unpack("<I", struct.pack("<f", value))[0]


def qparams(case):
    dtype = case["dtype"]
    kwargs = dict(dtype=DTYPES[dtype], qscheme=QSCHEMES[case["qscheme"]],
                  eps=from_bits(case["eps_bits"]))
    # Pass the range only when it is not the dtype's default: PyTorch's zero point rule for
    # symmetric uint8 depends on whether the range was customized.
    if (case["quant_min"], case["quant_max"]) != DEFAULT_RANGES[dtype]:
        kwargs.update(quant_min=case["quant_min"], quant_max=case["quant_max"])
    per_channel = case["qscheme"].startswith("per_channel")
    observer = PerChannelMinMaxObserver(ch_axis=0, **kwargs) if per_channel \
        else MinMaxObserver(**kwargs)
    mins = torch.tensor([from_bits(b) for b in case["min_bits"]], dtype=torch.float32)
    maxs = torch.tensor([from_bits(b) for b in case["max_bits"]], dtype=torch.float32)
    if not per_channel:
        mins, maxs = mins[0], maxs[0]
    scale, zero_point = observer._calculate_qparams(mins, maxs)
    return {"scale_bits": [to_bits(float(s)) for s in scale.reshape(-1)],
            "zero_points": [int(z) for z in zero_point.reshape(-1)]}


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    with open(sys.argv[2], "w") as f:
        json.dump([qparams(case) for case in cases], f)


if __name__ == "__main__":
    main()
