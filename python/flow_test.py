"""The model flow from files and datasets, from Python.

.pth checkpoints: state dicts written here by PyTorch 1.13's torch.save (python3-torch) load
into qlab.Model -- the shared ResNet20 checkpoint re-saved as .pth must give exactly the logits
of the same checkpoint read from safetensors (same numbers, same float operations), and a
torchvision ResNet18 with random weights must give PyTorch's own logits within a float32
rounding tolerance. Datasets: Model.quantize_on_dataset calibrates on the shared CIFAR-10
training images and Model.evaluate scores FP32 / fake-quant / int8 on the test images; both must
agree image for image with qlab.ptq (experiments/ptq.h) on the same configuration, which picks
and reads the images the same way. Bad arguments raise. Needs the shared data
(../shared/data, found through the models/data/BUILD runfile) and writes only to TEST_TMPDIR.
"""

import json
import os
import struct
import tempfile
import unittest

import numpy as np
import torch
import torchvision
from PIL import Image

import qlab

SCRATCH = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
CACHE = os.path.join(SCRATCH, "cache")  # the training archive is extracted here once


def shared_checkpoint(name):
    return os.path.join(qlab.data_root(), "cifar10-resnet-akamaster", name + ".safetensors")


def read_safetensors(path):
    """A float32 safetensors file -> {name: torch tensor} (Debian has no safetensors package)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": "<f4", "I64": "<i8"}[info["dtype"]]
        begin, end = info["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(data[begin:end], dtype).copy().reshape(info["shape"]))
    return out


def images(seed, n, size):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


class PthTest(unittest.TestCase):

    def test_resnet20_pth_equals_safetensors(self):
        state = read_safetensors(shared_checkpoint("resnet20"))
        plain = os.path.join(SCRATCH, "resnet20.pth")
        torch.save(state, plain)
        wrapped = os.path.join(SCRATCH, "resnet20_data_parallel.pth")  # nn.DataParallel's keys
        torch.save({"module." + k: v for k, v in state.items()}, wrapped)
        x = images(1, 4, 32)
        want = qlab.Model("resnet20", weights_path=shared_checkpoint("resnet20")).run_fp32(x)
        for path in (plain, wrapped):
            got = qlab.Model("resnet20", weights_path=path).run_fp32(x)
            # Exact: the same weights give the same float32 operations in the same order.
            np.testing.assert_array_equal(got, want, err_msg=path)

    def test_resnet18_pth_matches_pytorch(self):
        torch.manual_seed(0)
        model = torchvision.models.resnet18()
        generator = torch.Generator().manual_seed(1)
        for m in model.modules():  # PyTorch's default BN would be an identity, hiding mistakes
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                with torch.no_grad():
                    m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
                    m.running_mean.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
                    m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
        model.eval()
        path = os.path.join(SCRATCH, "resnet18.pth")
        torch.save(model.state_dict(), path)
        x = images(2, 2, 224)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = qlab.Model("resnet18", weights_path=path).run_fp32(x)
        # Tolerance (as models/resnet_conformance_test.cc argues): both sides compute in float32
        # but sum in different orders (oneDNN's blocking vs qlab's kernels, plus qlab's folded
        # batch norm), ~2^-24 * sqrt(K) relative per conv (K <= 4608: ~4e-6), growing like
        # sqrt(depth) over ResNet18's ~20 layers to ~2e-5 of the logits' scale. 1e-4 leaves
        # headroom; a real mistake (layout, stride, BN statistic) is O(1) of the scale.
        scale = np.abs(want).max()
        self.assertLess(np.abs(got - want).max(), 1e-4 * scale)

    def test_bad_weight_files(self):
        with self.assertRaises(OSError):
            qlab.Model("resnet20", weights_path=os.path.join(SCRATCH, "missing.pth"))
        text = os.path.join(SCRATCH, "text.pth")
        with open(text, "w") as f:
            f.write("not a checkpoint\n")
        with self.assertRaisesRegex(ValueError, "text.pth"):
            qlab.Model("resnet20", weights_path=text)
        legacy = os.path.join(SCRATCH, "legacy.pth")  # the pre-1.6 format qlab refuses
        torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
        with self.assertRaisesRegex(NotImplementedError, "legacy"):
            qlab.Model("resnet20", weights_path=legacy)
        resnet56 = read_safetensors(shared_checkpoint("resnet56"))
        mismatched = os.path.join(SCRATCH, "resnet56.pth")
        torch.save(resnet56, mismatched)
        with self.assertRaises(ValueError):  # a state dict of another architecture
            qlab.Model("resnet20", weights_path=mismatched)


class DatasetTest(unittest.TestCase):
    CALIB_IMAGES = 32
    EVAL_IMAGES = 100

    def test_quantize_on_dataset_and_evaluate_agree_with_ptq(self):
        m = qlab.Model("resnet20", weights_path=shared_checkpoint("resnet20"))
        m.quantize_on_dataset("cifar10_train", images=self.CALIB_IMAGES, seed=0,
                              quantizer="xnnpack", calibrator="minmax", batch_size=50,
                              cache_dir=CACHE)
        self.assertTrue(m.quantized)
        ours = {engine: m.evaluate("cifar10_test", engine=engine, images=self.EVAL_IMAGES,
                                   batch_size=50)
                for engine in ("fp32", "fake_quant", "int8")}
        for engine, r in ours.items():
            self.assertEqual((r["engine"], r["images"]), (engine, self.EVAL_IMAGES))
            self.assertEqual(r["indices"], list(range(self.EVAL_IMAGES)))  # the first N, in order
            self.assertEqual(len(r["predictions"]), self.EVAL_IMAGES)
            self.assertEqual(sum(r["per_class_total"]), self.EVAL_IMAGES)
            self.assertAlmostEqual(r["top1"], r["top1_correct"] / self.EVAL_IMAGES)
            # A pretrained CIFAR ResNet20 is ~92 % accurate; 100 images leave room for chance.
            self.assertGreater(r["top1"], 0.8, engine)

        # experiments/ptq on the same configuration: same calibration subset (seed 0), same
        # quantizer and calibrator, same first 100 test images -> the same predictions.
        record = qlab.ptq({"model": "resnet20", "quantizer": "xnnpack", "calibrator": "minmax",
                           "calib_images": self.CALIB_IMAGES, "calib_seed": 0,
                           "eval_images": self.EVAL_IMAGES, "batch_size": 50, "timing_runs": 0,
                           "sqnr_images": 0, "show_progress": False, "cache_dir": CACHE})
        for engine, key in (("fp32", "fp32"), ("fake_quant", "fake_quant"), ("int8", "int8")):
            self.assertEqual(ours[engine]["top1_correct"],
                             record["results"][key]["top1_correct"], engine)

        # evaluate() decodes and preprocesses in C++; the same first images decoded with PIL and
        # normalized in numpy float32 as the data README states (each operation rounded to
        # float32, as models/data/transforms.h computes) must get the same FP32 predictions.
        root = os.path.join(qlab.data_root(), "cifar10-test-png")
        with open(os.path.join(root, "labels.csv")) as f:
            rows = [line.strip().split(",") for line in f][1:9]
        mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
        std = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
        batch = []
        for row in rows:
            rgb = np.asarray(Image.open(os.path.join(root, "test", row[3])).convert("RGB"))
            chw = rgb.transpose(2, 0, 1).astype(np.float32)
            batch.append((chw / np.float32(255) - mean) / std)
        logits = m.run_fp32(np.ascontiguousarray(np.stack(batch)))
        self.assertEqual(list(logits.argmax(axis=1)), ours["fp32"]["predictions"][:8])

    def test_bad_dataset_arguments(self):
        m = qlab.Model("resnet20")
        with self.assertRaisesRegex(ValueError, "cifar10_test"):
            m.evaluate("cifar100_test", images=1)
        with self.assertRaisesRegex(ValueError, "engine"):
            m.evaluate("cifar10_test", engine="int4", images=1)
        with self.assertRaisesRegex(RuntimeError, "quantize"):
            m.evaluate("cifar10_test", engine="int8", images=1)
        with self.assertRaisesRegex(ValueError, "images"):
            m.evaluate("cifar10_test", images=-1)
        with self.assertRaisesRegex(ValueError, "classes"):
            m.evaluate("imagenet_val1300", images=1)
        with self.assertRaises(OSError):
            m.evaluate("cifar10_test", images=1, data_root=os.path.join(SCRATCH, "no_data"))
        with self.assertRaisesRegex(ValueError, "images"):
            m.quantize_on_dataset("cifar10_test", images=10001)
        with self.assertRaisesRegex(ValueError, "batch_size"):
            m.quantize_on_dataset("cifar10_test", images=8, batch_size=0)
        with self.assertRaisesRegex(ValueError, "tflite"):
            m.quantize_on_dataset("cifar10_test", images=8, quantizer="tflite")
        self.assertFalse(m.quantized)


if __name__ == "__main__":
    unittest.main()
