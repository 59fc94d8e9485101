"""qlab.qgemm and qlab.qconv2d against numpy integer references written here.

The references follow the kernels' documented output stage (kernels/qgemm/output_stage.h and the
scalar oracles output_stage_ref.h, kernels/quantize/quantize_ref.h, qconv_ref.h): exact int64
accumulation of (x - zero_point) * w, + bias, then
  float requantization: clamp(rint(float32(acc) * float32(multiplier)) + float32(zp), min, max),
    every step in float32 (numpy's float32 ops are the same IEEE single operations; rint rounds
    half to even like nearbyint);
  fixed point: (m, s) from frexp as quant/qparams.h QuantizeMultiplier (reimplemented below),
    clamp(((acc * m + 2^(s-1)) >> s) + zp, min, max) in int64 (arithmetic shift);
  float32 output: float32(acc) * float32(multiplier).
None of the expected values comes from qlab. Integer math is exact and the float steps are the
same single operations in the same order: results must be equal, no tolerance. Sizes are odd on
purpose (1, 3, 7, 17 ... around the kernels' 16-column panels and 4-byte K groups); every random
draw is seeded.
"""

import math
import unittest

import numpy as np

import qlab

OUT_RANGES = {"uint8": (0, 255), "int8": (-128, 127)}
NP_DTYPES = {"uint8": np.uint8, "int8": np.int8, "int32": np.int32, "float32": np.float32}


def quantize_multiplier(real):
    """quant/qparams.h QuantizeMultiplier: real in [2^-32, 1) -> (m in [2^30, 2^31), s)."""
    mantissa, exponent = math.frexp(float(real))
    m = round(mantissa * 2.0**31)  # Python's round() is half to even, like nearbyint
    s = 31 - exponent
    if m == 2**31:
        m, s = 2**30, s - 1
    if s < 31:
        m, s = 2**31 - 1, 31
    return m, s


def output_stage_ref(acc, bias, out_dtype, multiplier, zp=0, lo=None, hi=None,
                     fixed_point=False):
    """acc: int64 [..., n] exact sums. Returns the stage's output of out_dtype."""
    n = acc.shape[-1]
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    assert np.all(np.abs(acc) < 2**31), "test data must respect the kernel's int32 range"
    if out_dtype == "int32":
        return acc.astype(np.int32)
    mult = np.broadcast_to(np.asarray(multiplier, np.float32).reshape(-1), (n,))
    acc_f32 = acc.astype(np.int32).astype(np.float32)
    if out_dtype == "float32":
        return acc_f32 * mult
    type_lo, type_hi = OUT_RANGES[out_dtype]
    lo = type_lo if lo is None else lo
    hi = type_hi if hi is None else hi
    if fixed_point:
        pairs = [quantize_multiplier(v) for v in mult]
        m = np.array([p[0] for p in pairs], np.int64)
        s = np.array([p[1] for p in pairs], np.int64)
        y = ((acc * m + (np.int64(1) << (s - 1))) >> s) + zp
        return np.clip(y, lo, hi).astype(NP_DTYPES[out_dtype])
    y = np.rint(acc_f32 * mult) + np.float32(zp)  # float32 throughout
    y = np.minimum(np.maximum(y, np.float32(lo)), np.float32(hi))
    return y.astype(NP_DTYPES[out_dtype])


def gemm_acc_ref(a, a_zp, b_kn):
    return (a.astype(np.int64) - a_zp) @ b_kn.astype(np.int64)


def conv_acc_ref(x, x_zp, w, stride, padding, dilation, groups):
    """Plain NHWC/OHWI convolution in int64; padding = (top, bottom, left, right)."""
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    sh, sw = stride
    dh, dw = dilation
    pt, pb, pl, pr = padding
    xc = np.zeros((n, h + pt + pb, wd + pl + pr, c), np.int64)  # zero after subtracting x_zp
    xc[:, pt:pt + h, pl:pl + wd, :] = x.astype(np.int64) - x_zp
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    acc = np.zeros((n, oh, ow, o), np.int64)
    for g in range(groups):
        for ky in range(kh):
            for kx in range(kw):
                patch = xc[:, ky * dh:ky * dh + sh * (oh - 1) + 1:sh,
                           kx * dw:kx * dw + sw * (ow - 1) + 1:sw, g * cg:(g + 1) * cg]
                acc[..., g * og:(g + 1) * og] += patch @ w[g * og:(g + 1) * og, ky, kx, :].T.astype(
                    np.int64)
    return acc


def random_activations(rng, shape, dtype):
    lo, hi = OUT_RANGES[dtype]
    return rng.integers(lo, hi + 1, shape).astype(NP_DTYPES[dtype])


def random_stage(rng, out_dtype, channels, k, per_channel, fixed_point):
    """Output-stage arguments that spread outputs over the whole range (some clamp)."""
    if out_dtype == "int32":
        return {}
    count = channels if per_channel else 1
    # |acc| is typically ~ sqrt(K) * 74 * 64 (uniform bytes): scale that to ~+-100 steps.
    mult = (rng.uniform(0.3, 3.0, count) * 30.0 / (math.sqrt(k) * 74.0 * 64.0)).astype(np.float32)
    stage = {"out_dtype": out_dtype, "multiplier": mult if per_channel else float(mult[0])}
    if out_dtype in OUT_RANGES:
        lo, hi = OUT_RANGES[out_dtype]
        stage["out_zero_point"] = int(rng.integers(lo, hi + 1))
        if rng.random() < 0.3:
            stage["relu"] = True
        elif rng.random() < 0.3:
            stage["out_min"], stage["out_max"] = lo + 5, hi - 7
        if fixed_point:
            stage["requantization"] = "fixed_point"
    return stage


def expected_from_stage(acc, bias, stage):
    out_dtype = stage.get("out_dtype", "int32")
    zp = stage.get("out_zero_point", 0)
    lo, hi = stage.get("out_min"), stage.get("out_max")
    if stage.get("relu"):
        lo = max(OUT_RANGES[out_dtype][0] if lo is None else lo, zp)
    return output_stage_ref(acc, bias, out_dtype, stage.get("multiplier"), zp, lo, hi,
                            stage.get("requantization") == "fixed_point")


class QGemmTest(unittest.TestCase):

    def _check(self, rng, m, k, n, a_dtype, b_layout, out_dtype, per_channel, fixed_point,
               with_bias):
        a = random_activations(rng, (m, k), a_dtype)
        a_zp = int(rng.integers(*OUT_RANGES[a_dtype]))
        b_kn = rng.integers(-128, 128, (k, n)).astype(np.int8)
        b = b_kn if b_layout == "kn" else np.ascontiguousarray(b_kn.T)
        bias = rng.integers(-20000, 20000, n).astype(np.int32) if with_bias else None
        stage = random_stage(rng, out_dtype, n, k, per_channel, fixed_point)
        got = qlab.qgemm(a, a_zp, b, bias, b_layout=b_layout, **stage)
        want = expected_from_stage(gemm_acc_ref(a, a_zp, b_kn), bias, stage)
        msg = (f"M={m} K={k} N={n} a={a_dtype} zp={a_zp} b_layout={b_layout} "
               f"bias={with_bias} stage={stage}")
        self.assertEqual(got.dtype, want.dtype, msg)
        self.assertEqual(got.shape, (m, n), msg)
        np.testing.assert_array_equal(got, want, err_msg=msg)

    def test_odd_sizes_every_output_type(self):
        rng = np.random.default_rng(100)
        sizes = [(1, 1, 1), (3, 5, 17), (7, 4, 16), (2, 67, 15), (17, 64, 33), (5, 131, 3),
                 (16, 9, 32), (33, 3, 1)]
        case = 0
        for m, k, n in sizes:
            for a_dtype in ("uint8", "int8"):
                for out_dtype in ("int32", "float32", "uint8", "int8"):
                    case += 1
                    quantized = out_dtype in OUT_RANGES
                    self._check(rng, m, k, n, a_dtype, "kn" if case % 2 else "nk", out_dtype,
                                per_channel=case % 3 != 0,
                                fixed_point=quantized and case % 4 >= 2,
                                with_bias=case % 5 != 0)

    def test_per_tensor_and_per_channel_both_requantizations(self):
        rng = np.random.default_rng(101)
        for per_channel in (False, True):
            for fixed_point in (False, True):
                for out_dtype in ("uint8", "int8"):
                    self._check(rng, 9, 37, 21, "uint8", "nk", out_dtype, per_channel,
                                fixed_point, True)

    def test_extreme_values_long_k(self):
        # The largest |a - zp| * |b| terms over a long K: exact int32 with no saturation.
        k = 4099
        a = np.full((3, k), 255, np.uint8)
        a[1] = 0
        b = np.full((k, 5), -128, np.int8)
        b[:, 1] = 127
        for zp in (0, 255, 128):
            got = qlab.qgemm(a, zp, b)
            np.testing.assert_array_equal(got, gemm_acc_ref(a, zp, b).astype(np.int32))

    def test_halfway_rounding_float_and_fixed_point(self):
        # acc = 1..40 with multiplier 0.5: float32 ties round half to even, rndnu ties round up.
        a = (np.arange(1, 41, dtype=np.int64) + 100).astype(np.uint8).reshape(40, 1)
        b = np.ones((1, 1), np.int8)
        for requantization in ("float", "fixed_point"):
            got = qlab.qgemm(a, 100, b, out_dtype="int8", multiplier=0.5,
                             requantization=requantization)
            acc = np.arange(1, 41, dtype=np.int64).reshape(40, 1)
            want = (np.rint(acc / 2.0) if requantization == "float" else (acc + 1) // 2)
            np.testing.assert_array_equal(got, want.astype(np.int8), err_msg=requantization)
            self.assertEqual(got[0, 0], 0 if requantization == "float" else 1)  # 0.5 -> 0 / 1

    def test_empty_m(self):
        got = qlab.qgemm(np.zeros((0, 3), np.uint8), 0, np.ones((3, 4), np.int8))
        self.assertEqual((got.shape, got.dtype), ((0, 4), np.int32))


class QConv2dTest(unittest.TestCase):

    # (N, H, W, C, O, KH, KW, stride, padding (t, b, l, r), dilation, groups)
    CASES = [
        (1, 5, 7, 3, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),   # 3 channels: im2col path
        (2, 8, 8, 8, 17, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),  # cin % 4 == 0: indirect path
        (1, 7, 6, 16, 19, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),  # 1x1 / 2
        (1, 11, 9, 3, 5, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),  # a 7x7/2 stem
        (1, 9, 10, 6, 6, 3, 2, (2, 1), (1, 2, 0, 1), (1, 1), 1),  # asymmetric everything
        (2, 6, 6, 8, 6, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 2),   # groups 2
        (1, 7, 5, 5, 10, 3, 3, (1, 2), (1, 1, 1, 1), (1, 1), 5),  # depthwise, multiplier 2
        (1, 9, 9, 4, 7, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),   # dilation 2
        (1, 8, 9, 6, 9, 2, 3, (2, 1), (1, 0, 2, 1), (3, 2), 3),   # all of it at once
    ]

    def test_cases_against_numpy(self):
        rng = np.random.default_rng(200)
        for i, (n, h, w_, c, o, kh, kw, stride, padding, dilation, groups) in enumerate(
                self.CASES):
            for x_dtype in ("uint8", "int8"):
                for out_dtype in ("int32", "float32", "uint8", "int8"):
                    x = random_activations(rng, (n, h, w_, c), x_dtype)
                    x_zp = int(rng.integers(*OUT_RANGES[x_dtype]))
                    w = rng.integers(-128, 128, (o, kh, kw, c // groups)).astype(np.int8)
                    bias = rng.integers(-5000, 5000, o).astype(np.int32) if i % 2 else None
                    k = kh * kw * c // groups
                    stage = random_stage(rng, out_dtype, o, k, per_channel=(i + len(out_dtype))
                                         % 2 == 0, fixed_point=i % 3 == 0)
                    got = qlab.qconv2d(x, x_zp, w, bias, stride=stride, padding=padding,
                                       dilation=dilation, groups=groups, threads=1 + i % 2,
                                       **stage)
                    acc = conv_acc_ref(x, x_zp, w, stride, padding, dilation, groups)
                    want = expected_from_stage(acc, bias, stage)
                    msg = f"case {i} x={x_dtype} zp={x_zp} stage={stage}"
                    self.assertEqual((got.shape, got.dtype), (want.shape, want.dtype), msg)
                    np.testing.assert_array_equal(got, want, err_msg=msg)

    def test_argument_forms_and_threads(self):
        rng = np.random.default_rng(201)
        x = random_activations(rng, (2, 9, 9, 8), "uint8")
        w = rng.integers(-128, 128, (16, 3, 3, 8)).astype(np.int8)
        ref = qlab.qconv2d(x, 3, w, stride=(2, 2), padding=(1, 1, 1, 1), dilation=(1, 1))
        np.testing.assert_array_equal(ref, conv_acc_ref(x, 3, w, (2, 2), (1, 1, 1, 1), (1, 1),
                                                        1).astype(np.int32))
        np.testing.assert_array_equal(qlab.qconv2d(x, 3, w, stride=2, padding=1), ref)
        np.testing.assert_array_equal(qlab.qconv2d(x, 3, w, stride=2, padding=[1, 1]), ref)
        # Tiles are computed by the same code on any thread: identical for any thread count.
        np.testing.assert_array_equal(qlab.qconv2d(x, 3, w, stride=2, padding=1, threads=2), ref)


class BadKernelInputTest(unittest.TestCase):

    def assertRaisesWith(self, exc, fragment, fn, *args, **kwargs):
        with self.assertRaises(exc) as cm:
            fn(*args, **kwargs)
        self.assertIn(fragment, str(cm.exception))

    def test_qgemm(self):
        a = np.zeros((4, 6), np.uint8)
        b = np.zeros((6, 5), np.int8)
        R = self.assertRaisesWith
        R(TypeError, "uint8 or int8", qlab.qgemm, a.astype(np.float32), 0, b)
        R(TypeError, "numpy.ndarray", qlab.qgemm, [[1, 2]], 0, b)
        R(TypeError, "int8", qlab.qgemm, a, 0, b.astype(np.uint8))
        R(ValueError, "C-contiguous", qlab.qgemm, np.zeros((6, 4), np.uint8).T, 0, b)
        R(ValueError, "rank", qlab.qgemm, np.zeros(6, np.uint8), 0, b)
        R(ValueError, "rank", qlab.qgemm, a, 0, np.zeros((1, 6, 5), np.int8))
        R(ValueError, "mismatched K", qlab.qgemm, a, 0, np.zeros((7, 5), np.int8))
        R(ValueError, "mismatched K", qlab.qgemm, a, 0, b, b_layout="nk")
        R(ValueError, "b_layout", qlab.qgemm, a, 0, b, b_layout="ik")
        R(ValueError, "a_zero_point", qlab.qgemm, a, 256, b)
        R(ValueError, "a_zero_point", qlab.qgemm, a, -1, b)
        R(ValueError, "a_zero_point", qlab.qgemm, a.astype(np.int8), 128, b)
        R(ValueError, "K must", qlab.qgemm, np.zeros((4, 0), np.uint8), 0, np.zeros((0, 5),
                                                                                    np.int8))
        R(ValueError, "out_dtype", qlab.qgemm, a, 0, b, out_dtype="int16")
        R(ValueError, "needs a multiplier", qlab.qgemm, a, 0, b, out_dtype="uint8")
        R(ValueError, "None", qlab.qgemm, a, 0, b, multiplier=0.1)
        R(ValueError, "multiplier[0]", qlab.qgemm, a, 0, b, out_dtype="uint8", multiplier=0.0)
        R(ValueError, "multiplier[2]", qlab.qgemm, a, 0, b, out_dtype="int8",
          multiplier=[0.1, 0.1, float("nan"), 0.1, 0.1])
        R(ValueError, "one per output", qlab.qgemm, a, 0, b, out_dtype="uint8",
          multiplier=[0.1, 0.2])
        R(TypeError, "multiplier", qlab.qgemm, a, 0, b, out_dtype="uint8", multiplier="big")
        R(ValueError, "out_zero_point", qlab.qgemm, a, 0, b, out_dtype="int8", multiplier=0.1,
          out_zero_point=128)
        R(ValueError, "out_max", qlab.qgemm, a, 0, b, out_dtype="uint8", multiplier=0.1,
          out_max=256)
        R(ValueError, "empty", qlab.qgemm, a, 0, b, out_dtype="uint8", multiplier=0.1,
          out_min=10, out_max=5)
        R(ValueError, "relu", qlab.qgemm, a, 0, b, out_dtype="uint8", multiplier=0.1,
          out_zero_point=200, out_max=100, relu=True)
        R(ValueError, "int8/uint8 outputs only", qlab.qgemm, a, 0, b, relu=True)
        R(ValueError, "int8/uint8 outputs only", qlab.qgemm, a, 0, b, out_dtype="float32",
          multiplier=0.1, out_zero_point=3)
        R(ValueError, "requantization", qlab.qgemm, a, 0, b, out_dtype="uint8", multiplier=0.1,
          requantization="double")
        R(ValueError, "2^-32", qlab.qgemm, a, 0, b, out_dtype="uint8", multiplier=1.5,
          requantization="fixed_point")
        R(TypeError, "int32", qlab.qgemm, a, 0, b, np.zeros(5, np.int64))
        R(ValueError, "one entry per output", qlab.qgemm, a, 0, b, np.zeros(4, np.int32))
        R(ValueError, "too large", qlab.qgemm, a, 0, b, np.full(5, 2**31 - 1, np.int32))

    def test_qconv2d(self):
        x = np.zeros((1, 5, 5, 4), np.uint8)
        w = np.zeros((6, 3, 3, 4), np.int8)
        R = self.assertRaisesWith
        R(TypeError, "uint8 or int8", qlab.qconv2d, x.astype(np.int32), 0, w)
        R(TypeError, "int8", qlab.qconv2d, x, 0, w.astype(np.float32))
        R(ValueError, "C-contiguous", qlab.qconv2d, np.zeros((1, 5, 4, 5), np.uint8).swapaxes(2, 3),
          0, w)
        R(ValueError, "rank", qlab.qconv2d, x[0], 0, w)
        R(ValueError, "rank", qlab.qconv2d, x, 0, w[0])
        R(ValueError, "OHWI", qlab.qconv2d, x, 0, np.zeros((6, 3, 3, 3), np.int8))
        R(ValueError, "groups=3", qlab.qconv2d, x, 0, w, groups=3)
        R(ValueError, "groups must", qlab.qconv2d, x, 0, w, groups=0)
        R(ValueError, "x_zero_point", qlab.qconv2d, x, 300, w)
        R(ValueError, "x_zero_point", qlab.qconv2d, x.astype(np.int8), -129, w)
        R(ValueError, "stride", qlab.qconv2d, x, 0, w, stride=0)
        R(ValueError, "stride", qlab.qconv2d, x, 0, w, stride=(1, 1, 1))
        R(TypeError, "stride", qlab.qconv2d, x, 0, w, stride=1.5)
        R(ValueError, "padding", qlab.qconv2d, x, 0, w, padding=(1, 1, 1))
        R(ValueError, "padding", qlab.qconv2d, x, 0, w, padding=-1)
        R(ValueError, "padding", qlab.qconv2d, x, 0, w, padding=3)  # not smaller than the kernel
        R(ValueError, "dilation", qlab.qconv2d, x, 0, w, dilation=0)
        R(ValueError, "larger than the padded input", qlab.qconv2d, x, 0,
          np.zeros((6, 7, 7, 4), np.int8))
        R(ValueError, "threads", qlab.qconv2d, x, 0, w, threads=0)
        R(ValueError, "one entry per output", qlab.qconv2d, x, 0, w, np.zeros(5, np.int32))
        R(ValueError, "one per output", qlab.qconv2d, x, 0, w, out_dtype="uint8",
          multiplier=[0.1] * 5)
        R(ValueError, "zero-sized", qlab.qconv2d, np.zeros((0, 5, 5, 4), np.uint8), 0, w)


if __name__ == "__main__":
    unittest.main()
