// Test-only access to the PyTorch reference results of train/ops/torch_ops_grad.py: runs the
// script once for a family of ops (Debian's PyTorch through /usr/bin/python3, into TEST_TMPDIR)
// and reads each case's safetensors file exactly (float32 and float64 values as double, int64 as
// int64; nothing is rounded on the way in).
#ifndef QLAB_TRAIN_OPS_TORCH_CASES_H_
#define QLAB_TRAIN_OPS_TORCH_CASES_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/safetensors.h"

namespace qlab::train::testing {

// One case: named tensors. Asking for a tensor the file does not hold, or as a type it cannot
// be read as exactly, is a mismatch between the script and the test: QLAB_CHECK.
class TorchCase {
 public:
  static absl::StatusOr<TorchCase> Load(const std::string& path);

  bool Has(const std::string& name) const { return tensors_.count(name) != 0; }
  std::vector<int64_t> Shape(const std::string& name) const;
  // F32 tensors only (inputs the kernels take as they are).
  std::vector<float> Floats(const std::string& name) const;
  // F32 or F64 tensors, or integers below 2^53, as double.
  std::vector<double> Doubles(const std::string& name) const;
  // I64 tensors.
  std::vector<int64_t> Ints(const std::string& name) const;
  double Scalar(const std::string& name) const;  // a one-element tensor

 private:
  const SafetensorsTensor& Get(const std::string& name) const;
  std::map<std::string, SafetensorsTensor> tensors_;
};

// The cases of one family: runs `/usr/bin/python3 train/ops/torch_ops_grad.py <family> <dir>`
// (dir = TEST_TMPDIR) and loads every case the script listed, by name in the script's order.
// An error when the script fails (e.g. PyTorch is not importable) or writes nothing.
absl::StatusOr<std::vector<std::pair<std::string, TorchCase>>> RunTorchCases(
    const std::string& family);

}  // namespace qlab::train::testing

#endif  // QLAB_TRAIN_OPS_TORCH_CASES_H_
