// Evaluate / PredictionAgreement (models/evaluate.h).
#include "models/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/progress.h"
#include "core/status_macros.h"

namespace qlab {
namespace {

// Indices of the k largest logits of one row, largest first (ties: lower class first, as
// torch.topk on CPU resolves them for distinct values; exact ties are rare in float logits).
std::vector<int> TopK(const float* row, int classes, int k) {
  std::vector<int> order(classes);
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, classes);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [row](int a, int b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
  order.resize(k);
  return order;
}

}  // namespace

absl::StatusOr<EvalResult> Evaluate(const data::Dataset& dataset, std::vector<int64_t> order,
                                    const data::Transform& transform, const BatchRunner& runner,
                                    const EvalOptions& options) {
  const int classes = static_cast<int>(dataset.class_names().size());
  data::LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.skip_bad_images = options.skip_bad_images;
  const int64_t total = static_cast<int64_t>(order.size());
  QLAB_ASSIGN_OR_RETURN(
      std::unique_ptr<data::BatchLoader> loader,
      data::BatchLoader::Create(dataset, std::move(order), transform, loader_options));
  EvalResult result;
  result.per_class_correct.assign(classes, 0);
  result.per_class_total.assign(classes, 0);
  std::optional<ProgressLine> progress;
  if (options.show_progress) progress.emplace(options.label, total, "img");
  const auto start = std::chrono::steady_clock::now();
  for (int64_t batch_number = 0;; ++batch_number) {
    QLAB_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, loader->Next());
    if (!batch) break;
    const int64_t n = static_cast<int64_t>(batch->labels.size());
    QLAB_ASSIGN_OR_RETURN(const Tensor logits, runner(batch->images));
    if (logits.dtype() != DType::kFloat32 || logits.rank() != 2 || logits.dim(0) != n ||
        logits.dim(1) != classes) {
      return absl::InvalidArgumentError(absl::StrCat(options.label, ": batch ", batch_number,
                                                     " gave logits ", logits.DebugString(),
                                                     ", expected float32[", n, ",", classes, "]"));
    }
    for (int64_t i = 0; i < n; ++i) {
      const float* row = logits.data<float>() + i * classes;
      for (int c = 0; c < classes; ++c) {
        if (std::isnan(row[c])) {
          return absl::InvalidArgumentError(
              absl::StrCat(options.label, ": NaN logit for ", dataset.name(batch->indices[i])));
        }
      }
      const std::vector<int> top = TopK(row, classes, 5);
      const int label = batch->labels[i];
      const bool top1 = top[0] == label;
      result.top1_correct += top1;
      result.top5_correct += std::find(top.begin(), top.end(), label) != top.end();
      result.per_class_correct[label] += top1;
      result.per_class_total[label] += 1;
      result.predictions.push_back(top[0]);
      result.indices.push_back(batch->indices[i]);
    }
    result.images += n;
    if (progress) progress->Advance(n);
  }
  if (progress) progress->Finish();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.skipped = loader->report().skipped;
  return result;
}

nlohmann::json EvalResult::ToJson(const std::vector<std::string>& class_names) const {
  nlohmann::json per_class = nlohmann::json::object();
  for (size_t c = 0; c < per_class_total.size(); ++c) {
    const std::string name = c < class_names.size() ? class_names[c] : std::to_string(c);
    per_class[name] = per_class_total[c] == 0
                          ? nlohmann::json(nullptr)
                          : nlohmann::json(static_cast<double>(per_class_correct[c]) /
                                           static_cast<double>(per_class_total[c]));
  }
  return nlohmann::json{{"images", images},
                        {"top1", top1()},
                        {"top5", top5()},
                        {"top1_correct", top1_correct},
                        {"top5_correct", top5_correct},
                        {"per_class_top1", per_class},
                        {"skipped", skipped}};
}

absl::StatusOr<double> PredictionAgreement(const EvalResult& a, const EvalResult& b) {
  if (a.indices != b.indices) {
    return absl::InvalidArgumentError(
        absl::StrCat("prediction agreement needs the same images: ", a.indices.size(), " vs ",
                     b.indices.size(), " evaluated, or a different order"));
  }
  if (a.indices.empty()) return 1.0;
  int64_t same = 0;
  for (size_t i = 0; i < a.predictions.size(); ++i) same += a.predictions[i] == b.predictions[i];
  return static_cast<double>(same) / static_cast<double>(a.predictions.size());
}

}  // namespace qlab
