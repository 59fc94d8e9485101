"""Writes the onnx_import fuzz target's seed corpus: tiny CNNs exported by PyTorch 1.13.

Usage: /usr/bin/python3 tests/fuzz/make_onnx_seeds.py tests/fuzz/corpus/onnx_import
Debian's python3-torch (test-time only; qlab never calls PyTorch). The models are kept to a few
hundred weights so that each file is a few KB and the fuzzer's mutations land in the graph
structure rather than in weight bytes. They cover the op mappings of interchange/onnx_import.h:
Conv (+ bias, groups, stride), BatchNormalization kept and folded, Relu, Sigmoid, Add, MaxPool,
AveragePool, GlobalAveragePool, Flatten, Gemm, MatMul + Add, Concat, Slice, Pad, Dropout;
opsets 11, 13 and 17; a symbolic batch dimension. Seeded: the same bytes every run.
"""
import io
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBnRelu(nn.Module):
    """conv -> bn -> relu -> maxpool -> residual add -> global pool -> flatten -> linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):                       # [N, 3, 8, 8]
        y = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        y = F.relu(y + self.conv2(y))
        y = F.adaptive_avg_pool2d(y, 1)
        return self.fc(torch.flatten(y, 1))


class Branches(nn.Module):
    """Concat, Sigmoid, AveragePool, Pad (spatial and channels), Slice, Dropout, MatMul + Add."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 2, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 2, 1)
        self.conv_c = nn.Conv2d(4, 4, 3, stride=2)
        self.weight = nn.Parameter(torch.randn(16, 3) * 0.1)
        self.bias = nn.Parameter(torch.randn(3))

    def forward(self, x):                       # [N, 3, 8, 8]
        y = torch.cat([F.relu(self.conv_a(x)), torch.sigmoid(self.conv_b(x))], dim=1)
        y = F.avg_pool2d(y, 2, count_include_pad=False)                # [N, 4, 4, 4]
        y = self.conv_c(F.pad(y, (1, 1, 1, 1)))                         # [N, 4, 2, 2]
        y = F.pad(y, (0, 0, 0, 0, 1, 1))[:, 1:5, :, :]                  # channel Pad, Slice
        y = F.dropout(torch.flatten(y, 1), 0.5, self.training)         # [N, 16]
        return y @ self.weight + self.bias


def export(model, opset, training, folding):
    torch.manual_seed(0)
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    out = io.BytesIO()
    torch.onnx.export(model, torch.randn(1, 3, 8, 8), out, opset_version=opset,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                      training=training, do_constant_folding=folding)
    return out.getvalue()


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    conv_bn = ConvBnRelu()
    torch.manual_seed(1)
    branches = Branches()
    seeds = {
        "conv_bn_relu_opset11_bn_kept.onnx":
            export(conv_bn, 11, torch.onnx.TrainingMode.PRESERVE, False),
        "conv_bn_relu_opset17_bn_folded.onnx":
            export(conv_bn, 17, torch.onnx.TrainingMode.EVAL, True),
        # Constant folding: without it PyTorch computes the channel Pad's widths at run time
        # (Shape / Gather / Sub / Mul nodes), which the importer does not map.
        "branches_opset13.onnx": export(branches, 13, torch.onnx.TrainingMode.EVAL, True),
    }
    for name, data in seeds.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
