#!/usr/bin/python3
"""PyTorch 1.13 side of the train/ops tests: forward and backward of the same ops, on the same data.

Test-only (qlab never calls PyTorch). Run by each train/ops test binary once, as
  /usr/bin/python3 train/ops/torch_ops_grad.py <family> <out_dir>
with <family> one of batch_norm, pool, cross_entropy, fake_quant. It draws seeded inputs, runs
PyTorch, and writes one safetensors file per case, <out_dir>/<family>.<case>.safetensors, holding
the inputs and PyTorch's outputs, plus <out_dir>/<family>.cases listing the case names in order.
Files are written by hand with struct/json (Debian has no `safetensors` package).

Layouts: activations are stored NHWC as qlab's kernels use them (PyTorch runs on the NCHW
permutation); fake-quant tensors keep PyTorch's own layout with the channel axis stored beside
them. Float inputs are float32. batch_norm and cross_entropy run PyTorch in float64 on those
float32 values (the semantics are checked against an exact-arithmetic result, so the C++ test's
tolerance is its own float rounding only); pool and fake_quant run in float32, whose results
the kernels reproduce exactly.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

assert sys.byteorder == "little"
CODES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}


def write_safetensors(path, tensors):
    """name -> numpy array (float32, float64 or int64)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        data = array.tobytes()
        header[name] = {"dtype": CODES[array.dtype], "shape": list(array.shape),
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


def f32(x):
    """The float32 value of x, as a Python float (so float64 PyTorch sees the kernel's input)."""
    return float(np.float32(x))


def nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


# --- batch norm (float64) -------------------------------------------------------------------
def batch_norm_case(rng, n, h, w, c, eps, momentum, offset):
    eps, momentum = f32(eps), f32(momentum)
    center = rng.uniform(-offset, offset, c) if offset else np.zeros(c)
    spread = rng.uniform(0.2, 2.0, c) if offset else np.ones(c)
    x = (rng.standard_normal((n, h, w, c)) * spread + center).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32) * rng.choice([-1, 1], c).astype(np.float32)
    beta = rng.uniform(-1, 1, c).astype(np.float32)
    running_mean = rng.uniform(-1, 1, c).astype(np.float32)
    running_var = rng.uniform(0.5, 2, c).astype(np.float32)
    dy = rng.standard_normal((n, h, w, c)).astype(np.float32)

    def as_input(a):  # BatchNorm1d's [N, C] when the pixels are 1x1, else NCHW
        return torch.from_numpy(a.reshape(n, c)) if h == w == 1 else nchw(a)

    def as_output(t):
        return t.detach().numpy().reshape(n, 1, 1, c) if h == w == 1 else nhwc(t)

    xt = as_input(x).double().requires_grad_()
    g = torch.from_numpy(gamma).double().requires_grad_()
    b = torch.from_numpy(beta).double().requires_grad_()
    rm = torch.from_numpy(running_mean).double()
    rv = torch.from_numpy(running_var).double()
    y = F.batch_norm(xt, rm, rv, g, b, training=True, momentum=momentum, eps=eps)
    y.backward(as_input(dy).double())
    # Eval mode with the (not yet updated) running statistics.
    xe = as_input(x).double().requires_grad_()
    ge = torch.from_numpy(gamma).double().requires_grad_()
    be = torch.from_numpy(beta).double().requires_grad_()
    ye = F.batch_norm(xe, torch.from_numpy(running_mean).double(),
                      torch.from_numpy(running_var).double(), ge, be, training=False, eps=eps)
    ye.backward(as_input(dy).double())
    _, save_mean, save_invstd = torch.native_batch_norm(
        as_input(x).double(), g.detach(), b.detach(), None, None, True, momentum, eps)
    return {
        "x": x, "gamma": gamma, "beta": beta, "dy": dy,
        "running_mean_in": running_mean, "running_var_in": running_var,
        "eps": np.array([eps]), "momentum": np.array([momentum]),
        "y": as_output(y), "dx": as_output(xt.grad), "dgamma": g.grad.numpy(),
        "dbeta": b.grad.numpy(), "save_mean": save_mean.numpy(),
        "save_invstd": save_invstd.numpy(), "running_mean": rm.numpy(), "running_var": rv.numpy(),
        "eval_y": as_output(ye), "eval_dx": as_output(xe.grad), "eval_dgamma": ge.grad.numpy(),
        "eval_dbeta": be.grad.numpy(),
    }


def batch_norm_cases(rng):
    yield "small", batch_norm_case(rng, 2, 3, 5, 3, 1e-5, 0.1, offset=0)
    yield "offset", batch_norm_case(rng, 3, 5, 7, 6, 1e-3, 0.3, offset=3)
    yield "features", batch_norm_case(rng, 9, 1, 1, 5, 1e-5, 0.1, offset=1)
    yield "blocks", batch_norm_case(rng, 4, 9, 9, 4, 1e-5, 0.1, offset=2)  # 324 rows: 2 blocks


# --- pooling (float32) ------------------------------------------------------------------------
def pool_case(rng, kind, n, h, w, c, k, s, p, ceil, include_pad=True, ties=False):
    if ties:  # few distinct values: many windows hold several maxima
        x = np.round(rng.standard_normal((n, h, w, c)) * 1.5).astype(np.float32)
    else:
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    xt = nchw(x).requires_grad_()
    out = {"x": x}
    if kind == "max":
        y, indices = F.max_pool2d(xt, k, s, p, ceil_mode=ceil, return_indices=True)
        out["indices"] = nhwc(indices)
    elif kind == "avg":
        y = F.avg_pool2d(xt, k, s, p, ceil_mode=ceil, count_include_pad=include_pad)
    else:  # global average pool, as He et al.'s CIFAR ResNets write it
        y = F.avg_pool2d(xt, (h, w))
        k, s, p = (h, w), 1, 0
    kh, kw = (k, k) if isinstance(k, int) else k
    dy = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    y.backward(torch.from_numpy(dy))
    out.update({
        "y": nhwc(y), "dy": nhwc(torch.from_numpy(dy)), "dx": nhwc(xt.grad),
        # kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w, count_include_pad
        "geometry": np.array([kh, kw, s, s, p, p, y.shape[2], y.shape[3], int(include_pad)],
                             dtype=np.int64),
    })
    return out


def pool_cases(rng):
    yield "max_stem", pool_case(rng, "max", 2, 9, 11, 3, 3, 2, 1, False)  # ResNet's stem pool
    yield "max_ceil", pool_case(rng, "max", 1, 7, 8, 5, 2, 2, 0, True)
    yield "max_ties", pool_case(rng, "max", 2, 6, 6, 4, 3, 1, 1, False, ties=True)
    yield "max_overlap", pool_case(rng, "max", 1, 10, 9, 17, 3, 2, 0, True)
    yield "avg_pad", pool_case(rng, "avg", 2, 7, 9, 3, 3, 2, 1, False, include_pad=True)
    yield "avg_pad_excluded", pool_case(rng, "avg", 2, 7, 9, 3, 3, 2, 1, False, include_pad=False)
    yield "avg_ceil", pool_case(rng, "avg", 1, 7, 8, 5, 3, 2, 1, True, include_pad=True)
    yield "avg_ceil_excluded", pool_case(rng, "avg", 1, 7, 8, 5, 3, 2, 1, True, include_pad=False)
    yield "avg_2x2", pool_case(rng, "avg", 2, 8, 8, 4, 2, 2, 0, False)
    yield "global", pool_case(rng, "global", 3, 7, 5, 6, None, None, None, False)


# --- cross-entropy (float64) --------------------------------------------------------------------
def cross_entropy_case(rng, batch, classes, smoothing, scale, ties=False):
    smoothing = f32(smoothing)
    if ties:
        logits = rng.integers(-2, 3, (batch, classes)).astype(np.float32)
    else:
        logits = (rng.standard_normal((batch, classes)) * scale).astype(np.float32)
    labels = rng.integers(0, classes, batch).astype(np.int64)
    lt = torch.from_numpy(logits).double().requires_grad_()
    loss = F.cross_entropy(lt, torch.from_numpy(labels), label_smoothing=smoothing)
    loss.backward()
    correct = int((torch.from_numpy(logits).argmax(dim=1) == torch.from_numpy(labels)).sum())
    return {
        "logits": logits, "labels": labels, "label_smoothing": np.array([smoothing]),
        "loss": np.array([loss.item()]), "dlogits": lt.grad.numpy(),
        "correct": np.array([correct], dtype=np.int64),
    }


def cross_entropy_cases(rng):
    yield "plain", cross_entropy_case(rng, 7, 10, 0.0, 3.0)
    yield "smoothed", cross_entropy_case(rng, 7, 10, 0.1, 3.0)
    yield "ties", cross_entropy_case(rng, 6, 4, 0.25, 1.0, ties=True)
    yield "wide", cross_entropy_case(rng, 3, 100, 0.1, 5.0)


# --- fake quantization (float32) ------------------------------------------------------------
RANGES = {"s8": (-128, 127), "u8": (0, 255), "s4": (-8, 7), "u4": (0, 15), "s2": (-2, 1),
          "u2": (0, 3)}


def channel_view(shape, axis):
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, shape[axis], inner


def quantizable_input(rng, shape, axis, scales, zero_points, qmin, qmax):
    """x spread over the quantization grid and two steps beyond each end (so that both clamps
    are hit), with a tenth of the elements on exact half-steps (rounding ties)."""
    if len(scales) == 1:  # per tensor
        outer, channels, inner = 1, 1, int(np.prod(shape))
    else:
        outer, channels, inner = channel_view(shape, axis)
    steps = rng.uniform(-2.0, 2.0 + qmax - qmin, (outer, channels, inner))
    tie = rng.random((outer, channels, inner)) < 0.1
    steps = np.where(tie, np.floor(steps) + 0.5, steps)
    zp = np.asarray(zero_points, dtype=np.float64).reshape(1, channels, 1)
    scale = np.asarray(scales, dtype=np.float32).reshape(1, channels, 1)
    grid = (steps + qmin - np.round(zp)).astype(np.float32)
    return (grid * scale).astype(np.float32).reshape(shape)


def learnable_zero_points(qmin, qmax):
    """Learned (float) zero points: half-way ties (nearbyint rounds to even, the per-tensor
    backward's +0.5 truncation does not), values outside the range, negative values."""
    mid = (qmin + qmax) // 2
    return [qmin + 0.5, mid + 0.5, mid - 0.3, qmax + 1.25, qmin - 2.5, -1.5, 0.0]


def grad_factor(numel, qmax):
    return f32(1.0 / math.sqrt(numel * qmax))  # LSQ's, rounded as the float kernel sees it


def fake_quant_cases(rng):
    for rname, (qmin, qmax) in RANGES.items():
        # Straight-through fake quantization, per tensor on an NCHW activation.
        shape = (2, 5, 3, 7)
        scale = f32(rng.uniform(0.02, 0.2))
        zp = int(rng.integers(qmin, qmax + 1))
        x = quantizable_input(rng, shape, 0, [scale], [zp], qmin, qmax)
        dy = rng.standard_normal(shape).astype(np.float32)
        xt = torch.from_numpy(x).requires_grad_()
        y = torch.fake_quantize_per_tensor_affine(xt, scale, zp, qmin, qmax)
        y.backward(torch.from_numpy(dy))
        yield f"ste_tensor_{rname}", {
            "x": x, "dy": dy, "scale": np.array([scale], dtype=np.float32),
            "zero_point": np.array([zp], dtype=np.int64),
            "range": np.array([qmin, qmax], dtype=np.int64),
            "y": y.detach().numpy(), "dx": xt.grad.numpy()}

        # Straight-through, per channel along axis 1 (activation channels).
        axis = 1
        scales = rng.uniform(0.02, 0.2, shape[axis]).astype(np.float32)
        zps = rng.integers(qmin, qmax + 1, shape[axis]).astype(np.int32)
        x = quantizable_input(rng, shape, axis, scales, zps, qmin, qmax)
        dy = rng.standard_normal(shape).astype(np.float32)
        xt = torch.from_numpy(x).requires_grad_()
        y = torch.fake_quantize_per_channel_affine(xt, torch.from_numpy(scales),
                                                   torch.from_numpy(zps), axis, qmin, qmax)
        y.backward(torch.from_numpy(dy))
        yield f"ste_channel_{rname}", {
            "x": x, "dy": dy, "scale": scales, "zero_point": zps.astype(np.int64),
            "axis": np.array([axis], dtype=np.int64),
            "range": np.array([qmin, qmax], dtype=np.int64),
            "y": y.detach().numpy(), "dx": xt.grad.numpy()}

        # LSQ per tensor: one case per kind of learned zero point.
        for i, zp in enumerate(learnable_zero_points(qmin, qmax)):
            zp = f32(zp)
            scale = f32(rng.uniform(0.02, 0.2))
            x = quantizable_input(rng, shape, 0, [scale], [min(max(zp, qmin), qmax)], qmin, qmax)
            dy = rng.standard_normal(shape).astype(np.float32)
            gf = grad_factor(x.size, qmax)
            xt = torch.from_numpy(x).requires_grad_()
            st = torch.tensor([scale], dtype=torch.float32, requires_grad=True)
            zt = torch.tensor([zp], dtype=torch.float32, requires_grad=True)
            y = torch._fake_quantize_learnable_per_tensor_affine(xt, st, zt, qmin, qmax, gf)
            y.backward(torch.from_numpy(dy))
            yield f"lsq_tensor_{rname}_{i}", {
                "x": x, "dy": dy, "scale": np.array([scale], dtype=np.float32),
                "zero_point": np.array([zp], dtype=np.float32),
                "grad_factor": np.array([gf]), "range": np.array([qmin, qmax], dtype=np.int64),
                "y": y.detach().numpy(), "dx": xt.grad.numpy(), "dscale": st.grad.numpy(),
                "dzero_point": zt.grad.numpy()}

        # LSQ per channel: OIHW weights along axis 0 and an NCHW activation along axis 1.
        for shape, axis in (((6, 3, 3, 3), 0), ((2, 5, 3, 7), 1)):
            channels = shape[axis]
            zps = np.array((learnable_zero_points(qmin, qmax) * 2)[:channels], dtype=np.float32)
            scales = rng.uniform(0.02, 0.2, channels).astype(np.float32)
            x = quantizable_input(rng, shape, axis, scales, np.clip(zps, qmin, qmax), qmin, qmax)
            dy = rng.standard_normal(shape).astype(np.float32)
            gf = grad_factor(x.size // channels, qmax)
            xt = torch.from_numpy(x).requires_grad_()
            st = torch.from_numpy(scales.copy()).requires_grad_()
            zt = torch.from_numpy(zps.copy()).requires_grad_()
            y = torch._fake_quantize_learnable_per_channel_affine(xt, st, zt, axis, qmin, qmax,
                                                                  gf)
            y.backward(torch.from_numpy(dy))
            yield f"lsq_channel_{rname}_axis{axis}", {
                "x": x, "dy": dy, "scale": scales, "zero_point": zps,
                "axis": np.array([axis], dtype=np.int64), "grad_factor": np.array([gf]),
                "range": np.array([qmin, qmax], dtype=np.int64),
                "y": y.detach().numpy(), "dx": xt.grad.numpy(), "dscale": st.grad.numpy(),
                "dzero_point": zt.grad.numpy()}

        yield from lsq_term_cases(rng, rname, qmin, qmax)


def lsq_term_cases(rng, rname, qmin, qmax):
    """Per-element LSQ gradients, exactly comparable: per channel with one element per channel
    (each dscale[c] is a single term, so no summation order is involved), and per tensor one
    element per call."""
    n = 256
    candidates = learnable_zero_points(qmin, qmax)
    zps = np.array([candidates[i % len(candidates)] for i in range(n)], dtype=np.float32)
    zps = np.where(rng.random(n) < 0.5, zps, rng.uniform(qmin - 2, qmax + 2, n)).astype(np.float32)
    scales = rng.uniform(0.02, 0.2, n).astype(np.float32)
    x = quantizable_input(rng, (n, 1), 0, scales, np.clip(np.round(zps), qmin, qmax), qmin, qmax)
    dy = rng.standard_normal((n, 1)).astype(np.float32)
    gf = f32(0.37)
    xt = torch.from_numpy(x).requires_grad_()
    st = torch.from_numpy(scales.copy()).requires_grad_()
    zt = torch.from_numpy(zps.copy()).requires_grad_()
    y = torch._fake_quantize_learnable_per_channel_affine(xt, st, zt, 0, qmin, qmax, gf)
    y.backward(torch.from_numpy(dy))
    yield f"lsq_channel_terms_{rname}", {
        "x": x, "dy": dy, "scale": scales, "zero_point": zps,
        "axis": np.array([0], dtype=np.int64), "grad_factor": np.array([gf]),
        "range": np.array([qmin, qmax], dtype=np.int64),
        "y": y.detach().numpy(), "dx": xt.grad.numpy(), "dscale": st.grad.numpy(),
        "dzero_point": zt.grad.numpy()}

    m = 64
    out = {k: np.zeros(m, dtype=np.float32) for k in ("y", "dx", "dscale", "dzero_point")}
    for i in range(m):
        xi = torch.from_numpy(x[i]).requires_grad_()
        si = torch.tensor([scales[i]], requires_grad=True)
        zi = torch.tensor([zps[i]], requires_grad=True)
        yi = torch._fake_quantize_learnable_per_tensor_affine(xi, si, zi, qmin, qmax, gf)
        yi.backward(torch.from_numpy(dy[i]))
        out["y"][i], out["dx"][i] = yi.item(), xi.grad.item()
        out["dscale"][i], out["dzero_point"][i] = si.grad.item(), zi.grad.item()
    yield f"lsq_tensor_terms_{rname}", dict(
        out, x=x[:m, 0], dy=dy[:m, 0], scale=scales[:m], zero_point=zps[:m],
        grad_factor=np.array([gf]), range=np.array([qmin, qmax], dtype=np.int64))


FAMILIES = {"batch_norm": batch_norm_cases, "pool": pool_cases,
            "cross_entropy": cross_entropy_cases, "fake_quant": fake_quant_cases}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in FAMILIES:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(FAMILIES)}}} <out_dir>")
    family, out_dir = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(20240801)
    names = []
    for name, tensors in FAMILIES[family](rng):
        arrays = {}
        for key, value in tensors.items():
            value = np.asarray(value)
            if value.dtype == np.int32:
                value = value.astype(np.int64)
            arrays[key] = value
        write_safetensors(os.path.join(out_dir, f"{family}.{name}.safetensors"), arrays)
        names.append(name)
    with open(os.path.join(out_dir, f"{family}.cases"), "w") as f:
        f.write("".join(n + "\n" for n in names))
    print(f"torch_ops_grad.py: {len(names)} {family} cases, torch {torch.__version__}")


if __name__ == "__main__":
    main()
