"""Writes the seed corpora for tests/fuzz under corpus/<target>/ (run from any directory).

Usage: /usr/bin/python3 tests/fuzz/make_seed_corpus.py tests/fuzz/corpus
Small valid files in each format, built with the standard library only (no PyTorch needed): the
pickles are produced by Python's own pickle module exactly as torch.save drives it (protocol 2,
persistent ids for storages, torch._utils._rebuild_tensor_v2 reductions), through stand-in
modules named like torch's, so the opcodes are the real ones. Deterministic: the same bytes every
run. Observer-state seeds come from SaveObserver instead (make_observer_seeds.cc).
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes), stored in the given order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the reference writer pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + data


# Stand-ins for the torch names the restricted unpickler allows, so that Python's pickler emits
# GLOBAL torch._utils _rebuild_tensor_v2 and GLOBAL torch FloatStorage as torch.save does.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, torch_utils
for storage_name in ("FloatStorage", "HalfStorage", "LongStorage", "ByteStorage"):
    setattr(torch, storage_name, type(storage_name, (), {"__module__": "torch"}))


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called: only pickled")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class Storage:
    def __init__(self, kind, key, numel):
        self.kind, self.key, self.numel = kind, key, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False,
                     collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, obj.kind), obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj):
    out = io.BytesIO()
    TorchPickler(out, protocol=2).dump(obj)
    return out.getvalue()


def torch_zip(pickle_bytes, storages, prefix="archive"):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in [("data.pkl", pickle_bytes)] + [
                ("data/" + key, raw) for key, raw in storages] + [("version", b"3\n")]:
            info = zipfile.ZipInfo(prefix + "/" + name, date_time=(2020, 1, 1, 0, 0, 0))
            z.writestr(info, data)
    return out.getvalue()


def floats(values):
    return struct.pack("<%df" % len(values), *values)


def main(out_dir):
    def write(target, name, data):
        os.makedirs(os.path.join(out_dir, target), exist_ok=True)
        with open(os.path.join(out_dir, target, name), "wb") as f:
            f.write(data)

    write("safetensors", "f32_f16_i64", safetensors(
        [("conv.weight", "F32", [2, 3], floats([0.5, -1, 2, 3.25, -4, 5])),
         ("bn.num_batches_tracked", "I64", [], struct.pack("<q", 7)),
         ("conv.bias", "F16", [2], struct.pack("<2e", 1.5, -2.0))],
        {"arch": "tiny", "format": "pt"}))
    write("safetensors", "bf16_u8_bool", safetensors(
        [("a", "BF16", [2, 1], b"\x80\x3f\x00\xc0"), ("b", "U8", [3], b"\x00\x7f\xff"),
         ("c", "BOOL", [2], b"\x00\x01"), ("d", "F8_E4M3", [1], b"\x38")]))
    write("safetensors", "empty", safetensors([]))

    # The state dicts use storage key "0" of at most 64 floats, the storage the pth_state_dict
    # target's fixed zip provides, so the same pickles seed both pth targets.
    s = Storage("FloatStorage", "0", 64)
    state = collections.OrderedDict([
        ("conv1.weight", Tensor(s, 0, [2, 2, 2, 2], [8, 4, 2, 1])),
        ("fc.weight", Tensor(s, 16, [4, 3], [1, 4])),  # a transposed (non-contiguous) view
        ("fc.bias", Tensor(s, 60, [4], [1]))])
    state_pickle = torch_pickle(state)
    wrapped_pickle = torch_pickle({"state_dict": collections.OrderedDict(
        [("module.w", Tensor(Storage("FloatStorage", "0", 64), 0, [8, 8], [8, 1]))]), "epoch": 90})
    half_pickle = torch_pickle(collections.OrderedDict(
        [("h", Tensor(Storage("HalfStorage", "0", 128), 3, [5], [2])),
         ("n", Tensor(Storage("LongStorage", "0", 32), 0, [], []))]))
    for name, data in [("state_dict", state_pickle), ("wrapped", wrapped_pickle),
                       ("half_long", half_pickle)]:
        write("restricted_unpickler", name, data)
        write("pth_state_dict", name, data)
    write("restricted_unpickler", "protocol4_containers", pickle.dumps(
        {"a": [1, 2.5, None, True, "x" * 3], "b": (1, -(2 ** 40)), "c": {}}, protocol=4))

    storage = floats([float(i) - 31.5 for i in range(64)])
    write("pth_zip", "state_dict", torch_zip(state_pickle, [("0", storage)]))
    write("pth_zip", "wrapped", torch_zip(wrapped_pickle, [("0", storage)], prefix="model"))

    def cifar_record(label, seed):
        return bytes([label]) + bytes((seed * 31 + i * 7) % 256 for i in range(3072))

    write("cifar10_binary", "two_records", cifar_record(3, 1) + cifar_record(9, 2))
    write("cifar10_binary", "one_record", cifar_record(0, 3))


if __name__ == "__main__":
    main(sys.argv[1])
