"""qlab for numpy: calibrators, quantization kernels and the PTQ flow of qlab's C++ core.

This package is the Python face of qlab (a C++ harness for neural-network quantization). It is a
thin layer over the pybind11 extension module ``_qlab`` (python/qlab_module.cc): the functions
and classes below validate nothing themselves -- the extension checks every numpy argument once
(dtype, C-contiguity, rank) -- and exist to give each entry point a documented Python signature.

Arrays are never converted silently: pass C-contiguous numpy arrays of the documented dtype
(float32 for real values, int8/uint8/int32 for quantized ones). Errors from qlab arrive as
Python exceptions carrying qlab's message:

    ValueError   invalid argument (bad spec, range, axis, shape, NaN in calibration data ...)
    TypeError    an argument of the wrong type or dtype
    OSError      a file that is missing or malformed (observer files, weights)
    RuntimeError anything else (e.g. qparams asked of an observer that saw nothing)

Example::

    import numpy as np, qlab
    obs = qlab.Observer("histogram")
    obs.observe(np.random.default_rng(0).standard_normal(10000, dtype=np.float32))
    qp = obs.compute_qparams(dtype="uint8")          # PyTorch 1.13's qparams
    y = qlab.fake_quantize(x, qp["scales"][0], qp["zero_points"][0], 0, 255)

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
    "Model",
    "model_names",
    "ptq",
]

# Calibrators (calibration/registry.h): classes and functions documented in the extension.
Observer = _qlab.Observer
load_observer = _qlab.load_observer
observer_names = _qlab.observer_names

# The flow (models/, quant/, engine/).
Model = _qlab.Model
model_names = _qlab.model_names


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
    """Quantizes float32 ``x``: ``q = clamp(round_half_even(x * (1/scale)) + zero_point, min, max)``.

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

    ``(clamp(round_half_even(x * (1/scale)) + zero_point, quant_min, quant_max) - zero_point) * scale``
    in float32
    -- bit-identical to ``torch.fake_quantize_per_tensor_affine`` (``axis=None``) and
    ``torch.fake_quantize_per_channel_affine`` (``axis`` given). Any range within +-2^24 works
    (4-bit, 2-bit ...).
    """
    return _qlab.fake_quantize(x, scale, zero_point, quant_min, quant_max, axis)
