"""qlab for numpy: calibrators, quantization kernels and the PTQ flow of qlab's C++ core.

This package is the Python face of qlab (a C++ harness for neural-network quantization). It is a
thin layer over the pybind11 extension module ``_qlab`` (python/qlab_module.cc): the functions
and classes below validate nothing themselves -- the extension checks every numpy argument once
(dtype, C-contiguity, rank) -- and exist to give each entry point a documented Python signature.

Arrays are never converted silently: pass C-contiguous numpy arrays of the documented dtype
(float32 for real values, int8/uint8/int32 for quantized ones); an array that is not
C-contiguous raises ValueError (use ``numpy.ascontiguousarray``). Inputs are used in place, not
copied: qlab's C++ views the array's memory and holds a reference to it for as long as it needs
it (only an array misaligned for its dtype, e.g. from ``np.frombuffer(buf, offset=1)``, is
copied). Results are numpy arrays over qlab's own result memory, also without a copy. Do not
write to an input array from another thread while a qlab call runs on it. (qconv2d documents
the two cases where it copies: int8 input and groups > 1.) Errors from qlab arrive
as Python exceptions carrying qlab's message:

    ValueError   invalid argument (bad spec, range, axis, shape, NaN in calibration data ...)
    TypeError    an argument of the wrong type or dtype
    OSError      a file that is missing or malformed (observer files, weights, data folder)
    NotImplementedError  something qlab does not support (e.g. a legacy pre-1.6 .pth file)
    RuntimeError anything else (e.g. qparams asked of an observer that saw nothing)

Example::

    import numpy as np, qlab
    obs = qlab.Observer("histogram")
    obs.observe(np.random.default_rng(0).standard_normal(10000, dtype=np.float32))
    qp = obs.compute_qparams(dtype="uint8")          # PyTorch 1.13's qparams
    y = qlab.fake_quantize(x, qp["scales"][0], qp["zero_points"][0], 0, 255)

    # int8 GEMM with requantization to uint8 (kernels/qgemm):
    c = qlab.qgemm(a_u8, 128, w_s8, bias_s32, out_dtype="uint8",
                   multiplier=a_scale * w_scales / c_scale, out_zero_point=3, relu=True)

    # The PTQ flow on the shared data:
    m = qlab.Model("resnet20", weights_path=qlab.data_root() +
                   "/cifar10-resnet-akamaster/resnet20.safetensors")
    m.quantize_on_dataset("cifar10_train", images=512)
    m.evaluate("cifar10_test", engine="int8")["top1"]    # ~0.91

Build and import: see python/README.md (``bazel build //python:qlab``, then
``PYTHONPATH=python:bazel-bin/python`` from the repository root).
"""

import json

import _qlab

__all__ = [
    "Observer",
    "load_observer",
    "observer_names",
    "quantize",
    "dequantize",
    "fake_quantize",
    "qgemm",
    "qconv2d",
    "Model",
    "model_names",
    "data_root",
    "ptq",
]

# Calibrators (calibration/registry.h): classes and functions documented in the extension.
Observer = _qlab.Observer
load_observer = _qlab.load_observer
observer_names = _qlab.observer_names

# The flow (models/, quant/, engine/).
Model = _qlab.Model
model_names = _qlab.model_names
data_root = _qlab.data_root

# Debug helper (not part of the API): (view, address) of the Tensor qlab makes of an array.
_as_tensor_view = _qlab._as_tensor_view


def ptq(config):
    """Post-training quantization end to end; returns the record as a dict.

    `config` is a dict of experiments/ptq.h's PtqConfig fields, e.g.
    ``{"model": "resnet20", "quantizer": "x86", "calibrator": "entropy", "eval_images": 2000}``
    (absent keys keep their defaults: the shared checkpoint, 512 calibration images, the whole
    test set). The record is what ``bazel run //experiments:ptq`` writes: config, inputs digests,
    provenance, FP32 / fake-quant / int8 results, model size, timing. Unknown keys and bad values
    raise ValueError naming the key.
    """
    return json.loads(_qlab.ptq_json(json.dumps(config)))


def quantize(x, scale, zero_point, dtype="int8", quant_min=None, quant_max=None, axis=None):
    """Quantizes float32 ``x``: ``q = clamp(round_half_even(x * (1/scale)) + zp, min, max)``.

    Args:
      x: C-contiguous float32 numpy array (any rank >= 1).
      scale, zero_point: numbers (per tensor) or 1-D sequences with one entry per channel along
        ``axis`` (per channel).
      dtype: "int8" or "uint8", the result's dtype.
      quant_min, quant_max: the integer range; default the dtype's full range.
      axis: None for per-tensor parameters, else the channel axis (negative counts from the end).

    Returns:
      A new numpy array of ``dtype`` with x's shape (it owns its memory).
    """
    return _qlab.quantize(x, scale, zero_point, dtype, quant_min, quant_max, axis)


def dequantize(q, scale, zero_point, quant_min=None, quant_max=None, axis=None):
    """Dequantizes ``q`` (int8, uint8 or int32): ``x = (q - zero_point) * scale`` as float32.

    Arguments as for :func:`quantize`; the dtype is ``q``'s own.
    """
    return _qlab.dequantize(q, scale, zero_point, quant_min, quant_max, axis)


def fake_quantize(x, scale, zero_point, quant_min=-128, quant_max=127, axis=None):
    """Quantize-then-dequantize float32 ``x`` in float32, like PyTorch's fake_quantize.

    ``(clamp(round_half_even(x * (1/scale)) + zero_point, quant_min, quant_max) - zero_point)
    * scale`` in float32
    -- bit-identical to ``torch.fake_quantize_per_tensor_affine`` (``axis=None``) and
    ``torch.fake_quantize_per_channel_affine`` (``axis`` given). Any range within +-2^24 works
    (4-bit, 2-bit ...).
    """
    return _qlab.fake_quantize(x, scale, zero_point, quant_min, quant_max, axis)


_OUTPUT_STAGE_DOC = """
    Output stage (kernels/qgemm/output_stage.h), per output element with n its output channel::

        acc = sum_k (a - a_zero_point) * b            exact in int32 (K <= 65536)
        acc += bias[n]                                when bias is given
        out_dtype="int32":   y = acc                  (multiplier must be None)
        out_dtype="float32": y = float32(acc) * multiplier[n]   (multiplier = a_scale*b_scale[n])
        out_dtype="uint8"/"int8", requantization="float" (XNNPACK's fp32 requantization):
            y = clamp(round_half_even(float32(acc) * multiplier[n]) + out_zero_point,
                      out_min, out_max)           (the round and + zero point in float32)
        requantization="fixed_point" (XNNPACK's rndnu): multiplier[n] in [2^-32, 1) becomes
            (m, s) = quant/qparams.h QuantizeMultiplier: frexp's mantissa * 2^31 rounded half to
            even, s = 31 - exponent; y = clamp(((acc * m + 2^(s-1)) >> s) + out_zero_point, ...)

    multiplier is a number (per tensor) or a 1-D sequence with one entry per output channel
    (per channel), used as float32, finite and > 0; for a requantized output it is
    in_scale * weight_scale[n] / out_scale. out_min/out_max default to out_dtype's range;
    relu=True raises out_min to out_zero_point (quantized 0.0). out_zero_point, out_min,
    out_max, relu and requantization apply to int8/uint8 outputs only.
"""


def qgemm(a, a_zero_point, b, bias=None, *, b_layout="kn", out_dtype="int32", multiplier=None,
          out_zero_point=0, out_min=None, out_max=None, relu=False, requantization="float"):
    return _qlab.qgemm(a, a_zero_point, b, bias, b_layout, out_dtype, multiplier, out_zero_point,
                       out_min, out_max, relu, requantization)


qgemm.__doc__ = """Integer matrix product with a fused output stage: qlab's int8 GEMM kernel.

    ``y[m, n] = stage(sum_k (a[m, k] - a_zero_point) * B[k, n])`` on the kernels/qgemm kernels
    (AVX-512 VNNI where the CPU has it), bit-identical to their scalar reference.

    Args:
      a: activations [M, K], C-contiguous uint8 (a_zero_point in [0, 255]) or int8
        (a_zero_point in [-128, 127]); used in place.
      a_zero_point: int, the activations' zero point.
      b: weights, C-contiguous int8, symmetric (zero point 0): [K, N] with b_layout="kn", or
        [N, K] (PyTorch's Linear.weight, one row per output) with b_layout="nk". Packed for the
        kernel on every call. 1 <= K <= 65536.
      bias: None or int32 [N], added to the accumulators (|bias| <= 2^31 - 1 - K*255*128, so
        that acc + bias cannot overflow).
      out_dtype: "int32" (the raw accumulators + bias), "float32", "uint8" or "int8".
      multiplier, out_zero_point, out_min, out_max, relu, requantization: the output stage.
    {stage}
    Returns:
      A new numpy array [M, N] of out_dtype.

    Raises:
      TypeError for a non-array or a wrong dtype, ValueError for a wrong rank, a non-contiguous
      array, mismatched K, a zero point or clamp outside its type's range, a multiplier that is
      not finite and > 0, or a bias of the wrong length.

    Example (a quantized Linear layer, uint8 in and out, per-channel weight scales)::

        y = qlab.qgemm(x_q, x_zp, w_q, bias_q, b_layout="nk", out_dtype="uint8",
                       multiplier=x_scale * w_scales / y_scale, out_zero_point=y_zp)
    """.format(stage=_OUTPUT_STAGE_DOC)


def qconv2d(x, x_zero_point, w, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
            out_dtype="int32", multiplier=None, out_zero_point=0, out_min=None, out_max=None,
            relu=False, requantization="float", threads=1):
    return _qlab.qconv2d(x, x_zero_point, w, bias, stride, padding, dilation, groups, out_dtype,
                         multiplier, out_zero_point, out_min, out_max, relu, requantization,
                         threads)


qconv2d.__doc__ = """Integer 2-D convolution, NHWC, with a fused output stage: qlab's int8 conv.

    ``y[b, oy, ox, o] = stage(sum_{{ky, kx, c}} (x[b, oy*sh + ky*dh - pt, ox*sw + kx*dw - pl,
    g*C/groups + c] - x_zero_point) * w[o, ky, kx, c])`` with g = o // (O/groups); taps in the
    padding contribute 0 (the input is padded with x_zero_point). Runs kernels/qconv
    (an implicit GEMM on the int8 GEMM kernels), bit-identical to its seven-loop reference.

    Args:
      x: input [N, H, W, C] (NHWC), C-contiguous uint8 (x_zero_point in [0, 255]) or int8
        (x_zero_point in [-128, 127]). uint8 with groups=1 is read in place; int8 is shifted
        to uint8 (x + 128, zero point + 128: the same x - zp) in a copy, and groups > 1 copies
        each group's channels out and its outputs back.
      x_zero_point: int.
      w: filters [O, KH, KW, C/groups] (OHWI), C-contiguous int8, symmetric (zero point 0).
        The kernel reads w in this layout; from PyTorch's OIHW use w.transpose(0, 2, 3, 1).
      bias: None or int32 [O].
      stride: int or (sh, sw), >= 1.
      padding: int, (ph, pw), or (top, bottom, left, right), >= 0 and smaller than the
        (dilated) kernel on each side (kernels/qconv's precondition: every output sees an input).
      dilation: int or (dh, dw), >= 1; computed on the filter spread out with zero taps (exact;
        costs the dilated kernel's MACs).
      groups: divides C and O; C/groups input and O/groups output channels per group.
      out_dtype, multiplier, out_zero_point, out_min, out_max, relu, requantization: the output
        stage, with multipliers per output channel O.
      threads: threads the kernel splits its output tiles over (results do not depend on it).
    {stage}
    Returns:
      A new numpy array [N, OH, OW, O] of out_dtype, OH = (H + pt + pb - dh*(KH-1) - 1) // sh + 1
      (likewise OW).

    Raises:
      TypeError / ValueError as qgemm, and ValueError for groups that do not divide the
      channels, a filter that does not match x's channels, bad stride/padding/dilation or a
      kernel larger than the padded input.
    """.format(stage=_OUTPUT_STAGE_DOC)
