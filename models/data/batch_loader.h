// BatchLoader: a dataset, an order and a transform turned into NCHW float32 batches, decoded on a
// background thread that stays `prefetch_batches` ahead of the consumer.
//
// The order is explicit (0..n-1, a SeededSubset for calibration, a SeededPermutation per epoch),
// so runs are deterministic; random transforms get a per-sample key MixSeed(epoch, index), so a
// sample's augmentation does not depend on batch size or timing. A missing or undecodable image
// stops the loader with an error naming the file, or — with skip_bad_images — is left out, and
// the batch is filled from the next samples; report() lists what was skipped and why.
//
//   QLAB_ASSIGN_OR_RETURN(auto loader, BatchLoader::Create(*test_set, AllIndices(*test_set),
//                                                          CifarEvalTransform(), {.batch_size = 100}));
//   for (;;) {
//     QLAB_ASSIGN_OR_RETURN(std::optional<Batch> batch, loader->Next());
//     if (!batch) break;
//     Run(batch->images);  // float32[100,3,32,32] NCHW
//   }
#ifndef QLAB_MODELS_DATA_BATCH_LOADER_H_
#define QLAB_MODELS_DATA_BATCH_LOADER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/tensor.h"
#include "models/data/dataset.h"
#include "models/data/transforms.h"

namespace qlab::data {

struct Batch {
  Tensor images;                 // float32 [n, 3, H, W], NCHW
  std::vector<int> labels;       // n class indices
  std::vector<int64_t> indices;  // n dataset indices
};

struct LoaderOptions {
  int batch_size = 64;
  int prefetch_batches = 2;
  bool skip_bad_images = false;
  bool drop_last = false;  // drop a final batch smaller than batch_size
  uint64_t epoch = 0;      // mixed into random transforms' per-sample keys
};

struct LoadReport {
  int64_t loaded = 0;
  std::vector<std::string> skipped;  // "<name>: <reason>" per skipped sample, in order
};

// 0, 1, ..., dataset.size() - 1.
std::vector<int64_t> AllIndices(const Dataset& dataset);

class BatchLoader {
 public:
  // `dataset` and `transform` must outlive the loader. InvalidArgument for an index outside the
  // dataset or a non-positive batch size / prefetch depth (checked here, once).
  static absl::StatusOr<std::unique_ptr<BatchLoader>> Create(const Dataset& dataset,
                                                             std::vector<int64_t> order,
                                                             const Transform& transform,
                                                             LoaderOptions options = {});
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next batch; std::nullopt after the last one. An error is returned once, after which the
  // loader yields std::nullopt.
  absl::StatusOr<std::optional<Batch>> Next();

  // What has been loaded and skipped so far.
  LoadReport report() const;

 private:
  BatchLoader(const Dataset& dataset, std::vector<int64_t> order, const Transform& transform,
              LoaderOptions options);
  void Produce();
  // Decodes samples from cursor_ until a batch is full or the order ends; nullopt at the end.
  absl::StatusOr<std::optional<Batch>> BuildBatch();

  const Dataset& dataset_;
  const std::vector<int64_t> order_;
  const Transform& transform_;
  const LoaderOptions options_;
  size_t cursor_ = 0;  // producer thread only

  mutable absl::Mutex mu_;
  std::deque<absl::StatusOr<Batch>> queue_ ABSL_GUARDED_BY(mu_);
  bool producer_done_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  LoadReport report_ ABSL_GUARDED_BY(mu_);
  std::thread producer_;
};

}  // namespace qlab::data

#endif  // QLAB_MODELS_DATA_BATCH_LOADER_H_
