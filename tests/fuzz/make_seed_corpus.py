"""Writes the seed corpora for tests/fuzz under corpus/<target>/ (run from any directory).

Usage: /usr/bin/python3 tests/fuzz/make_seed_corpus.py tests/fuzz/corpus [workspace]
Small valid files in each format, built with the standard library only (no PyTorch needed): the
pickles are produced by Python's own pickle module exactly as torch.save drives it (protocol 2,
persistent ids for storages, torch._utils._rebuild_tensor_v2 reductions), through stand-in
modules named like torch's, so the opcodes are the real ones. Deterministic: the same bytes every
run. Observer-state seeds come from SaveObserver instead (make_observer_seeds.cc). With the
workspace given, the sweep_config seeds include the checked-in experiments/configs/*.json, and
the image_folder seeds a few small real images from ../shared/data (copied, at most 20 KB each).
"""
import collections
import glob
import gzip
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import types
import zipfile
import zlib


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


def tar(members, fmt=tarfile.USTAR_FORMAT):
    """members: list of (path, bytes or None for a folder); a deterministic tar archive."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for path, data in members:
            info = tarfile.TarInfo(path)
            info.mtime, info.uname, info.gname = 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def png(width, height, color_type, bit_depth, seed):
    """A valid PNG (no filter, zlib-compressed pixels) of the given colour type and depth."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = (width * channels * bit_depth + 7) // 8
    raw = b"".join(b"\0" + bytes((seed + y * 13 + i * 7) % 256 for i in range(row))
                   for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))

    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if color_type == 3:
        body += chunk(b"PLTE", bytes(range(256)) * 3)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def bmp(width, height, seed):
    """A 24-bit bottom-up BMP."""
    stride = (width * 3 + 3) // 4 * 4
    pixels = b"".join(bytes((seed + y * 5 + i) % 256 for i in range(width * 3)) +
                      b"\0" * (stride - width * 3) for y in range(height))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def main(out_dir, workspace=None):
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

    # image_folder: generated PNGs of every colour type the decoder converts, and a BMP.
    write("image_folder", "rgb8.png", png(5, 4, 2, 8, 1))
    write("image_folder", "gray8.png", png(3, 3, 0, 8, 2))
    write("image_folder", "rgba16.png", png(2, 3, 6, 16, 3))
    write("image_folder", "palette.png", png(4, 2, 3, 8, 4))
    write("image_folder", "gray_alpha.png", png(2, 2, 4, 8, 5))
    write("image_folder", "rgb24.bmp", bmp(3, 2, 6))

    # tar_gz: folders, files, a GNU long name and a pax path, plain (gzread passes it through)
    # and gzip-compressed (mtime 0: the same bytes every run).
    long_name = "train/cat/" + "x" * 120 + ".png"
    members = [("train", None), ("train/cat", None), ("train/cat/a.png", png(2, 2, 2, 8, 7)),
               ("train/dog/b.png", png(2, 2, 0, 8, 8)), (long_name, b"not an image")]
    write("tar_gz", "ustar.tar", tar(members[:4]))
    write("tar_gz", "gnu_long_name.tar", tar(members, tarfile.GNU_FORMAT))
    write("tar_gz", "pax.tar.gz", gzip.compress(tar(members, tarfile.PAX_FORMAT), mtime=0))

    # sweep_config: every sweep key, a PTQ config object, a layer-overrides file.
    write("sweep_config", "all_keys.json", json.dumps({
        "title": "t", "models": ["resnet20", "resnet56"], "quantizers": ["xnnpack", "x86"],
        "calibrators": ["minmax", "percentile:99.99", "default"],
        "weight_granularities": ["per_channel", "per_tensor"],
        "activation_schemes": ["backend", "affine", "symmetric"], "calib_images": 512,
        "calib_seed": 0, "calib_repeats": 2, "eval_images": 0, "batch_size": 100,
        "timing_runs": 20, "threads": 2, "sqnr_images": 32, "engine": "fast",
        "data_root": "", "layer_overrides": {"conv1": "float", "fc": "8bit"}}, indent=1).encode())
    write("sweep_config", "ptq_config.json", json.dumps({
        "model": "resnet20", "weights": "", "quantizer": "tensorrt", "calibrator": "entropy",
        "weight_granularity": "per_tensor", "activation_scheme": "", "weight_bits": 4,
        "activation_bits": 8, "layer_overrides": {"*": "float"}, "sqnr_images": 0,
        "calib_images": 64, "calib_seed": 3, "eval_images": 100, "batch_size": 10,
        "timing_runs": 0, "engine": "reference", "threads": 1, "data_root": "",
        "cache_dir": "", "export_onnx": "", "show_progress": False}).encode())
    write("sweep_config", "layer_config.json", b'{"layer1.0.conv1": "float", "fc": "minmax"}')
    if workspace is not None:
        for path in sorted(glob.glob(os.path.join(workspace, "experiments/configs/*.json"))):
            with open(path, "rb") as f:
                write("sweep_config", "configs_" + os.path.basename(path), f.read())
        # A few of the smallest real images: CIFAR-10 PNGs and ImageNet JPEGs.
        data = os.path.join(workspace, "..", "shared", "data")
        real = [("cifar10-test-png/test/airplane/biplane_s_000273.png", "cifar_airplane.png"),
                ("cifar10-test-png/test/airplane/monoplane_s_000365.png", "cifar_monoplane.png"),
                ("imagenet-val1300/images/ILSVRC2012_val_00015787.JPEG", "imagenet_15787.jpg"),
                ("imagenet-val1300/images/ILSVRC2012_val_00003571.JPEG", "imagenet_3571.jpg")]
        for source, name in real:
            with open(os.path.join(data, source), "rb") as f:
                raw = f.read()
            assert len(raw) <= 20 * 1024, source
            write("image_folder", name, raw)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
