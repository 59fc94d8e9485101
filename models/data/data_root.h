// Where qlab's data lives, and the standard datasets found there.
//
// The data root is a folder laid out like ../shared/data (see its README.md): cifar10-test-png/,
// cifar10-train-png/, imagenet-val1300/, imagenet-meta/, and optionally cifar-10-batches-bin/ (the
// official CIFAR-10 binary distribution). It is chosen by the --data_root flag and defaults to
// `<workspace>/../shared/data`. When a dataset is missing, the error says what to download and
// where to put it. Derived files (the extracted training archive) go to `<workspace>/.cache/`,
// which git ignores.
//
//   QLAB_ASSIGN_OR_RETURN(std::string root, ResolveDataRoot(absl::GetFlag(FLAGS_data_root)));
//   QLAB_ASSIGN_OR_RETURN(auto test_set, OpenCifar10Test(root));
//   QLAB_ASSIGN_OR_RETURN(auto train_set, OpenCifar10Train(root, CacheDir()));
#ifndef QLAB_MODELS_DATA_DATA_ROOT_H_
#define QLAB_MODELS_DATA_DATA_ROOT_H_

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "models/data/dataset.h"

// --data_root: the data folder; empty means <workspace>/../shared/data.
ABSL_DECLARE_FLAG(std::string, data_root);

namespace qlab::data {

// The workspace (the folder holding WORKSPACE), found without configuration: `bazel run` states it
// in BUILD_WORKSPACE_DIRECTORY; a test or binary in its runfiles finds it through the
// models/data/BUILD runfile symlink (data = ["//models/data:BUILD"]); otherwise the nearest
// WORKSPACE at or above the current directory. NotFound when none applies.
absl::StatusOr<std::string> FindWorkspaceRoot();

// `flag_value` if non-empty, else <workspace>/../shared/data. NotFound (saying what the folder
// should contain and pointing at --data_root) when it is not a folder.
absl::StatusOr<std::string> ResolveDataRoot(const std::string& flag_value);

// <workspace>/.cache (created on demand by the functions that write there).
absl::StatusOr<std::string> CacheDir();

// CIFAR-10 test set: <root>/cifar10-test-png (labels.csv order) if present, else the official
// binary <root>/cifar-10-batches-bin/test_batch.bin. NotFound with download instructions.
absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10Test(const std::string& root);

// CIFAR-10 training set: <root>/cifar-10-batches-bin/data_batch_{1..5}.bin if present, else the
// shared <root>/cifar10-train-png/cifar10-train-png.tar.gz extracted once into
// <cache_dir>/cifar10-train-png and read as an image folder. NotFound with download instructions.
absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10Train(const std::string& root,
                                                          const std::string& cache_dir);

// The shared 1,300 ILSVRC2012 validation images (<root>/imagenet-val1300, dataset.txt labels).
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageNetVal1300(const std::string& root);

}  // namespace qlab::data

#endif  // QLAB_MODELS_DATA_DATA_ROOT_H_
