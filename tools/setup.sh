#!/usr/bin/env bash
# Installs everything qlab needs on Debian 12 (bookworm): Debian's own packages, then ONNX Runtime
# (npm's onnxruntime-node, the one package not in Debian) into <repository>/.cache/ort, where
# interchange/onnx_resnet_test runs it.
#
# Idempotent: packages already installed are skipped, and apt is not even called when nothing is
# missing; ONNX Runtime is installed only when .cache/ort does not hold the pinned version. Runs
# as root, or through sudo otherwise (for apt only). Bazel then builds fully offline (WORKSPACE
# explains the shims); nothing is downloaded at build or test time. Any failure exits non-zero
# with the reason: CI must never run without a dependency it then silently skips.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
# The ONNX Runtime release the interchange/ results were measured with.
ORT_VERSION=1.30.0

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
# Node.js and npm run ONNX Runtime (interchange/ort_run.js). Machines that already have a node
# and npm of their own (e.g. from NodeSource, whose nodejs package bundles npm and conflicts with
# Debian's npm) keep them; others get Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} Debian packages already installed"
else
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
fi

# ONNX Runtime. --ignore-scripts: the package's install script would download GPU libraries
# (impossible offline, and not needed: the CPU library ships inside the package). The install is
# then checked by loading the module, so a broken one fails here rather than in a test.
ort_dir="$REPO/.cache/ort"
ort_package="$ort_dir/node_modules/onnxruntime-node/package.json"
ort_installed() {
  [ -f "$ort_package" ] &&
    node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' \
      "$ort_package" "$ORT_VERSION"
}
ort_fail() {
  echo "setup: ERROR: $1" >&2
  echo "setup: ONNX Runtime is required (interchange/onnx_resnet_test fails without it); fix" \
    "the cause, then rerun tools/setup.sh, or by hand:" >&2
  echo "  mkdir -p $ort_dir && cd $ort_dir &&" \
    "npm install --ignore-scripts --save-exact onnxruntime-node@$ORT_VERSION" >&2
  exit 1
}
if ort_installed; then
  echo "setup: ONNX Runtime $ORT_VERSION already in $ort_dir"
else
  echo "setup: installing ONNX Runtime (npm onnxruntime-node@$ORT_VERSION) into $ort_dir"
  mkdir -p "$ort_dir" || ort_fail "cannot create $ort_dir"
  (cd "$ort_dir" && npm install --ignore-scripts --save-exact --no-audit --no-fund \
    "onnxruntime-node@$ORT_VERSION") || ort_fail "npm install failed (see npm's messages above)"
  ort_installed || ort_fail "npm finished but $ort_package is not version $ORT_VERSION"
fi
NODE_PATH="$ort_dir/node_modules" node -e 'require("onnxruntime-node")' ||
  ort_fail "onnxruntime-node is installed but does not load (node $(node --version))"
echo "setup: done"
