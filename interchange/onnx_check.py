"""onnx.checker on exported models: the ONNX project's own validator as the first consumer.

Usage: onnx_check.py MODEL.onnx [MODEL.onnx ...]
Runs onnx.checker.check_model with full_check (which includes strict shape inference: every
node's input types must fit its op's schema, e.g. QuantizeLinear's zero point int8/uint8) on each
file and prints one line per model with its opset and op types. Exit status 1 on the first
failure, with the checker's message. Needs Debian's python3-onnx (tools/setup.sh).
"""
import collections
import sys

import onnx


def main(paths):
    for path in paths:
        model = onnx.load(path)
        try:
            onnx.checker.check_model(model, full_check=True)
        except onnx.checker.ValidationError as error:
            print(f"{path}: REJECTED: {error}")
            return 1
        ops = collections.Counter(node.op_type for node in model.graph.node)
        opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}
        print(f"{path}: ok (onnx {onnx.__version__}, opset {opset}, {dict(sorted(ops.items()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
