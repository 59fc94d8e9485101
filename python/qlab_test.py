"""Conformance and boundary tests of the qlab Python module against PyTorch 1.13 and numpy.

Observers must give PyTorch's torch.ao.quantization observers' scale and zero point exactly on the
same numpy data (qlab's observers are specified as bit-identical to PyTorch 1.13's); fake-quant
must give PyTorch's fake_quantize_per_{tensor,channel}_affine floats exactly (both compute
nearbyint(x * (1/scale)) in float32: the same operations in the same order); bad input from
Python must raise the documented exception, never crash; a Model must run end to end with numpy
shapes. Every random input is seeded.
"""

import gc
import os
import tempfile
import threading
import unittest
import weakref

import numpy as np
import torch
from torch.ao.quantization import observer as tobs

import qlab


def _rng(seed):
    return np.random.default_rng(seed)


def _batches(seed, n=4, shape=(8, 16, 5, 5)):
    """Batches whose range grows (exercises histogram re-binning) with a heavy tail."""
    rng = _rng(seed)
    return [(rng.standard_normal(shape) * (1.0 + i) + 0.3 * i).astype(np.float32) for i in range(n)]


class ObserverConformanceTest(unittest.TestCase):

    def _compare(self, spec, torch_observer, dtype, qscheme, channel_axis=-1, batches=None):
        ours = qlab.Observer(spec, channel_axis=channel_axis)
        for b in batches if batches is not None else _batches(1):
            ours.observe(b)
            torch_observer(torch.from_numpy(b))
        qp = ours.compute_qparams(dtype=dtype, qscheme=qscheme)
        scale, zp = torch_observer.calculate_qparams()
        msg = f"{spec} {dtype} {qscheme}"
        # Exact: the same float32 operations (quant/qparams.h); np.float32 of torch's float32.
        np.testing.assert_array_equal(np.asarray(qp["scales"], np.float32),
                                      scale.numpy().reshape(-1), err_msg=msg)
        np.testing.assert_array_equal(np.asarray(qp["zero_points"]), zp.numpy().reshape(-1),
                                      err_msg=msg)
        return qp

    def test_minmax_affine_and_symmetric(self):
        for dtype, tdtype in (("uint8", torch.quint8), ("int8", torch.qint8)):
            for qscheme, tq in (("per_tensor_affine", torch.per_tensor_affine),
                                ("per_tensor_symmetric", torch.per_tensor_symmetric)):
                self._compare("minmax", tobs.MinMaxObserver(dtype=tdtype, qscheme=tq), dtype,
                              qscheme)

    def test_per_channel_minmax(self):
        for axis in (0, 1):
            qp = self._compare(
                "per_channel_minmax",
                tobs.PerChannelMinMaxObserver(ch_axis=axis, dtype=torch.qint8,
                                              qscheme=torch.per_channel_symmetric),
                "int8", "per_channel_symmetric", channel_axis=axis)
            self.assertEqual(qp["axis"], axis)

    def test_histogram(self):
        self._compare("histogram", tobs.HistogramObserver(dtype=torch.quint8), "uint8",
                      "per_tensor_affine")

    def test_histogram_int8_symmetric(self):
        self._compare("histogram",
                      tobs.HistogramObserver(dtype=torch.qint8,
                                             qscheme=torch.per_tensor_symmetric),
                      "int8", "per_tensor_symmetric", batches=_batches(7, n=3))

    def test_merge_equals_one_observer_fed_both(self):
        b = _batches(2)
        whole, left, right = (qlab.Observer("minmax") for _ in range(3))
        for x in b:
            whole.observe(x)
        left.observe(b[0])
        left.observe(b[1])
        right.observe(b[2])
        right.observe(b[3])
        left.merge(right)
        self.assertEqual(left.compute_qparams(), whole.compute_qparams())
        self.assertEqual(left.num_batches, 4)

    def test_save_load_round_trip(self):
        obs = qlab.Observer("histogram:bins=256")
        for x in _batches(3):
            obs.observe(x)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "obs.qlab")
            obs.save(path)
            loaded = qlab.load_observer(path)
        self.assertEqual(loaded.spec, obs.spec)
        self.assertEqual(loaded.compute_qparams(dtype="uint8"), obs.compute_qparams(dtype="uint8"))


class KernelConformanceTest(unittest.TestCase):

    def _data(self, seed, shape=(4, 6, 7, 9)):
        x = _rng(seed).standard_normal(shape).astype(np.float32) * 3.0
        # Values exactly halfway between two steps, where round-half-even matters.
        x.reshape(-1)[:20] = (np.arange(20, dtype=np.float32) - 10.0 + 0.5) * 0.25
        return x

    def test_fake_quantize_per_tensor_matches_torch(self):
        x = self._data(10)
        for scale, zp, lo, hi in ((0.25, 0, -128, 127), (0.05, 128, 0, 255), (0.7, -3, -8, 7),
                                  (0.013, 17, -128, 127)):
            ours = qlab.fake_quantize(x, scale, zp, lo, hi)
            theirs = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), scale, zp, lo,
                                                           hi).numpy()
            self.assertEqual(ours.dtype, np.float32)
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{scale} {zp} [{lo},{hi}]")

    def test_fake_quantize_per_channel_matches_torch(self):
        x = self._data(11)
        rng = _rng(12)
        for axis in (0, 1, 3):
            c = x.shape[axis]
            scales = rng.uniform(0.01, 0.5, c).astype(np.float32)
            zps = rng.integers(-20, 20, c).astype(np.int32)
            ours = qlab.fake_quantize(x, scales, zps, -128, 127, axis=axis)
            theirs = torch.fake_quantize_per_channel_affine(
                torch.from_numpy(x), torch.from_numpy(scales),
                torch.from_numpy(zps), axis, -128, 127).numpy()
            np.testing.assert_array_equal(ours, theirs, err_msg=f"axis {axis}")

    def test_quantize_matches_torch_and_dequantize_inverts(self):
        x = self._data(13)
        q = qlab.quantize(x, 0.05, 3, dtype="int8")
        tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.05, 3, torch.qint8)
        self.assertEqual(q.dtype, np.int8)
        np.testing.assert_array_equal(q, tq.int_repr().numpy())
        np.testing.assert_array_equal(qlab.dequantize(q, 0.05, 3), tq.dequantize().numpy())

    def test_quantize_per_channel_uint8(self):
        x = self._data(14)
        scales = np.linspace(0.02, 0.2, x.shape[1]).astype(np.float32)
        zps = np.arange(x.shape[1], dtype=np.int32) + 120
        q = qlab.quantize(x, scales, zps, dtype="uint8", axis=1)
        tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales),
                                        torch.from_numpy(zps).long(), 1, torch.quint8)
        np.testing.assert_array_equal(q, tq.int_repr().numpy())
        np.testing.assert_array_equal(qlab.dequantize(q, scales, zps, axis=1),
                                      tq.dequantize().numpy())

    def test_result_owns_memory_after_inputs_die(self):
        y = qlab.fake_quantize(np.ones((3, 3), np.float32), 0.5, 0)
        np.testing.assert_array_equal(y, np.ones((3, 3), np.float32))


class ZeroCopyTest(unittest.TestCase):
    """Inputs are used in place: every entry point turns a numpy argument into a qlab Tensor the
    same way (TensorFromArray); qlab._as_tensor_view returns that Tensor as a numpy view and its
    data address, so what is checked here is what run_fp32, observe, quantize ... receive."""

    def test_contiguous_input_is_viewed_not_copied(self):
        for dtype in (np.float32, np.int8, np.uint8, np.int32):
            x = np.arange(24, dtype=dtype).reshape(2, 3, 4)
            view, address = qlab._as_tensor_view(x)
            self.assertEqual(address, x.ctypes.data, dtype)
            self.assertTrue(np.shares_memory(view, x))
            x[1, 2, 3] = 7
            self.assertEqual(view[1, 2, 3], 7)  # the Tensor sees the caller's memory

    def test_tensor_keeps_the_array_alive_and_releases_it(self):
        x = np.arange(1000, dtype=np.float32)
        alive = weakref.ref(x)
        view, _ = qlab._as_tensor_view(x)
        del x
        gc.collect()
        self.assertIsNotNone(alive())  # held by the Tensor behind `view`
        np.testing.assert_array_equal(view, np.arange(1000, dtype=np.float32))
        del view
        gc.collect()
        self.assertIsNone(alive())  # and released with it: no leak

    def test_views_of_a_bigger_array_are_used_in_place(self):
        base = np.arange(40, dtype=np.float32).reshape(8, 5)
        rows = base[2:5]  # C-contiguous, not 64-byte aligned
        view, address = qlab._as_tensor_view(rows)
        self.assertEqual(address, rows.ctypes.data)
        np.testing.assert_array_equal(view, rows)

    def test_misaligned_input_is_copied_and_still_correct(self):
        buffer = np.zeros(4 * 6 + 1, np.uint8)
        x = np.frombuffer(buffer, np.float32, count=6, offset=1)  # 1 byte off: not float-aligned
        self.assertFalse(x.flags.aligned)
        view, address = qlab._as_tensor_view(x)
        self.assertNotEqual(address, x.ctypes.data)
        np.testing.assert_array_equal(view, x)
        np.testing.assert_array_equal(qlab.quantize(x, 0.5, 0), np.zeros(6, np.int8))

    def test_read_only_input(self):
        x = np.ones((2, 3), np.float32)
        x.flags.writeable = False
        view, _ = qlab._as_tensor_view(x)
        self.assertFalse(view.flags.writeable)  # a view cannot grant writes the input refused
        np.testing.assert_array_equal(qlab.fake_quantize(x, 0.5, 0), x)

    def test_model_input_dies_during_run(self):
        # The array's only reference is the argument: C++ runs with the GIL released, holding it.
        m = qlab.Model("resnet20", threads=2)
        out = m.run_fp32(_rng(30).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32))
        self.assertEqual(out.shape, (2, 10))


class BadInputTest(unittest.TestCase):

    def assertRaisesWith(self, exc, fragment, fn, *args, **kwargs):
        with self.assertRaises(exc) as cm:
            fn(*args, **kwargs)
        self.assertIn(fragment, str(cm.exception))

    def test_kernel_arguments(self):
        x = np.zeros((4, 4), np.float32)
        self.assertRaisesWith(TypeError, "float64", qlab.quantize, x.astype(np.float64), 0.1, 0)
        self.assertRaisesWith(TypeError, "numpy.ndarray", qlab.quantize, [1.0, 2.0], 0.1, 0)
        self.assertRaisesWith(ValueError, "C-contiguous", qlab.fake_quantize, x.T[:, ::2], 0.1, 0)
        self.assertRaisesWith(ValueError, "rank", qlab.quantize, np.array(1.0, np.float32), 1, 0)
        self.assertRaisesWith(ValueError, "rank", qlab.quantize, np.zeros((1,) * 9, np.float32), 1,
                              0)
        self.assertRaisesWith(ValueError, "scale", qlab.quantize, x, 0.0, 0)
        self.assertRaisesWith(ValueError, "zero_point", qlab.quantize, x, 0.1, 300)
        self.assertRaisesWith(ValueError, "dtype", qlab.quantize, x, 0.1, 0, dtype="int4")
        self.assertRaisesWith(ValueError, "axis", qlab.quantize, x, [0.1] * 4, [0] * 4, axis=2)
        self.assertRaises(ValueError, qlab.quantize, x, [0.1] * 3, [0] * 3, axis=1)
        self.assertRaisesWith(TypeError, "int8", qlab.dequantize, x, 0.1, 0)

    def test_observer_arguments(self):
        self.assertRaisesWith(ValueError, "known observers", qlab.Observer, "no_such_calibrator")
        obs = qlab.Observer("minmax")
        self.assertRaises(RuntimeError, obs.compute_qparams)  # nothing observed yet
        self.assertRaisesWith(TypeError, "float32", obs.observe, np.zeros(3, np.int32))
        self.assertRaises(ValueError, obs.observe, np.array([1.0, np.nan], np.float32))
        obs.observe(np.ones(3, np.float32))
        self.assertRaisesWith(ValueError, "qscheme", obs.compute_qparams, qscheme="nope")
        self.assertRaises(ValueError, obs.compute_qparams, quant_min=10, quant_max=5)
        self.assertRaises(ValueError, obs.merge, qlab.Observer("histogram"))
        self.assertRaises(OSError, qlab.load_observer, "/nonexistent/observer.qlab")

    def test_model_arguments(self):
        self.assertRaisesWith(ValueError, "resnet20", qlab.Model, "resnet7")
        self.assertRaises(OSError, qlab.Model, "resnet20", "/nonexistent/resnet20.safetensors")
        m = qlab.Model("resnet20")
        self.assertRaisesWith(ValueError, "rank", m.run_fp32, np.zeros((3, 32, 32), np.float32))
        self.assertRaisesWith(ValueError, "3 channels", m.run_fp32,
                              np.zeros((1, 1, 32, 32), np.float32))
        self.assertRaisesWith(RuntimeError, "quantize()", m.run_int8,
                              np.zeros((1, 3, 32, 32), np.float32))
        self.assertRaises(ValueError, m.quantize, np.zeros((1, 3, 32, 32), np.float32),
                          quantizer="tflite")


class ModelTest(unittest.TestCase):

    def test_resnet20_fp32_and_int8(self):
        # Placeholder (seeded) weights: this tests the plumbing, not accuracy (the example and
        # experiments/ measure accuracy on the shared checkpoint).
        m = qlab.Model("resnet20", threads=2)
        self.assertEqual((m.image_size, m.num_classes), (32, 10))
        images = _rng(20).uniform(-1.0, 1.0, (6, 3, 32, 32)).astype(np.float32)
        logits = m.run_fp32(images)
        self.assertEqual((logits.shape, logits.dtype), ((6, 10), np.float32))
        self.assertTrue(np.all(np.isfinite(logits)))
        self.assertGreater(np.abs(logits).max(), 0.0)
        # One image alone gives its row of the batch. Tolerance: the engine may sum in another
        # order for another batch size (float32 rounding, ~1e-6 relative on these logits).
        np.testing.assert_allclose(m.run_fp32(np.ascontiguousarray(images[2:3]))[0], logits[2],
                                   rtol=1e-4, atol=1e-5 * np.abs(logits).max())
        self.assertIn("conv2d", m.dump())

        m.quantize(images, quantizer="xnnpack", calibrator="minmax", batch_size=4)
        self.assertTrue(m.quantized)
        self.assertIn("quantize", m.dump("converted"))
        q_logits = m.run_int8(images)
        self.assertEqual(q_logits.shape, (6, 10))
        # 8-bit activations and per-channel weights on the calibration images themselves: the
        # int8 logits stay within 10% (relative L2) of FP32 -- an SQNR of 20 dB, well below what
        # 8-bit PTQ gives, so this fails only if the flow is broken, not on rounding.
        err = np.linalg.norm(q_logits - logits) / np.linalg.norm(logits)
        self.assertLess(err, 0.1)


class ThreadsTest(unittest.TestCase):

    def test_one_model_from_several_python_threads(self):
        # The engines reuse their buffers: calls from several threads on one Model must be
        # serialized (they run with the GIL released), giving each caller the sequential result.
        m = qlab.Model("resnet20", threads=1)
        inputs = [_rng(40 + i).uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32) for i in range(4)]
        m.quantize(inputs[0], calibrator="minmax")
        want = [(m.run_fp32(x), m.run_int8(x)) for x in inputs]
        results = {}

        def work(i):
            for _ in range(5):
                results[i] = (m.run_fp32(inputs[i]), m.run_int8(inputs[i]))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(4):
            # Exact: the same engine on the same batch size computes in the same order.
            np.testing.assert_array_equal(results[i][0], want[i][0])
            np.testing.assert_array_equal(results[i][1], want[i][1])


if __name__ == "__main__":
    unittest.main()
