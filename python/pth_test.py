""".pth checkpoints from Python: state dicts written here by PyTorch 1.13's torch.save
(python3-torch) load into qlab.Model. The shared ResNet20 checkpoint re-saved as .pth must give
exactly the logits of the same checkpoint read from safetensors (same numbers, same float
operations), and a torchvision ResNet18 with random weights must give PyTorch's own logits within
a float32 rounding tolerance; missing, text, legacy and mismatched files raise. Needs the shared
checkpoints (../shared/data, found through the models/data/BUILD runfile); writes only to
TEST_TMPDIR.
"""

import json
import os
import struct
import tempfile
import unittest

import numpy as np
import torch
import torchvision

import qlab

SCRATCH = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()


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


if __name__ == "__main__":
    unittest.main()
