// Runs torch_ops_grad.py and reads its safetensors files without rounding (see torch_cases.h).

#include "train/ops/torch_cases.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status_macros.h"

namespace qlab::train::testing {
namespace {

template <typename T>
std::vector<T> Elements(const SafetensorsTensor& t) {
  std::vector<T> out(t.bytes.size() / sizeof(T));
  std::memcpy(out.data(), t.bytes.data(), out.size() * sizeof(T));
  return out;
}

std::string OutDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

}  // namespace

absl::StatusOr<TorchCase> TorchCase::Load(const std::string& path) {
  QLAB_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(path));
  TorchCase result;
  for (SafetensorsTensor& t : file.tensors) {
    std::string name = t.name;
    result.tensors_.emplace(std::move(name), std::move(t));
  }
  return result;
}

const SafetensorsTensor& TorchCase::Get(const std::string& name) const {
  const auto it = tensors_.find(name);
  QLAB_CHECK_MSG(it != tensors_.end(), "tensor missing from the torch_ops_grad.py case");
  return it->second;
}

std::vector<int64_t> TorchCase::Shape(const std::string& name) const { return Get(name).shape; }

std::vector<float> TorchCase::Floats(const std::string& name) const {
  const SafetensorsTensor& t = Get(name);
  QLAB_CHECK_MSG(t.dtype == SafetensorsDType::kF32, "Floats() of a tensor that is not F32");
  return Elements<float>(t);
}

std::vector<double> TorchCase::Doubles(const std::string& name) const {
  const SafetensorsTensor& t = Get(name);
  switch (t.dtype) {
    case SafetensorsDType::kF32: {
      const std::vector<float> v = Elements<float>(t);
      return std::vector<double>(v.begin(), v.end());
    }
    case SafetensorsDType::kF64:
      return Elements<double>(t);
    case SafetensorsDType::kI64: {
      const std::vector<int64_t> v = Elements<int64_t>(t);
      for (int64_t i : v) QLAB_CHECK_MSG(i > -(int64_t{1} << 53) && i < (int64_t{1} << 53), "");
      return std::vector<double>(v.begin(), v.end());
    }
    default:
      QLAB_CHECK_MSG(false, "Doubles() of a tensor that is not F32, F64 or I64");
  }
  return {};
}

std::vector<int64_t> TorchCase::Ints(const std::string& name) const {
  const SafetensorsTensor& t = Get(name);
  QLAB_CHECK_MSG(t.dtype == SafetensorsDType::kI64, "Ints() of a tensor that is not I64");
  return Elements<int64_t>(t);
}

double TorchCase::Scalar(const std::string& name) const {
  const std::vector<double> v = Doubles(name);
  QLAB_CHECK_MSG(v.size() == 1, "Scalar() of a tensor that has not exactly one element");
  return v[0];
}

absl::StatusOr<std::vector<std::pair<std::string, TorchCase>>> RunTorchCases(
    const std::string& family) {
  const std::string dir = OutDir();
  const std::string command =
      absl::StrCat("/usr/bin/python3 train/ops/torch_ops_grad.py ", family, " ", dir);
  if (std::system(command.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", command, "' failed: can /usr/bin/python3 import torch (python3-torch)?"));
  }
  std::ifstream list(absl::StrCat(dir, "/", family, ".cases"));
  std::vector<std::pair<std::string, TorchCase>> cases;
  for (std::string name; std::getline(list, name);) {
    QLAB_ASSIGN_OR_RETURN(
        TorchCase c, TorchCase::Load(absl::StrCat(dir, "/", family, ".", name, ".safetensors")));
    cases.emplace_back(name, std::move(c));
  }
  if (cases.empty()) return absl::DataLossError(absl::StrCat("no ", family, " cases in ", dir));
  return cases;
}

}  // namespace qlab::train::testing
