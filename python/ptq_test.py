#!/usr/bin/python3
"""qlab.ptq from Python: a small real PTQ run on the shared ResNet20 returns the same kind of
record `bazel run //experiments:ptq` writes, and bad configs raise ValueError naming the key.

Needs the shared data (../shared/data beside the workspace, found through the models/data/BUILD
runfile) and writes the extracted training archive into the test's scratch folder.
"""
import os
import unittest

import qlab


def small_config(**overrides):
    config = {
        "model": "resnet20",
        "calibrator": "minmax",
        "calib_images": 32,
        "eval_images": 100,
        "batch_size": 50,
        "timing_runs": 0,
        "sqnr_images": 4,
        "show_progress": False,
        "cache_dir": os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), "cache"),
    }
    config.update(overrides)
    return config


class PtqTest(unittest.TestCase):
    def test_record(self):
        record = qlab.ptq(small_config())
        results = record["results"]
        self.assertEqual(record["config"]["model"], "resnet20")
        self.assertEqual(record["inputs"]["eval_images"], 100)
        self.assertEqual(len(record["inputs"]["calibration_image_names"]), 32)
        # A pretrained CIFAR ResNet20 is ~92 % accurate; 100 images leave room for chance.
        self.assertGreater(results["fp32"]["top1"], 0.8)
        self.assertGreater(results["int8"]["top1"], 0.8)
        self.assertIn("prediction_agreement_int8_fake_quant", results["int8"])
        # Outside `bazel run` the workspace (hence the commit) is not known: said, not guessed.
        commit = record["provenance"]["git_commit"]
        self.assertTrue(commit == "unknown" or len(commit) == 40, commit)

    def test_bad_config(self):
        with self.assertRaisesRegex(ValueError, "nonsense"):
            qlab.ptq({"nonsense": 1})
        with self.assertRaisesRegex(ValueError, "calib_images"):
            qlab.ptq(small_config(calib_images="many"))
        with self.assertRaisesRegex(ValueError, "per_row"):
            qlab.ptq(small_config(weight_granularity="per_row"))


if __name__ == "__main__":
    unittest.main()
