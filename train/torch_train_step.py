#!/usr/bin/python3
"""PyTorch 1.13 side of training_engine_test: one training step's loss, gradients and batch-norm
running statistics for the same model, weights, images and labels.

Test-only (qlab never calls PyTorch). Usage:

  torch_train_step.py <model> <in.safetensors> <out.safetensors> <label_smoothing>

<model> is resnet20 (He et al. CIFAR, option A), resnet18_cifar or resnet18 (torchvision).
<in.safetensors> holds the state_dict (PyTorch names), "input" (NCHW float32) and "labels"
(float32 class indices). The model runs in training mode (batch statistics, momentum 0.1);
<out.safetensors> gets "loss" (shape [1]), "logits", "grad.<param>" for every parameter,
"after.<buffer>" for every running mean/variance after the step and "min_abs_relu_input" (the
smallest |x| any ReLU saw).
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
import resnet_torch  # noqa: E402  (the shared model definitions and safetensors I/O)


def build(name):
    if name == "resnet20":
        return resnet_torch.CifarResNetA(resnet_torch.DEPTH_N[name])
    if name == "resnet18_cifar":
        return resnet_torch.cifar_variant(torchvision.models.resnet18(num_classes=10))
    if name == "resnet18":
        return torchvision.models.resnet18()
    sys.exit("unknown model " + name)


# The smallest |x| any ReLU saw: a pre-activation within float rounding of zero may land on either
# side in two implementations that sum in different orders, flipping one mask element and with
# it every gradient upstream; the test requires a clear margin so that it compares arithmetic,
# not coin flips.
MIN_ABS_RELU_INPUT = [float("inf")]
_relu = F.relu


def recording_relu(x, inplace=False):
    MIN_ABS_RELU_INPUT[0] = min(MIN_ABS_RELU_INPUT[0], x.detach().abs().min().item())
    return _relu(x, inplace=inplace)


F.relu = recording_relu  # nn.ReLU and the CIFAR model's F.relu both come here


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    name, in_path, out_path, smoothing = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    tensors = resnet_torch.read_safetensors(in_path)
    model = build(name)
    state = {k: v for k, v in tensors.items() if k not in ("input", "labels")}
    for k, v in model.state_dict().items():  # num_batches_tracked is not stored by qlab
        if k.endswith("num_batches_tracked"):
            state[k] = v
    model.load_state_dict(state, strict=True)
    model.train()
    x = tensors["input"]
    labels = tensors["labels"].to(torch.int64)
    logits = model(x)
    loss = nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, labels)
    loss.backward()
    out = {"loss": loss.detach().reshape(1), "logits": logits.detach(),
           "min_abs_relu_input": torch.tensor([MIN_ABS_RELU_INPUT[0]])}
    for k, p in model.named_parameters():
        out["grad." + k] = p.grad
    for k, b in model.named_buffers():
        if k.endswith("running_mean") or k.endswith("running_var"):
            out["after." + k] = b
    resnet_torch.write_safetensors(out_path, out)


if __name__ == "__main__":
    main()
