#!/usr/bin/python3
"""PyTorch 1.13's training-step time on this machine, for bench/train_step_benchmark.

  torch_train_step.py <resnet18|resnet20> <batch> <threads> <warmup> <runs>

One training step = forward in train mode (batch statistics) + cross-entropy loss + backward +
torch.optim.SGD step (lr 0.01, momentum 0.9, weight decay 1e-4 on every parameter), each step on
the next of BATCHES random batches (randn images, random labels; see BATCHES for why not one);
random-init weights. Two models are timed, each after `warmup` untimed steps:
  fp32: the eager model (torchvision resnet18 at 224x224, or the He et al. CIFAR ResNet20 of
        models/resnet_torch.py at 32x32);
  qat:  the same model through FX QAT, prepare_qat_fx(model, get_default_qat_qconfig_mapping(
        "x86"), example_inputs): fused ConvBn(ReLU) QAT modules, FusedMovingAvgObsFakeQuantize
        on activations and per-channel weights.
For each, the forward + loss alone (train mode, autograd recording, no backward) is timed too, so
the forward share of the step can be compared with qlab's.
Prints JSON: {"fp32_step_ms": [...], "fp32_forward_ms": [...], "qat_step_ms": [...],
"qat_forward_ms": [...]} (every timed run). The benchmark runs this script under OpenMP's default
and passive wait policies (OMP_WAIT_POLICY, read by libgomp when torch loads it).
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.ao.quantization import get_default_qat_qconfig_mapping
from torch.ao.quantization.quantize_fx import prepare_qat_fx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
import resnet_torch  # noqa: E402  (the He et al. CIFAR ResNet definition qlab's builder matches)


class TraceableCifarResNetA(resnet_torch.CifarResNetA):
    """CifarResNetA with its final average pool written so that FX can trace it.

    The original pools with F.avg_pool2d(out, out.size()[3]): under FX tracing the kernel size is
    a Proxy, which avg_pool2d rejects, so prepare_qat_fx fails. adaptive_avg_pool2d(out, 1)
    computes the same global average (the map is square); the modules, and so the state_dict,
    are unchanged. Both the FP32 and the QAT runs use this class, so they time the same network.
    """

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))


# Distinct random batches (images and labels), taken in turn. Training on one repeated batch
# memorizes it within a few steps; the softmax then gives gradients so small that they are
# denormal floats, and the step runs several times slower (ResNet18 batch 4: ~2000 ms instead of
# ~240 ms per FP32 step here), which measures the CPU's denormal handling, not training.
BATCHES = 16


def build(name):
    if name == "resnet18":
        return torchvision.models.resnet18(), 224, 1000
    if name in resnet_torch.DEPTH_N:
        return TraceableCifarResNetA(resnet_torch.DEPTH_N[name]), 32, 10
    sys.exit("unknown model " + name)


def time_ms(fn):
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def measure(model, batches, warmup, runs):
    """(step times, forward + loss times) in ms, for `model` already in train mode."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    position = [0]

    def next_batch():
        batch = batches[position[0] % len(batches)]
        position[0] += 1
        return batch

    def step():
        x, labels = next_batch()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        optimizer.step()

    def forward():
        x, labels = next_batch()
        loss_fn(model(x), labels)

    for _ in range(warmup):
        step()
    step_ms = [time_ms(step) for _ in range(runs)]
    forward_ms = [time_ms(forward) for _ in range(runs)]
    return step_ms, forward_ms


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    name, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    warmup, runs = int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, size, classes = build(name)
    batches = [(torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,)))
               for _ in range(BATCHES)]
    out = {}

    model.train()
    out["fp32_step_ms"], out["fp32_forward_ms"] = measure(model, batches, warmup, runs)

    # A fresh model of the same kind for QAT (the FP32 one has taken optimizer steps).
    torch.manual_seed(0)
    model, _, _ = build(name)
    model.train()
    # The "x86" qconfig mapping only; torch.backends.quantized.engine matters for converted int8
    # models, not for QAT's float fake quantization (and this build has no x86 engine).
    prepared = prepare_qat_fx(model, get_default_qat_qconfig_mapping("x86"), (batches[0][0],))
    prepared.train()
    out["qat_step_ms"], out["qat_forward_ms"] = measure(prepared, batches, warmup, runs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
