#!/usr/bin/python3
"""Runs qlab graphs with PyTorch 1.13's own operators: the reference interpreter_test uses.

Reads a JSON list of cases, each a small qlab graph serialized node by node in topological order
(op name as Graph::Dump prints it, input names, attributes, parameter values) plus the input
tensors, evaluates every node with the matching torch.nn.functional operator and writes the
graph outputs. Tensors travel as {"shape": [...], "data": [flat float values]}; JSON numbers
carry float32 values exactly (they are written with 17 significant digits and read as doubles).
Used only by tests: qlab itself never calls PyTorch.

usage: torch_ops.py <cases.json> <results.json>
"""
import json
import sys

import torch
import torch.nn.functional as F


def to_tensor(t):
    return torch.tensor(t["data"], dtype=torch.float32).reshape(t["shape"])


def from_tensor(t):
    return {"shape": list(t.shape), "data": t.reshape(-1).tolist()}


def run_node(node, args):
    op, a = node["op"], node.get("attrs", {})
    if op == "conv2d":
        bias = args[2] if len(args) == 3 else None
        return F.conv2d(args[0], args[1], bias, stride=a["stride"], padding=a["padding"],
                        dilation=a["dilation"], groups=a["groups"])
    if op == "linear":
        return F.linear(args[0], args[1], args[2] if len(args) == 3 else None)
    if op == "batch_norm":
        x, weight, bias, mean, var = args
        return F.batch_norm(x, mean, var, weight, bias, training=False, eps=a["eps"])
    if op == "relu":
        return F.relu(args[0])
    if op == "sigmoid":
        return torch.sigmoid(args[0])
    if op == "add":
        return args[0] + args[1]
    if op == "identity":
        return args[0]
    if op == "max_pool2d":
        return F.max_pool2d(args[0], a["kernel"], a["stride"], a["padding"],
                            ceil_mode=a["ceil_mode"])
    if op == "avg_pool2d":
        return F.avg_pool2d(args[0], a["kernel"], a["stride"], a["padding"],
                            ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"])
    if op == "adaptive_avg_pool2d":
        return F.adaptive_avg_pool2d(args[0], a["output_size"])
    if op == "flatten":
        return torch.flatten(args[0], a["start_dim"])
    if op == "cat":
        return torch.cat(args, dim=a["axis"])
    if op == "strided_slice":
        return args[0][tuple(slice(b, e, s) for b, e, s in zip(a["begin"], a["end"], a["step"]))]
    if op == "channel_pad":
        # F.pad lists (left, right) pairs from the last axis backwards: W, H, then C.
        return F.pad(args[0], (0, 0, 0, 0, a["before"], a["after"]))
    raise ValueError("torch_ops.py has no mapping for op " + op)


def run_case(case):
    values = {}
    for node in case["nodes"]:
        if node["op"] == "input":
            values[node["name"]] = to_tensor(case["inputs"][node["name"]])
        elif node["op"] == "parameter":
            values[node["name"]] = to_tensor(node["value"])
        else:
            values[node["name"]] = run_node(node, [values[i] for i in node["inputs"]])
    return [from_tensor(values[name]) for name in case["outputs"]]


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    torch.set_num_threads(1)  # small shapes; keeps the 2-core machine free for the build
    with torch.no_grad():
        results = [run_case(case) for case in cases]
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
