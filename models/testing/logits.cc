// CompareLogits: the shared logits-agreement rule of the models/ conformance tests.
#include "models/testing/logits.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "core/check.h"

namespace qlab::testing {

int ArgMax(const Tensor& logits, int64_t row) {
  const int64_t classes = logits.dim(1);
  const float* p = logits.data<float>() + row * classes;
  return static_cast<int>(std::max_element(p, p + classes) - p);
}

LogitsComparison CompareLogits(const Tensor& got, const Tensor& want, double tolerance) {
  QLAB_CHECK(got.shape() == want.shape() && got.rank() == 2);
  LogitsComparison c;
  const float* g = got.data<float>();
  const float* w = want.data<float>();
  for (int64_t i = 0; i < want.numel(); ++i) {
    c.max_abs_diff = std::max(c.max_abs_diff, std::abs(static_cast<double>(g[i]) - w[i]));
    c.max_abs_reference = std::max(c.max_abs_reference, std::abs(static_cast<double>(w[i])));
  }
  c.relative = c.max_abs_reference > 0 ? c.max_abs_diff / c.max_abs_reference : c.max_abs_diff;
  const double bound = tolerance * c.max_abs_reference;
  c.rows = static_cast<int>(want.dim(0));
  const int64_t classes = want.dim(1);
  for (int64_t r = 0; r < want.dim(0); ++r) {
    const int a = ArgMax(got, r), b = ArgMax(want, r);
    if (a == b) continue;
    // A near-tie in torch's own logits: both answers are within the tolerance of correct.
    const float* row = w + r * classes;
    if (std::abs(static_cast<double>(row[a]) - row[b]) > 2 * bound) ++c.argmax_mismatches;
  }
  c.summary = absl::StrFormat(
      "%d rows: max |qlab - torch| = %.3g, max |torch| = %.3g, relative %.3g (bound %.1g), "
      "%d arg-max mismatches",
      c.rows, c.max_abs_diff, c.max_abs_reference, c.relative, tolerance, c.argmax_mismatches);
  return c;
}

}  // namespace qlab::testing
