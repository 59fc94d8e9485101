// inspect_data: opens every standard dataset under the data root, prints sizes and per-class
// counts, and times one pass of the batch loader over a seeded subset, so a user can check a data
// folder before an evaluation. The first run extracts the CIFAR-10 training archive into
// <workspace>/.cache (later runs reuse it).
//
//   bazel run //models/data:inspect_data -- --data_root=/path/to/data --subset=2000
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "core/status_macros.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/random.h"
#include "models/data/transforms.h"

ABSL_FLAG(int, subset, 1000, "images per dataset to push through the batch loader");
ABSL_FLAG(uint64_t, seed, 1, "seed of the subset");

namespace qlab::data {
namespace {

void PrintCounts(const char* what, const Dataset& ds) {
  std::map<int, int> per_class;
  for (int64_t i = 0; i < ds.size(); ++i) ++per_class[ds.label(i)];
  std::printf("%s: %lld images, %zu of %zu classes present (first: %s)\n", what,
              static_cast<long long>(ds.size()), per_class.size(), ds.class_names().size(),
              ds.size() > 0 ? ds.name(0).c_str() : "-");
}

absl::Status TimeLoader(const char* what, const Dataset& ds, const Transform& transform) {
  const int64_t k = std::min<int64_t>(absl::GetFlag(FLAGS_subset), ds.size());
  const auto start = std::chrono::steady_clock::now();
  QLAB_ASSIGN_OR_RETURN(
      std::unique_ptr<BatchLoader> loader,
      BatchLoader::Create(ds, SeededSubset(ds.size(), k, absl::GetFlag(FLAGS_seed)), transform,
                          {.batch_size = 50, .skip_bad_images = true}));
  for (;;) {
    QLAB_ASSIGN_OR_RETURN(std::optional<Batch> batch, loader->Next());
    if (!batch) break;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const LoadReport report = loader->report();
  std::printf("  %s: %lld loaded, %zu skipped, %.0f images/s\n", what,
              static_cast<long long>(report.loaded), report.skipped.size(),
              report.loaded / seconds);
  for (const std::string& s : report.skipped) std::printf("    skipped %s\n", s.c_str());
  return absl::OkStatus();
}

absl::Status Run() {
  QLAB_ASSIGN_OR_RETURN(const std::string root, ResolveDataRoot(absl::GetFlag(FLAGS_data_root)));
  QLAB_ASSIGN_OR_RETURN(const std::string cache, CacheDir());
  std::printf("data root %s, cache %s\n", root.c_str(), cache.c_str());
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> cifar_test, OpenCifar10Test(root));
  PrintCounts("CIFAR-10 test", *cifar_test);
  QLAB_RETURN_IF_ERROR(TimeLoader("CIFAR eval transform", *cifar_test, CifarEvalTransform()));
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> cifar_train, OpenCifar10Train(root, cache));
  PrintCounts("CIFAR-10 train", *cifar_train);
  QLAB_RETURN_IF_ERROR(
      TimeLoader("CIFAR train augmentation", *cifar_train, CifarTrainTransform(/*seed=*/0)));
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> imagenet, OpenImageNetVal1300(root));
  PrintCounts("ImageNet val subset", *imagenet);
  return TimeLoader("ImageNet eval transform", *imagenet, ImageNetEvalTransform());
}

}  // namespace
}  // namespace qlab::data

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = qlab::data::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "inspect_data: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
