// Softmax cross-entropy (see cross_entropy.h), one sample at a time in double.

#include "train/ops/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qlab::train {

namespace {

// Both losses: teacher_logits null (or teacher_weight 0) is the label-only target.
double CrossEntropyImpl(size_t batch, size_t classes, const float* logits, const int* labels,
                        float label_smoothing, const float* teacher_logits, float teacher_weight,
                        float* dlogits, int64_t* correct) {
  const double smoothing = label_smoothing;
  const double off_target = smoothing / static_cast<double>(classes);
  const double on_target = 1.0 - smoothing + off_target;
  const double teacher = teacher_logits != nullptr ? teacher_weight : 0.0;
  std::vector<double> shifted(classes), target(classes);
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
    // target = (1 - w) * smoothed one-hot + w * softmax(teacher row).
    for (size_t k = 0; k < classes; ++k) target[k] = k == label ? on_target : off_target;
    if (teacher > 0.0) {
      const float* t_row = teacher_logits + b * classes;
      double t_max = t_row[0];
      for (size_t k = 1; k < classes; ++k) t_max = std::max<double>(t_max, t_row[k]);
      double t_sum = 0.0;
      for (size_t k = 0; k < classes; ++k) t_sum += std::exp(static_cast<double>(t_row[k]) - t_max);
      for (size_t k = 0; k < classes; ++k) {
        const double p = std::exp(static_cast<double>(t_row[k]) - t_max) / t_sum;
        target[k] = (1.0 - teacher) * target[k] + teacher * p;
      }
    }
    // log softmax_k = (x_k - max) - log(sum_j exp(x_j - max)).
    double sum_exp = 0.0;
    for (size_t k = 0; k < classes; ++k) {
      shifted[k] = static_cast<double>(row[k]) - static_cast<double>(row[best]);
      sum_exp += std::exp(shifted[k]);
    }
    const double log_sum = std::log(sum_exp);
    // loss_b = -sum_k target_k log softmax_k.
    double sample = 0.0;
    for (size_t k = 0; k < classes; ++k) sample -= target[k] * (shifted[k] - log_sum);
    total += sample;
    if (dlogits != nullptr) {
      for (size_t k = 0; k < classes; ++k) {
        const double softmax = std::exp(shifted[k] - log_sum);
        dlogits[b * classes + k] =
            static_cast<float>((softmax - target[k]) / static_cast<double>(batch));
      }
    }
  }
  if (correct != nullptr) *correct = hits;
  return total / static_cast<double>(batch);
}

}  // namespace

double SoftmaxCrossEntropy(size_t batch, size_t classes, const float* logits, const int* labels,
                           float label_smoothing, float* dlogits, int64_t* correct) {
  return CrossEntropyImpl(batch, classes, logits, labels, label_smoothing, nullptr, 0.0f, dlogits,
                          correct);
}

double DistillationCrossEntropy(size_t batch, size_t classes, const float* logits,
                                const int* labels, float label_smoothing,
                                const float* teacher_logits, float teacher_weight,
                                float* dlogits, int64_t* correct) {
  return CrossEntropyImpl(batch, classes, logits, labels, label_smoothing, teacher_logits,
                          teacher_weight, dlogits, correct);
}

}  // namespace qlab::train
