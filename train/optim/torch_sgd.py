#!/usr/bin/python3
"""PyTorch 1.13 side of sgd_test: torch.optim.SGD run on the parameters and gradients qlab's test
drew, so the test can compare qlab's Sgd with it.

Test-only (qlab never calls PyTorch). Files are safetensors, written and read here by hand with
struct/json/numpy (Debian has no `safetensors` package).

  torch_sgd.py <dir> <case>...
      Reads <dir>/<case>.in.safetensors:
        tensors   "param.<name>" float32[size]         initial values
                  "grad.<name>"  float32[steps, size]  the gradient of every step
                  "lr"           float32[steps]        the learning rate of every step
        metadata  "names" (comma-separated, registration order), "decay_names" (the parameters
                  weight decay applies to), "momentum", "dampening", "weight_decay" (float.hex of
                  the float32 values), "nesterov" ("true"/"false").
      Runs torch.optim.SGD twice, with foreach=False (_single_tensor_sgd) and foreach=True
      (_multi_tensor_sgd), two parameter groups (with and without weight decay), setting each
      group's lr and every p.grad before each step. Writes <dir>/<case>.torch.safetensors with
      "<impl>.param.<name>" and "<impl>.momentum.<name>" (impl: single, foreach; no momentum
      tensors when momentum is 0).
"""
import json
import os
import struct
import sys

import numpy as np
import torch

assert sys.byteorder == "little"


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype="<f4").copy().reshape(info["shape"])
        tensors[name] = torch.from_numpy(array)
    return tensors, metadata


def write_safetensors(path, tensors):
    """name -> float32 torch tensor, sorted by name (one dtype)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def run_case(tensors, metadata, foreach):
    names = metadata["names"].split(",")
    decay_names = set(filter(None, metadata["decay_names"].split(",")))
    momentum = float.fromhex(metadata["momentum"])
    dampening = float.fromhex(metadata["dampening"])
    weight_decay = float.fromhex(metadata["weight_decay"])
    nesterov = metadata["nesterov"] == "true"
    params = {n: torch.nn.Parameter(tensors["param." + n].clone()) for n in names}
    groups = [
        {"params": [params[n] for n in names if n in decay_names], "weight_decay": weight_decay},
        {"params": [params[n] for n in names if n not in decay_names], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    lrs = tensors["lr"]
    optimizer = torch.optim.SGD(groups, lr=float(lrs[0]), momentum=momentum, dampening=dampening,
                                nesterov=nesterov, foreach=foreach)
    for step in range(lrs.shape[0]):
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[step])  # the float32 value, exactly, as a Python float
        for n in names:
            params[n].grad = tensors["grad." + n][step].clone()
        optimizer.step()
    impl = "foreach" if foreach else "single"
    out = {}
    for n in names:
        out[impl + ".param." + n] = params[n].detach()
        buf = optimizer.state[params[n]].get("momentum_buffer")
        if buf is not None:
            out[impl + ".momentum." + n] = buf
    return out


def main():
    directory = sys.argv[1]
    for case in sys.argv[2:]:
        tensors, metadata = read_safetensors(os.path.join(directory, case + ".in.safetensors"))
        out = {}
        for foreach in (False, True):
            out.update(run_case(tensors, metadata, foreach))
        write_safetensors(os.path.join(directory, case + ".torch.safetensors"), out)


if __name__ == "__main__":
    main()
