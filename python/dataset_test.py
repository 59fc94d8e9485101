"""The model flow on the shared datasets from Python: Model.quantize_on_dataset calibrates on
CIFAR-10 training images and Model.evaluate scores FP32 / fake-quant / int8 on test images; both
must agree with qlab.ptq (experiments/ptq.h) on the same configuration, which picks and reads the
images the same way, and with run_fp32 on the same PNGs decoded by PIL. Bad arguments raise.
Needs the shared data (../shared/data, found through the models/data/BUILD runfile); extracts the
training archive into TEST_TMPDIR only.
"""

import os
import tempfile
import unittest

import numpy as np
from PIL import Image

import qlab

SCRATCH = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
CACHE = os.path.join(SCRATCH, "cache")  # the training archive is extracted here once


def shared_checkpoint(name):
    return os.path.join(qlab.data_root(), "cifar10-resnet-akamaster", name + ".safetensors")


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
