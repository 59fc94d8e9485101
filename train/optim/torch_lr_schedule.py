#!/usr/bin/python3
"""PyTorch 1.13 side of lr_schedule_test: the learning rate of every step of a run from PyTorch's
own schedulers, stepped once per optimizer step.

Test-only (qlab never calls PyTorch).

  torch_lr_schedule.py <dir> <case>...
      Reads <dir>/<case>.json: {"base_lr", "total_steps", "warmup_steps", "warmup_start_factor",
      "decay": "constant"|"cosine"|"multistep", "min_lr", "milestones" (absolute steps), "gamma"}.
      Builds the decay (constant: LambdaLR(1); cosine: CosineAnnealingLR(T_max=total-warmup,
      eta_min=min_lr); multistep: MultiStepLR(milestones shifted by the warm-up, gamma)), behind
      SequentialLR([LinearLR(start_factor, end_factor=1, total_iters=warmup), decay],
      milestones=[warmup]) when warmup > 0. Writes <dir>/<case>.lr: total_steps + 1 little-endian
      float64 values, the optimizer's lr before each step and after the last one.
"""
import json
import os
import struct
import sys
import warnings

import torch
from torch.optim import lr_scheduler

assert sys.byteorder == "little"


def learning_rates(config):
    parameter = torch.nn.Parameter(torch.zeros(1))  # never has a gradient: step() is a no-op
    optimizer = torch.optim.SGD([parameter], lr=config["base_lr"])
    warmup = config["warmup_steps"]
    total = config["total_steps"]
    schedulers = []
    if warmup > 0:
        schedulers.append(lr_scheduler.LinearLR(
            optimizer, start_factor=config["warmup_start_factor"], end_factor=1.0,
            total_iters=warmup))
    if config["decay"] == "constant":
        decay = lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    elif config["decay"] == "cosine":
        decay = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup,
                                               eta_min=config["min_lr"])
    elif config["decay"] == "multistep":
        decay = lr_scheduler.MultiStepLR(
            optimizer, milestones=[m - warmup for m in config["milestones"]], gamma=config["gamma"])
    else:
        raise ValueError(config["decay"])
    schedulers.append(decay)
    if warmup > 0:
        scheduler = lr_scheduler.SequentialLR(optimizer, schedulers, milestones=[warmup])
    else:
        scheduler = decay
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    rates.append(optimizer.param_groups[0]["lr"])
    return rates


def main():
    # SequentialLR's constructor and step(0) emit deprecation warnings in 1.13; they say nothing
    # about the values.
    warnings.simplefilter("ignore")
    directory = sys.argv[1]
    for case in sys.argv[2:]:
        with open(os.path.join(directory, case + ".json")) as f:
            config = json.load(f)
        rates = learning_rates(config)
        with open(os.path.join(directory, case + ".lr"), "wb") as f:
            f.write(struct.pack("<%dd" % len(rates), *rates))


if __name__ == "__main__":
    main()
