"""Foreign ONNX models for interchange/onnx_import_test.cc, exported by PyTorch 1.13.

Test-only (qlab never calls PyTorch). Run by Debian's /usr/bin/python3 with python3-torch and
python3-torchvision. Writes into <out_dir>:
  input_224.bin / input_16.bin        raw little-endian float32 NCHW inputs (seeded randn)
  resnet18_bn.onnx                     torchvision resnet18 (random init, batch-norm statistics
                                       randomized, eval), BatchNormalization kept unfused
                                       (training=PRESERVE, no constant folding)
  resnet18_fused.onnx                  the same model exported in EVAL mode with constant folding
                                       (PyTorch folds every BN into its Conv)
  resnet18.logits.bin                  PyTorch's eval-mode logits on input_224 [2, 1000]
  small_cnn.onnx, small_cnn.logits.bin a small CNN using Concat, Sigmoid, AveragePool (with and
                                       without count_include_pad), Pad (spatial, folded into a
                                       Conv; channels), Slice, Dropout, MatMul + Add; input_16
Opset 13, batch dimension symbolic ("N"). Usage: onnx_torch_models.py <out_dir>
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(8)
        self.conv_b = nn.Conv2d(3, 4, 1)
        self.conv_c = nn.Conv2d(12, 16, 3, stride=2)
        self.dropout = nn.Dropout(0.25)
        self.weight = nn.Parameter(torch.randn(120, 10) * 0.1)  # x @ W: MatMul, W [in, out]
        self.bias = nn.Parameter(torch.randn(10))

    def forward(self, x):                                    # [N, 3, 16, 16]
        a = F.relu(self.bn_a(self.conv_a(x)))                # [N, 8, 16, 16]
        b = torch.sigmoid(self.conv_b(x))                    # [N, 4, 16, 16]
        y = torch.cat([a, b], dim=1)                         # Concat [N, 12, 16, 16]
        y = F.pad(y, (1, 1, 1, 1))                           # spatial zero Pad -> folded
        y = F.relu(self.conv_c(y))                           # [N, 16, 8, 8]
        y = F.avg_pool2d(y, 2, 2)                            # AveragePool [N, 16, 4, 4]
        y = F.pad(y, (0, 0, 0, 0, 2, 2))                     # channel Pad [N, 20, 4, 4]
        y = y[:, :, 1:, ::2]                                 # Slice [N, 20, 3, 2]
        y = F.avg_pool2d(y, 3, 1, padding=1, count_include_pad=False)  # [N, 20, 3, 2]
        y = self.dropout(torch.flatten(y, 1))                # [N, 120]
        return y @ self.weight + self.bias                   # MatMul + Add [N, 10]


def randomize_batch_norms(model, generator):
    # Fresh BNs are identities (mean 0, var 1): randomize so that a wrong statistic shows.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=generator) + 0.5
            m.bias.data = torch.randn(c, generator=generator) * 0.1
            m.running_mean.data = torch.randn(c, generator=generator) * 0.1
            m.running_var.data = torch.rand(c, generator=generator) + 0.5


def write_raw(path, tensor):
    tensor.detach().contiguous().to(torch.float32).numpy().astype("<f4").tofile(path)


def export(model, x, path, **kwargs):
    torch.onnx.export(model, x, path, opset_version=13, input_names=["x"],
                      output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, **kwargs)


def main():
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)

    resnet18 = torchvision.models.resnet18()
    randomize_batch_norms(resnet18, generator)
    resnet18.eval()
    x224 = torch.randn(2, 3, 224, 224, generator=generator)
    with torch.no_grad():
        logits = resnet18(x224)
    write_raw(os.path.join(out_dir, "input_224.bin"), x224)
    write_raw(os.path.join(out_dir, "resnet18.logits.bin"), logits)
    export(resnet18, x224, os.path.join(out_dir, "resnet18_bn.onnx"),
           training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    export(resnet18, x224, os.path.join(out_dir, "resnet18_fused.onnx"),
           training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)

    small = SmallCnn()
    randomize_batch_norms(small, generator)
    small.eval()
    x16 = torch.randn(2, 3, 16, 16, generator=generator)
    with torch.no_grad():
        small_logits = small(x16)
    write_raw(os.path.join(out_dir, "input_16.bin"), x16)
    write_raw(os.path.join(out_dir, "small_cnn.logits.bin"), small_logits)
    export(small, x16, os.path.join(out_dir, "small_cnn.onnx"), do_constant_folding=True)


if __name__ == "__main__":
    main()
