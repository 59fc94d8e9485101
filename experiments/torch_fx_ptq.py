#!/usr/bin/python3
"""PyTorch 1.13's own post-training quantization of the same checkpoint on the same images.

The yardstick for qlab's PTQ records (issue 7's accuracy target): FX graph mode quantization with
the onednn engine and its default qconfig mapping (HistogramObserver activations, per-channel
MinMax weights), calibrated on exactly the images a qlab record lists (its
inputs.calibration_image_names) and evaluated on the same first N CIFAR-10 test images. Reference
only: qlab never calls PyTorch.

  /usr/bin/python3 experiments/torch_fx_ptq.py results/ptq/run-1/resnet20.json [--cache .cache]

Prints one JSON object: the model, FP32 and int8 top-1 of PyTorch, and the qlab record's numbers
beside them.
"""
import argparse
import csv
import json
import os
import sys

import torch
import torchvision
from PIL import Image
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
import resnet_torch  # noqa: E402  (the akamaster CIFAR ResNet definition and safetensors reader)


class TraceableCifarResNetA(resnet_torch.CifarResNetA):
    """The same network and state_dict; FX cannot trace avg_pool2d(x, x.size(3)), so the final
    8x8 average is written as the equal adaptive average to 1x1, and view as flatten."""

    def forward(self, x):
        out = torch.nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = torch.nn.functional.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))


def load_images(paths, transform):
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])


def top1(model, images, labels, batch=500):
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            predictions = model(images[start:start + batch]).argmax(dim=1)
            correct += int((predictions == labels[start:start + batch]).sum())
    return correct / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", help="a qlab PTQ record (JSON)")
    parser.add_argument("--cache", default=".cache",
                        help="where qlab extracted the CIFAR-10 training archive")
    args = parser.parse_args()
    with open(args.record) as f:
        record = json.load(f)
    config, inputs = record["config"], record["inputs"]
    name = config["model"]
    if name not in resnet_torch.DEPTH_N:
        sys.exit("only the CIFAR ResNets with shared checkpoints are supported, not " + name)
    data_root = inputs["data_root"]
    torch.set_num_threads(2)
    torch.backends.quantized.engine = "onednn"

    transform = torchvision.transforms.Compose([
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize(resnet_torch.MEAN, resnet_torch.STD),
    ])
    calibration_paths = []
    for relative in inputs["calibration_image_names"]:
        for base in (args.cache, data_root):
            path = os.path.join(base, relative)
            if os.path.exists(path):
                calibration_paths.append(path)
                break
        else:
            sys.exit("calibration image not found under --cache or the data root: " + relative)
    calibration = load_images(calibration_paths, transform)

    root = os.path.join(data_root, "cifar10-test-png")
    with open(os.path.join(root, "labels.csv")) as f:
        rows = list(csv.DictReader(f))[:inputs["eval_images"]]
    test_images = load_images([os.path.join(root, "test", r["file"]) for r in rows], transform)
    labels = torch.tensor([int(r["label"]) for r in rows])

    model = TraceableCifarResNetA(resnet_torch.DEPTH_N[name])
    model.load_state_dict(resnet_torch.read_safetensors(config["weights"]), strict=True)
    model.eval()
    fp32 = top1(model, test_images, labels)

    prepared = prepare_fx(model, get_default_qconfig_mapping("onednn"), (calibration[:1],))
    with torch.no_grad():
        for start in range(0, len(calibration), config["batch_size"]):
            prepared(calibration[start:start + config["batch_size"]])
    quantized = convert_fx(prepared)
    int8 = top1(quantized, test_images, labels)

    results = record["results"]
    print(json.dumps({
        "model": name,
        "calibration_images": len(calibration_paths),
        "eval_images": len(rows),
        "pytorch_fx_onednn": {"fp32_top1": fp32, "int8_top1": int8},
        "qlab": {
            "quantizer": config["quantizer"],
            "calibrator": config["calibrator"],
            "fp32_top1": results["fp32"]["top1"],
            "fake_quant_top1": results["fake_quant"]["top1"],
            "int8_top1": results["int8"].get("top1"),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
