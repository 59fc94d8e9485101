// Scalar reference (oracle) of train/ops/cross_entropy.h for tests, templated on the element
// type (double for the finite-difference tests). Written from the definitions without the
// max shift (the tests keep logits small enough for exp) and with PyTorch's decomposition of
// label smoothing: loss = (1 - eps) * nll + eps * mean_k(-log softmax_k).
#ifndef QLAB_TRAIN_OPS_CROSS_ENTROPY_REF_H_
#define QLAB_TRAIN_OPS_CROSS_ENTROPY_REF_H_

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace qlab::train {

template <typename T>
T SoftmaxCrossEntropyForwardRef(size_t batch, size_t classes, const T* logits, const int* labels,
                                T label_smoothing) {
  T total = 0;
  for (size_t b = 0; b < batch; ++b) {
    const T* row = logits + b * classes;
    T sum_exp = 0;
    for (size_t k = 0; k < classes; ++k) sum_exp += std::exp(row[k]);
    T nll = 0, smooth = 0;
    for (size_t k = 0; k < classes; ++k) {
      const T log_p = row[k] - std::log(sum_exp);
      if (static_cast<int>(k) == labels[b]) nll = -log_p;
      smooth -= log_p / static_cast<T>(classes);
    }
    total += (1 - label_smoothing) * nll + label_smoothing * smooth;
  }
  return total / static_cast<T>(batch);
}

// dloss/dlogits = (softmax - target) / batch, target = (1 - eps) onehot + eps / classes.
template <typename T>
void SoftmaxCrossEntropyBackwardRef(size_t batch, size_t classes, const T* logits,
                                    const int* labels, T label_smoothing, T* dlogits) {
  for (size_t b = 0; b < batch; ++b) {
    const T* row = logits + b * classes;
    T sum_exp = 0;
    for (size_t k = 0; k < classes; ++k) sum_exp += std::exp(row[k]);
    for (size_t k = 0; k < classes; ++k) {
      const T target = (static_cast<int>(k) == labels[b] ? 1 - label_smoothing : T(0)) +
                       label_smoothing / static_cast<T>(classes);
      dlogits[b * classes + k] = (std::exp(row[k]) / sum_exp - target) / static_cast<T>(batch);
    }
  }
}

// Correct top-1 predictions, the first maximum winning ties.
template <typename T>
int64_t CountCorrectRef(size_t batch, size_t classes, const T* logits, const int* labels) {
  int64_t correct = 0;
  for (size_t b = 0; b < batch; ++b) {
    int best = 0;
    for (size_t k = 0; k < classes; ++k) {
      if (logits[b * classes + k] > logits[b * classes + best]) best = static_cast<int>(k);
    }
    correct += best == labels[b] ? 1 : 0;
  }
  return correct;
}

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_CROSS_ENTROPY_REF_H_
