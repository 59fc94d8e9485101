#!/usr/bin/env bash
# Installs everything qlab needs on Debian 12 (bookworm), from Debian's own packages only.
#
# Idempotent: packages already installed are skipped, and apt is not even called when nothing is
# missing. Runs as root, or through sudo otherwise. Bazel then builds fully offline (WORKSPACE
# explains the shims); nothing is downloaded at build or test time.
set -euo pipefail

PACKAGES=(
  # Build: Debian's Bazel 4.2.3 and the Java rules its toolchain resolution parses.
  bazel-bootstrap bazel-rules-java g++
  # Libraries (WORKSPACE maps each to a Bazel target).
  libabsl-dev libhwy-dev libbenchmark-dev libgtest-dev libopencv-dev pybind11-dev python3-dev
  python3-numpy nlohmann-json3-dev libpthreadpool-dev libzip-dev
  # ONNX interchange (interchange/): generated ONNX messages + protobuf, and the Python checker.
  libonnx-dev libprotobuf-dev python3-onnx
  # Fuzzing and sanitizer builds (tests/fuzz, --config=fuzz): clang 14 and its libFuzzer/ASan
  # runtimes.
  clang libclang-rt-14-dev
  # oneDNN: the side-by-side reference in the kernel benchmarks.
  libdnnl-dev
  # PyTorch 1.13 + torchvision: the reference the conformance tests compare against (never
  # used by qlab itself).
  python3-torch python3-torchvision
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q "${missing[@]}"
echo "setup: done"
