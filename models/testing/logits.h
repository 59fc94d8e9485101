// Comparing qlab's logits with PyTorch's in the models/ conformance tests.
//
// One rule for every model, stated once so that every test uses the same justified tolerance:
//     max |qlab − torch| ≤ tolerance × max |torch|   over the whole [N, classes] tensor,
// plus identical arg-max per row (unless the top two torch logits are closer than the bound,
// where either answer is correct). See resnet_conformance_test.cc for why the tolerance is what
// it is.
#ifndef QLAB_MODELS_TESTING_LOGITS_H_
#define QLAB_MODELS_TESTING_LOGITS_H_

#include <string>

#include "core/tensor.h"

namespace qlab::testing {

struct LogitsComparison {
  double max_abs_diff = 0;
  double max_abs_reference = 0;
  double relative = 0;       // max_abs_diff / max_abs_reference
  int rows = 0;
  int argmax_mismatches = 0;  // rows whose top class differs where it is not a near-tie
  std::string summary;        // one line for the test log
};

// `got` and `want` are float32 [N, classes] of equal shape (QLAB_CHECKed: a test bug otherwise).
LogitsComparison CompareLogits(const Tensor& got, const Tensor& want, double tolerance);

// Arg-max of row `row` of a float32 [N, classes] tensor.
int ArgMax(const Tensor& logits, int64_t row);

}  // namespace qlab::testing

#endif  // QLAB_MODELS_TESTING_LOGITS_H_
