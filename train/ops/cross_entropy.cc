// Softmax cross-entropy (see cross_entropy.h), one sample at a time in double.

#include "train/ops/cross_entropy.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qlab::train {

double SoftmaxCrossEntropy(size_t batch, size_t classes, const float* logits, const int* labels,
                           float label_smoothing, float* dlogits, int64_t* correct) {
  const double smoothing = label_smoothing;
  const double off_target = smoothing / static_cast<double>(classes);
  const double on_target = 1.0 - smoothing + off_target;
  std::vector<double> shifted(classes);
  double total = 0.0;
  int64_t hits = 0;
  for (size_t b = 0; b < batch; ++b) {
    const float* row = logits + b * classes;
    size_t best = 0;
    for (size_t k = 1; k < classes; ++k) {
      if (row[k] > row[best]) best = k;  // strict: the lowest index wins a tie
    }
    const size_t label = static_cast<size_t>(labels[b]);
    if (best == label) ++hits;
    // log softmax_k = (x_k - max) - log(sum_j exp(x_j - max)).
    double sum_exp = 0.0;
    for (size_t k = 0; k < classes; ++k) {
      shifted[k] = static_cast<double>(row[k]) - static_cast<double>(row[best]);
      sum_exp += std::exp(shifted[k]);
    }
    const double log_sum = std::log(sum_exp);
    // loss_b = -sum_k target_k log softmax_k, target = off_target + (1 - eps) [k == label].
    double sample = 0.0;
    for (size_t k = 0; k < classes; ++k) {
      const double target = k == label ? on_target : off_target;
      sample -= target * (shifted[k] - log_sum);
    }
    total += sample;
    if (dlogits != nullptr) {
      for (size_t k = 0; k < classes; ++k) {
        const double target = k == label ? on_target : off_target;
        const double softmax = std::exp(shifted[k] - log_sum);
        dlogits[b * classes + k] =
            static_cast<float>((softmax - target) / static_cast<double>(batch));
      }
    }
  }
  if (correct != nullptr) *correct = hits;
  return total / static_cast<double>(batch);
}

}  // namespace qlab::train
