// Softmax cross-entropy loss of a classifier's logits, with its gradient and the count of
// correct top-1 predictions: the loss layer of qlab's training engine (//train).
//
// Kernel layer: raw pointers, no validation. logits [batch][classes] (float32), labels[batch].
// Computed in double (log-sum-exp shifted by the row maximum, so no overflow), matching
// torch.nn.functional.cross_entropy(reduction="mean", label_smoothing=...) of PyTorch 1.13
// (cross_entropy_test). Single-threaded: batch x classes is small (e.g. 128 x 10).
#ifndef QLAB_TRAIN_OPS_CROSS_ENTROPY_H_
#define QLAB_TRAIN_OPS_CROSS_ENTROPY_H_

#include <cstddef>
#include <cstdint>

namespace qlab::train {

// Mean softmax cross-entropy over the batch with PyTorch's label smoothing (target = (1-eps) *
// onehot + eps / classes). Returns the loss (computed in double, returned as double); writes
// dlogits = (softmax - target) / batch (nullable) and counts correct argmax predictions
// (ties: lowest index) into *correct (nullable). Labels must be in [0, classes) (the caller
// checks).
double SoftmaxCrossEntropy(size_t batch, size_t classes, const float* logits, const int* labels,
                           float label_smoothing, float* dlogits, int64_t* correct);

// Knowledge distillation (Hinton et al., 2015, at temperature 1): the same mean cross-entropy
// against the mixed target
//   (1 - teacher_weight) * [(1 - eps) * onehot + eps / classes] + teacher_weight * p_teacher,
// p_teacher = softmax(teacher_logits[b]) (computed in double), so dlogits = (softmax - target) /
// batch as above; teacher_weight in [0, 1] (0 is SoftmaxCrossEntropy exactly). This is
// PyTorch's cross_entropy with class-probability targets. `correct` still counts the labels.
double DistillationCrossEntropy(size_t batch, size_t classes, const float* logits,
                                const int* labels, float label_smoothing,
                                const float* teacher_logits, float teacher_weight,
                                float* dlogits, int64_t* correct);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_CROSS_ENTROPY_H_
