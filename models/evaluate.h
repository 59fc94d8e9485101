// Evaluate: classification accuracy of any batch runner over a dataset.
//
// The FP32 engine, the reference interpreter, a fake-quant model and the lowered int8 engine are
// all "images in, logits out"; Evaluate feeds them the same deterministic batches (BatchLoader:
// decoding on a background thread) and counts top-1, top-5 and per-class accuracy, keeping every
// prediction so that two runs can be compared image by image (prediction agreement between
// FP32, fake-quant and int8 is a first-class number in qlab's records). A progress line shows
// images/s and ETA.
//
//   QLAB_ASSIGN_OR_RETURN(EvalResult r, Evaluate(*test_set, AllIndices(*test_set),
//                                                CifarEvalTransform(), runner, {}));
//   r.top1();  // 0.9178
#ifndef QLAB_MODELS_EVALUATE_H_
#define QLAB_MODELS_EVALUATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "models/data/batch_loader.h"
#include "models/data/dataset.h"
#include "models/data/transforms.h"
#include "nlohmann/json.hpp"

namespace qlab {

// float32 NCHW images [n, 3, H, W] -> float32 logits [n, classes].
using BatchRunner = std::function<absl::StatusOr<Tensor>(const Tensor& images)>;

struct EvalOptions {
  int batch_size = 100;
  bool skip_bad_images = false;
  bool show_progress = true;
  std::string label = "eval";  // the progress line's label
};

struct EvalResult {
  int64_t images = 0;
  int64_t top1_correct = 0;
  int64_t top5_correct = 0;
  std::vector<int64_t> per_class_correct;  // top-1, by true class
  std::vector<int64_t> per_class_total;
  std::vector<int64_t> indices;  // dataset index of each evaluated image, in order
  std::vector<int> predictions;  // top-1 class of each, in the same order
  std::vector<std::string> skipped;
  double seconds = 0.0;

  double top1() const { return images == 0 ? 0.0 : static_cast<double>(top1_correct) / images; }
  double top5() const { return images == 0 ? 0.0 : static_cast<double>(top5_correct) / images; }
  // Accuracies, counts and per-class accuracy; timing under "seconds" only.
  nlohmann::json ToJson(const std::vector<std::string>& class_names) const;
};

// Runs `runner` over `order` of `dataset`. InvalidArgument naming the batch when the runner's
// logits are not [n, classes] with classes == dataset.class_names().size(), or contain NaN.
absl::StatusOr<EvalResult> Evaluate(const data::Dataset& dataset, std::vector<int64_t> order,
                                    const data::Transform& transform, const BatchRunner& runner,
                                    const EvalOptions& options = {});

// Fraction of images with the same top-1 prediction in two results over the same images.
// InvalidArgument if they did not evaluate the same indices.
absl::StatusOr<double> PredictionAgreement(const EvalResult& a, const EvalResult& b);

}  // namespace qlab

#endif  // QLAB_MODELS_EVALUATE_H_
