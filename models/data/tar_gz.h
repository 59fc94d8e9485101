// Reading .tar.gz archives: the shared CIFAR-10 training set ships as one (50,000 PNGs), and qlab
// either extracts it once into a cache folder or reads its images straight into memory.
//
// Only what such archives need is understood: ustar/GNU/pax headers, regular files and folders
// (pax and GNU long names honoured, global pax headers ignored); links and devices are skipped.
// Member paths that are absolute or contain ".." are refused, sizes are bounded before any
// allocation, and a truncated or corrupt stream is DataLoss naming the archive and member.
//
//   QLAB_RETURN_IF_ERROR(ExtractTarGz(archive, cache + "/cifar10-train-png"));   // once
//   QLAB_ASSIGN_OR_RETURN(auto train, OpenTarGzImageFolder(archive, "train/"));  // in memory
#ifndef QLAB_MODELS_DATA_TAR_GZ_H_
#define QLAB_MODELS_DATA_TAR_GZ_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/data/dataset.h"

namespace qlab::data {

// Largest archive member read (an image is kilobytes; this only stops a lying header).
inline constexpr int64_t kMaxTarMemberBytes = int64_t{1} << 30;

// Calls `visit(path, bytes)` for every regular file, in archive order; stops at the first error
// (its own or visit's).
absl::Status ForEachTarGzFile(
    const std::string& archive,
    const std::function<absl::Status(const std::string& path, std::string bytes)>& visit);

// Extracts the archive's folders and regular files below `dest_dir`, once: a marker file
// `dest_dir`/.qlab-extracted records the archive's size, and a later call with the same archive
// returns at once. Extraction goes to a sibling temporary folder renamed into place at the end,
// so an interrupted run never leaves a half-filled `dest_dir` that looks complete.
absl::Status ExtractTarGz(const std::string& archive, const std::string& dest_dir);

// An in-memory image folder from the archive members below `prefix` (e.g. "train/"):
// <prefix><class>/<file> with classes sorted and files sorted, as OpenImageFolder orders them.
// Sample names are "<archive>:<member path>".
absl::StatusOr<std::unique_ptr<Dataset>> OpenTarGzImageFolder(const std::string& archive,
                                                              const std::string& prefix);

}  // namespace qlab::data

#endif  // QLAB_MODELS_DATA_TAR_GZ_H_
