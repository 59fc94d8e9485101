// Data-root resolution and the standard dataset openers of models/data/data_root.h. Error
// messages are the user's only guide when data is missing, so each says what to fetch and where.
#include "models/data/data_root.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "models/data/tar_gz.h"

ABSL_FLAG(std::string, data_root, "",
          "folder laid out like ../shared/data (cifar10-test-png/, cifar10-train-png/, "
          "imagenet-val1300/, imagenet-meta/, optionally cifar-10-batches-bin/); empty: "
          "<workspace>/../shared/data");

namespace qlab::data {
namespace {

namespace fs = std::filesystem;

bool Exists(const fs::path& path) {
  std::error_code error;
  return fs::exists(path, error);
}

constexpr char kCifarDownload[] =
    "download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and extract it there "
    "(giving cifar-10-batches-bin/data_batch_1.bin ... test_batch.bin), or copy the shared "
    "cifar10-test-png/ and cifar10-train-png/ folders (see ../shared/data/README.md)";

}  // namespace

absl::StatusOr<std::string> FindWorkspaceRoot() {
  // Bazel's own statement of the workspace under `bazel run`: locating, not configuring.
  if (const char* dir = std::getenv("BUILD_WORKSPACE_DIRECTORY"); dir != nullptr && *dir) {
    return std::string(dir);
  }
  std::error_code error;
  // In runfiles, models/data/BUILD is a symlink to the source file in the workspace.
  const fs::path runfile = fs::canonical("models/data/BUILD", error);
  if (!error) return runfile.parent_path().parent_path().parent_path().string();
  for (fs::path dir = fs::current_path(error); !error && !dir.empty();
       dir = dir.parent_path()) {
    if (Exists(dir / "WORKSPACE")) return dir.string();
    if (dir == dir.root_path()) break;
  }
  return absl::NotFoundError(
      "cannot find the qlab workspace (no BUILD_WORKSPACE_DIRECTORY, no models/data/BUILD "
      "runfile, no WORKSPACE above the current folder): pass --data_root");
}

absl::StatusOr<std::string> ResolveDataRoot(const std::string& flag_value) {
  std::string root = flag_value;
  if (root.empty()) {
    QLAB_ASSIGN_OR_RETURN(std::string workspace, FindWorkspaceRoot());
    std::error_code error;
    const fs::path shared = fs::weakly_canonical(fs::path(workspace) / ".." / "shared" / "data",
                                                 error);
    root = error ? workspace + "/../shared/data" : shared.string();
  }
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    return absl::NotFoundError(absl::StrCat(
        "data root ", root, " does not exist. Create it (or pass --data_root=<folder>) with: "
        "cifar10-test-png/ and cifar10-train-png/ (CIFAR-10; or cifar-10-batches-bin/ from ",
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz), imagenet-val1300/ and "
        "imagenet-meta/ (ILSVRC2012 validation images with val.txt and synset_words.txt) — "
        "../shared/data/README.md describes each folder"));
  }
  return root;
}

absl::StatusOr<std::string> CacheDir() {
  QLAB_ASSIGN_OR_RETURN(std::string workspace, FindWorkspaceRoot());
  return workspace + "/.cache";
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10Test(const std::string& root) {
  const fs::path png = fs::path(root) / "cifar10-test-png";
  if (Exists(png / "labels.csv")) return OpenCifar10TestPng(png.string());
  const fs::path bin = fs::path(root) / "cifar-10-batches-bin";
  if (Exists(bin / "test_batch.bin")) return OpenCifar10BinaryDir(bin.string(), Split::kTest);
  return absl::NotFoundError(absl::StrCat("no CIFAR-10 test set in ", root, " (looked for ",
                                          png.string(), "/labels.csv and ", bin.string(),
                                          "/test_batch.bin): ", kCifarDownload));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10Train(const std::string& root,
                                                          const std::string& cache_dir) {
  const fs::path bin = fs::path(root) / "cifar-10-batches-bin";
  if (Exists(bin / "data_batch_1.bin")) return OpenCifar10BinaryDir(bin.string(), Split::kTrain);
  const fs::path archive = fs::path(root) / "cifar10-train-png" / "cifar10-train-png.tar.gz";
  if (Exists(archive)) {
    const std::string extracted = cache_dir + "/cifar10-train-png";
    QLAB_RETURN_IF_ERROR(ExtractTarGz(archive.string(), extracted));
    return OpenImageFolder(extracted + "/train");
  }
  return absl::NotFoundError(absl::StrCat("no CIFAR-10 training set in ", root, " (looked for ",
                                          bin.string(), "/data_batch_1.bin and ",
                                          archive.string(), "): ", kCifarDownload));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenImageNetVal1300(const std::string& root) {
  const fs::path dir = fs::path(root) / "imagenet-val1300";
  if (!Exists(dir / "dataset.txt")) {
    return absl::NotFoundError(absl::StrCat(
        "no ImageNet validation subset at ", dir.string(),
        ": copy ../shared/data/imagenet-val1300 (images/ + dataset.txt + synset_words.txt), or "
        "for the full set put ILSVRC2012_val_*.JPEG in a folder and use OpenImageNetVal with "
        "imagenet-meta/val.txt"));
  }
  return OpenImageNetVal((dir / "images").string(), (dir / "dataset.txt").string(),
                         (dir / "synset_words.txt").string());
}

}  // namespace qlab::data
