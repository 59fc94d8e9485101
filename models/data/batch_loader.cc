// The single-producer prefetching loader of models/data/batch_loader.h. One background thread
// decodes and transforms; the consumer thread runs the model. With 2 cores that overlaps the two
// without oversubscribing the machine.
#include "models/data/batch_loader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "models/data/random.h"

namespace qlab::data {

std::vector<int64_t> AllIndices(const Dataset& dataset) {
  std::vector<int64_t> order(static_cast<size_t>(dataset.size()));
  for (int64_t i = 0; i < dataset.size(); ++i) order[i] = i;
  return order;
}

absl::StatusOr<std::unique_ptr<BatchLoader>> BatchLoader::Create(const Dataset& dataset,
                                                                 std::vector<int64_t> order,
                                                                 const Transform& transform,
                                                                 LoaderOptions options) {
  if (options.batch_size <= 0 || options.prefetch_batches <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size ", options.batch_size,
                                                   " and prefetch_batches ",
                                                   options.prefetch_batches, " must be positive"));
  }
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] < 0 || order[i] >= dataset.size()) {
      return absl::InvalidArgumentError(absl::StrCat("order[", i, "] = ", order[i],
                                                     " outside a dataset of ", dataset.size()));
    }
  }
  // Validates the batch shape once so that the producer's allocations cannot fail on shape.
  QLAB_RETURN_IF_ERROR(Tensor::Create(DType::kFloat32,
                                      {0, 3, transform.out_height(), transform.out_width()},
                                      Layout::kNCHW)
                           .status());
  std::unique_ptr<BatchLoader> loader(
      new BatchLoader(dataset, std::move(order), transform, options));
  loader->producer_ = std::thread([raw = loader.get()] { raw->Produce(); });
  return loader;
}

BatchLoader::BatchLoader(const Dataset& dataset, std::vector<int64_t> order,
                         const Transform& transform, LoaderOptions options)
    : dataset_(dataset), order_(std::move(order)), transform_(transform), options_(options) {}

BatchLoader::~BatchLoader() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (producer_.joinable()) producer_.join();
}

absl::StatusOr<std::optional<Batch>> BatchLoader::BuildBatch() {
  const int64_t height = transform_.out_height(), width = transform_.out_width();
  const int64_t sample_floats = 3 * height * width;
  QLAB_ASSIGN_OR_RETURN(Tensor images,
                        Tensor::Create(DType::kFloat32, {options_.batch_size, 3, height, width},
                                       Layout::kNCHW));
  Batch batch;
  while (cursor_ < order_.size() && static_cast<int>(batch.labels.size()) < options_.batch_size) {
    const int64_t index = order_[cursor_++];
    float* out = images.data<float>() + batch.labels.size() * sample_floats;
    absl::Status status;
    absl::StatusOr<Image> image = dataset_.Load(index);
    if (image.ok()) {
      status = transform_.Apply(*image, MixSeed(options_.epoch, static_cast<uint64_t>(index)), out);
      if (!status.ok()) {
        status = absl::Status(status.code(),
                              absl::StrCat(dataset_.name(index), ": ", status.message()));
      }
    } else {
      status = image.status();  // already names the file
    }
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      if (!options_.skip_bad_images) return status;
      report_.skipped.push_back(absl::StrCat(dataset_.name(index), ": ", status.message()));
      continue;
    }
    ++report_.loaded;
    batch.labels.push_back(dataset_.label(index));
    batch.indices.push_back(index);
  }
  const int64_t n = static_cast<int64_t>(batch.labels.size());
  if (n == 0 || (options_.drop_last && n < options_.batch_size)) return std::nullopt;
  QLAB_ASSIGN_OR_RETURN(batch.images, images.Slice(0, n));
  return batch;
}

void BatchLoader::Produce() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || static_cast<int>(queue_.size()) < options_.prefetch_batches;
      };
      mu_.Await(absl::Condition(&has_room));
      if (stop_) break;
    }
    absl::StatusOr<std::optional<Batch>> batch = BuildBatch();
    absl::MutexLock lock(&mu_);
    if (!batch.ok()) {
      queue_.push_back(batch.status());
      break;
    }
    if (!batch->has_value()) break;
    queue_.push_back(std::move(**batch));
  }
  absl::MutexLock lock(&mu_);
  producer_done_ = true;
}

absl::StatusOr<std::optional<Batch>> BatchLoader::Next() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || producer_done_;
  };
  mu_.Await(absl::Condition(&ready));
  if (failed_ || queue_.empty()) return std::nullopt;
  absl::StatusOr<Batch> front = std::move(queue_.front());
  queue_.pop_front();
  if (!front.ok()) {
    failed_ = true;
    return front.status();
  }
  return std::optional<Batch>(std::move(*front));
}

LoadReport BatchLoader::report() const {
  absl::MutexLock lock(&mu_);
  return report_;
}

}  // namespace qlab::data
