#!/usr/bin/python3
"""PyTorch 1.13 side of resnet_conformance_test: the same ResNets, the same weights, their logits.

Test-only (qlab never calls PyTorch). Everything crosses over as safetensors files written and
read here by hand with struct/json/numpy (Debian has no `safetensors` package), so the test also
exercises qlab's reader on files it did not write.

  resnet_torch.py random <out_dir>
      torchvision resnet18() and resnet50() (ImageNet, 224x224) and their CIFAR variants
      (3x3/1 stem conv, no max pool, 10 classes, 32x32) with torch.manual_seed(0) random init,
      batch-norm affine parameters and running statistics also randomized (PyTorch's defaults
      would make every BN an identity and hide a swapped mean/var). Writes
      <name>.weights.safetensors (the state_dict, num_batches_tracked included, as I64) and
      <name>.io.safetensors ("input" from a seeded randn, "logits" in eval mode); the same
      state_dict also as <name>.pth through torch.save.
  resnet_torch.py pretrained <data_root> <out_dir> <name>...
      He et al. CIFAR ResNets (akamaster's definition, re-implemented below) loaded strictly from
      <data_root>/cifar10-resnet-akamaster/<name>.safetensors; <name>.io.safetensors holds
      "random_input"/"random_logits" (seeded randn, batch 4) and "image_input"/"image_logits"/
      "image_label" for the first test image of every class in labels.csv order (PIL decode,
      ToTensor, Normalize as the data README states).
  resnet_torch.py accuracy <data_root> <out_dir> <name>...
      The same models on all 10,000 CIFAR-10 test images in labels.csv order: writes
      <name>.predictions.txt (one top-1 class per line) for tests/cifar_accuracy_conformance_test.
"""
import csv
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image

assert sys.byteorder == "little"
DTYPES = {torch.float32: "F32", torch.int64: "I64"}
NP_DTYPES = {"F32": np.float32, "I64": np.int64}


def write_safetensors(path, tensors):
    """name -> torch tensor (float32 or int64); larger dtypes first, then by name."""
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, blobs, offset = {}, [], 0
    for name, t in items:
        code = DTYPES[t.dtype]
        data = t.detach().contiguous().numpy().tobytes()  # little-endian host: as stored
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=np.dtype(NP_DTYPES[info["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(array.copy().reshape(info["shape"]))
    return out


def randomize_batch_norms(model, generator):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
                m.running_mean.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)


def cifar_variant(model):
    """torchvision ResNet with the CIFAR stem: 3x3/1 conv1, no max pool (same module names)."""
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def run_random(out_dir):
    specs = [
        ("resnet18", lambda: torchvision.models.resnet18(), 224),
        ("resnet50", lambda: torchvision.models.resnet50(), 224),
        ("resnet18_cifar", lambda: cifar_variant(torchvision.models.resnet18(num_classes=10)), 32),
        ("resnet50_cifar", lambda: cifar_variant(torchvision.models.resnet50(num_classes=10)), 32),
    ]
    for name, make, size in specs:
        torch.manual_seed(0)
        model = make()
        randomize_batch_norms(model, torch.Generator().manual_seed(1))
        model.eval()
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            logits = model(x)
        write_safetensors(os.path.join(out_dir, name + ".weights.safetensors"), model.state_dict())
        torch.save(model.state_dict(), os.path.join(out_dir, name + ".pth"))  # the zip format
        write_safetensors(os.path.join(out_dir, name + ".io.safetensors"), {"input": x, "logits": logits})


# --- He et al. CIFAR ResNet, option A (akamaster/pytorch_resnet_cifar10's architecture) ---------
class ShortcutA(nn.Module):
    def __init__(self, planes):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)


class BasicBlockA(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = ShortcutA(planes) if stride != 1 or in_planes != planes else nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNetA(nn.Module):
    def __init__(self, n, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes, stages = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlockA(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


DEPTH_N = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def first_image_per_class(data_root):
    root = os.path.join(data_root, "cifar10-test-png")
    chosen = {}
    with open(os.path.join(root, "labels.csv")) as f:
        for row in csv.DictReader(f):
            label = int(row["label"])
            if label not in chosen:
                chosen[label] = os.path.join(root, "test", row["file"])
    return [(label, chosen[label]) for label in sorted(chosen)]


def run_pretrained(data_root, out_dir, names):
    transform = torchvision.transforms.Compose([
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize(MEAN, STD),
    ])
    images = first_image_per_class(data_root)
    image_input = torch.stack([transform(Image.open(p).convert("RGB")) for _, p in images])
    labels = torch.tensor([label for label, _ in images], dtype=torch.int64)
    for name in names:
        model = CifarResNetA(DEPTH_N[name])
        weights = read_safetensors(os.path.join(data_root, "cifar10-resnet-akamaster", name + ".safetensors"))
        model.load_state_dict(weights, strict=True)
        model.eval()
        x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            random_logits = model(x)
            image_logits = model(image_input)
        write_safetensors(os.path.join(out_dir, name + ".io.safetensors"), {
            "random_input": x, "random_logits": random_logits,
            "image_input": image_input, "image_logits": image_logits, "image_label": labels,
        })


def run_accuracy(data_root, out_dir, names):
    transform = torchvision.transforms.Compose([
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize(MEAN, STD),
    ])
    root = os.path.join(data_root, "cifar10-test-png")
    with open(os.path.join(root, "labels.csv")) as f:
        files = [os.path.join(root, "test", row["file"]) for row in csv.DictReader(f)]
    images = torch.stack([transform(Image.open(p).convert("RGB")) for p in files])
    for name in names:
        model = CifarResNetA(DEPTH_N[name])
        weights = read_safetensors(os.path.join(data_root, "cifar10-resnet-akamaster", name + ".safetensors"))
        model.load_state_dict(weights, strict=True)
        model.eval()
        predictions = []
        with torch.no_grad():
            for start in range(0, len(images), 500):
                predictions += model(images[start:start + 500]).argmax(dim=1).tolist()
        with open(os.path.join(out_dir, name + ".predictions.txt"), "w") as f:
            f.write("".join("%d\n" % p for p in predictions))


def main():
    torch.set_num_threads(1)  # deterministic summation order across runs
    if len(sys.argv) == 3 and sys.argv[1] == "random":
        run_random(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "pretrained":
        run_pretrained(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) >= 5 and sys.argv[1] == "accuracy":
        torch.set_num_threads(2)  # 10,000 images: both cores (argmax is order-insensitive enough)
        run_accuracy(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
