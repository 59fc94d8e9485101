#!/usr/bin/python3
"""PyTorch 1.13 side of gemm_layers_torch_test: conv2d / linear forward and autograd gradients.

Test-only (qlab never calls PyTorch).

  torch_gemm_layers.py <dir>

Reads <dir>/cases.txt, one case per line:
  conv <name> <batch> <in_h> <in_w> <in_c> <out_c> <kh> <kw> <sh> <sw> <ph> <pw> <dh> <dw>
  linear <name> <batch> <in> <out>
and each case's inputs as raw little-endian float32 files <dir>/<name>.{x,w,b,dy}.bin: x and dy
NHWC for convs ([batch][in] / [batch][out] for linears), w OIHW ([out][in]), b [out]. Runs
torch.nn.functional.conv2d / linear in float32 with autograd (y.backward(dy)) and writes
<dir>/<name>.torch_{y,dx,dw,db}.bin in the same layouts.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

assert sys.byteorder == "little"


def load(directory, name, what, shape):
    data = np.fromfile(os.path.join(directory, "%s.%s.bin" % (name, what)), dtype="<f4")
    return torch.from_numpy(data.reshape(shape).copy())


def save(directory, name, what, tensor):
    tensor.detach().contiguous().numpy().astype("<f4").tofile(
        os.path.join(directory, "%s.torch_%s.bin" % (name, what)))


def run_conv(directory, name, n, ih, iw, c, oc, kh, kw, sh, sw, ph, pw, dh, dw):
    x = load(directory, name, "x", (n, ih, iw, c)).permute(0, 3, 1, 2).contiguous()
    w = load(directory, name, "w", (oc, c, kh, kw))
    b = load(directory, name, "b", (oc,))
    for t in (x, w, b):
        t.requires_grad_(True)
    y = F.conv2d(x, w, b, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
    _, _, oh, ow = y.shape
    dy = load(directory, name, "dy", (n, oh, ow, oc)).permute(0, 3, 1, 2).contiguous()
    y.backward(dy)
    save(directory, name, "y", y.permute(0, 2, 3, 1))
    save(directory, name, "dx", x.grad.permute(0, 2, 3, 1))
    save(directory, name, "dw", w.grad)
    save(directory, name, "db", b.grad)


def run_linear(directory, name, n, fan_in, fan_out):
    x = load(directory, name, "x", (n, fan_in))
    w = load(directory, name, "w", (fan_out, fan_in))
    b = load(directory, name, "b", (fan_out,))
    for t in (x, w, b):
        t.requires_grad_(True)
    y = F.linear(x, w, b)
    y.backward(load(directory, name, "dy", (n, fan_out)))
    save(directory, name, "y", y)
    save(directory, name, "dx", x.grad)
    save(directory, name, "dw", w.grad)
    save(directory, name, "db", b.grad)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    directory = sys.argv[1]
    torch.set_num_threads(1)
    with open(os.path.join(directory, "cases.txt")) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            kind, name, dims = fields[0], fields[1], [int(v) for v in fields[2:]]
            if kind == "conv":
                run_conv(directory, name, *dims)
            elif kind == "linear":
                run_linear(directory, name, *dims)
            else:
                sys.exit("unknown case kind: " + kind)


if __name__ == "__main__":
    main()
