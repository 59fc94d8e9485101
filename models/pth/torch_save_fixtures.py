"""Writes .pth fixtures with PyTorch 1.13's torch.save for models/pth/pth_conformance_test.

Usage: torch_save_fixtures.py OUT_DIR
For each fixture F it writes OUT_DIR/F.pth and the expected tensors: OUT_DIR/F.json maps each
expected name (after qlab strips "module.") to {"dtype", "shape", "offset", "nbytes"} into the raw
little-endian blob OUT_DIR/F.bin, holding what qlab should produce: float32 for floating tensors,
int32 for int64/int32/int16 tensors whose values fit, int8/uint8 as is (bool as uint8), each
materialized contiguous. Names in "skipped" must be reported as skipped, not loaded. A manifest {"same_as": G} means
F.pth must load to exactly G's tensors.
"""
import collections
import json
import sys

import torch
import torchvision


def expected(t):
    t = t.detach()
    if t.is_floating_point():
        return "float32", t.float().contiguous()
    if t.dtype in (torch.int64, torch.int32, torch.int16):
        return "int32", t.to(torch.int32).contiguous()
    if t.dtype == torch.bool:
        return "uint8", t.to(torch.uint8).contiguous()
    return {torch.int8: "int8", torch.uint8: "uint8"}[t.dtype], t.contiguous()


def write(out, name, obj, tensors, skipped=(), same_as=None, **save_args):
    torch.save(obj, f"{out}/{name}.pth", **save_args)
    if same_as is not None:  # expected tensors identical to another fixture's: no second blob
        json.dump({"same_as": same_as}, open(f"{out}/{name}.json", "w"))
        return
    manifest, blob = {"tensors": {}, "skipped": list(skipped)}, bytearray()
    for key, t in tensors.items():
        dtype, e = expected(t)
        raw = e.numpy().tobytes()
        manifest["tensors"][key] = {"dtype": dtype, "shape": list(e.shape), "offset": len(blob),
                                    "nbytes": len(raw)}
        blob += raw
    json.dump(manifest, open(f"{out}/{name}.json", "w"))
    open(f"{out}/{name}.bin", "wb").write(bytes(blob))


def main():
    out = sys.argv[1]
    torch.manual_seed(20240611)
    sd = torchvision.models.resnet18().state_dict()
    # BatchNorm buffers are 0/1 at init; give them values so the comparison means something.
    for k, v in sd.items():
        if k.endswith("running_mean") or k.endswith("running_var"):
            v.copy_(torch.rand_like(v) + 0.1)
        if k.endswith("num_batches_tracked"):
            v.fill_(12345)
    write(out, "resnet18", sd, sd)

    wrapped = {"epoch": 90, "best_prec1": 69.76, "arch": "resnet18",
               "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items())}
    write(out, "wrapped", wrapped, None, same_as="resnet18")

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    mixed = collections.OrderedDict()
    mixed["half"] = torch.randn(5, 3).half()
    mixed["half_special"] = torch.tensor([0.0, -0.0, 1e-7, 65504, float("inf"), -float("inf"),
                                          6.1e-5, 3e-8], dtype=torch.float16)
    mixed["bf16"] = torch.randn(7).bfloat16()
    mixed["double"] = torch.randn(2, 3, dtype=torch.float64)
    mixed["long"] = torch.tensor([-5, 0, 2**31 - 1], dtype=torch.int64)
    mixed["int"] = torch.tensor([[1, -2], [3, 4]], dtype=torch.int32)
    mixed["short"] = torch.tensor([-300, 300], dtype=torch.int16)
    mixed["char"] = torch.tensor([-128, 127], dtype=torch.int8)
    mixed["byte"] = torch.tensor([0, 255], dtype=torch.uint8)
    mixed["bool"] = torch.tensor([True, False, True])
    mixed["scalar"] = torch.tensor(3.5)
    mixed["empty"] = torch.zeros(0, 4)
    mixed["transposed"] = base.t()                     # strides (1, 6)
    mixed["sliced"] = base[1:3, 2:5]                   # offset 8, strides (6, 1)
    mixed["stepped"] = base[:, ::2]                    # strides (6, 2)
    mixed["shared_view"] = base[2]                     # same storage as the three above
    mixed["param"] = torch.nn.Parameter(torch.randn(3, 2))
    too_big = torch.tensor([2**40], dtype=torch.int64)
    saved = collections.OrderedDict(mixed)
    saved["too_big"] = too_big
    write(out, "mixed", saved, mixed, skipped=["too_big"])
    # Protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL) on the same tensors.
    write(out, "protocol4", saved, None, same_as="mixed", pickle_protocol=4)


if __name__ == "__main__":
    main()
