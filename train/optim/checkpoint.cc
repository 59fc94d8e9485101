// Training checkpoints (train/optim/checkpoint.h): TrainingState to and from a safetensors file,
// and finding the newest checkpoint of a run.
#include "train/optim/checkpoint.h"

#include <dirent.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "models/safetensors.h"
#include "nlohmann/json.hpp"

namespace qlab::train {
namespace {

constexpr char kFormatKey[] = "format";
constexpr char kFormatVersionKey[] = "format_version";
constexpr char kEpochKey[] = "epoch";
constexpr char kStepKey[] = "global_step";
constexpr char kSeedKey[] = "seed";
constexpr char kConfigKey[] = "config";

constexpr char kOptimizerPrefix[] = "optimizer.";
constexpr char kFilePrefix[] = "checkpoint-epoch-";
constexpr char kFileSuffix[] = ".safetensors";

// `status` with "checkpoint <path>: " in front, unless its message already names the file.
absl::Status InFile(const absl::Status& status, const std::string& path) {
  if (status.ok() || absl::StrContains(status.message(), path)) return status;
  return absl::Status(status.code(), absl::StrCat("checkpoint ", path, ": ", status.message()));
}

absl::Status BadMetadata(const std::string& path, absl::string_view key, absl::string_view value,
                         absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": metadata \"", key,
                                                 "\" = \"", value, "\", expected ", expected));
}

absl::StatusOr<std::string> RequiredMetadata(const std::map<std::string, std::string>& metadata,
                                             const std::string& path, absl::string_view key) {
  const auto it = metadata.find(std::string(key));
  if (it == metadata.end()) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": metadata key \"", key,
                                                   "\" is missing (not a qlab training "
                                                   "checkpoint, or a damaged one)"));
  }
  return it->second;
}

// Decimal integers exactly as StrCat prints them: no sign on positives, no spaces, no leading
// zeros, so that one value has one spelling.
template <typename Int>
bool ParseCanonical(absl::string_view text, Int* value) {
  return absl::SimpleAtoi(text, value) && absl::StrCat(*value) == text;
}

absl::StatusOr<int64_t> NonNegativeMetadata(const std::map<std::string, std::string>& metadata,
                                            const std::string& path, absl::string_view key) {
  QLAB_ASSIGN_OR_RETURN(const std::string text, RequiredMetadata(metadata, path, key));
  int64_t value = 0;
  if (!ParseCanonical(text, &value) || value < 0) {
    return BadMetadata(path, key, text, "a non-negative decimal integer");
  }
  return value;
}

bool IsJsonOrEmpty(const std::string& text) { return text.empty() || nlohmann::json::accept(text); }

}  // namespace

absl::Status SaveCheckpoint(const std::string& path, const TrainingState& state) {
  if (state.epoch < 0 || state.step < 0) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": epoch ", state.epoch,
                                                   " and step ", state.step,
                                                   " must be non-negative"));
  }
  if (!IsJsonOrEmpty(state.config_json)) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", path,
                     ": config_json is not valid JSON: ", state.config_json.substr(0, 200)));
  }
  SafetensorsFile file;
  for (const auto& [name, tensor] : state.model) {
    if (absl::StartsWith(name, kOptimizerPrefix)) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": model key \"", name,
                                                     "\" starts with \"", kOptimizerPrefix,
                                                     "\", which is reserved for the optimizer"));
    }
    absl::StatusOr<SafetensorsTensor> stored = FromTensor(name, tensor);
    if (!stored.ok()) return InFile(stored.status(), path);
    file.tensors.push_back(*std::move(stored));
  }
  for (const auto& [name, buffer] : state.momentum) {
    SafetensorsTensor t;
    t.name = absl::StrCat(kMomentumPrefix, name);
    t.dtype = SafetensorsDType::kF32;
    t.shape = {static_cast<int64_t>(buffer.size())};
    t.bytes.assign(reinterpret_cast<const char*>(buffer.data()), buffer.size() * sizeof(float));
    file.tensors.push_back(std::move(t));
  }
  file.metadata = {
      {kFormatKey, kCheckpointFormat},
      {kFormatVersionKey, absl::StrCat(kCheckpointFormatVersion)},
      {kEpochKey, absl::StrCat(state.epoch)},
      {kStepKey, absl::StrCat(state.step)},
      {kSeedKey, absl::StrCat(state.seed)},
      {kConfigKey, state.config_json},
  };
  // WriteSafetensors without overwrite: mkstemp beside `path`, then link(), which refuses an
  // existing destination (checkpoint.h).
  return InFile(WriteSafetensors(path, file, WriteOptions{/*overwrite=*/false}), path);
}

absl::StatusOr<TrainingState> LoadCheckpoint(const std::string& path) {
  absl::StatusOr<SafetensorsFile> read = ReadSafetensors(path);
  if (!read.ok()) return InFile(read.status(), path);
  SafetensorsFile file = *std::move(read);
  const std::map<std::string, std::string>& metadata = file.metadata;

  QLAB_ASSIGN_OR_RETURN(const std::string format, RequiredMetadata(metadata, path, kFormatKey));
  if (format != kCheckpointFormat) {
    return BadMetadata(path, kFormatKey, format, absl::StrCat("\"", kCheckpointFormat, "\""));
  }
  QLAB_ASSIGN_OR_RETURN(const std::string version,
                        RequiredMetadata(metadata, path, kFormatVersionKey));
  if (version != absl::StrCat(kCheckpointFormatVersion)) {
    return BadMetadata(
        path, kFormatVersionKey, version,
        absl::StrCat("\"", kCheckpointFormatVersion, "\" (the only version this build reads)"));
  }
  TrainingState state;
  QLAB_ASSIGN_OR_RETURN(state.epoch, NonNegativeMetadata(metadata, path, kEpochKey));
  QLAB_ASSIGN_OR_RETURN(state.step, NonNegativeMetadata(metadata, path, kStepKey));
  QLAB_ASSIGN_OR_RETURN(const std::string seed, RequiredMetadata(metadata, path, kSeedKey));
  if (!ParseCanonical(seed, &state.seed)) {
    return BadMetadata(path, kSeedKey, seed, "an unsigned decimal integer");
  }
  QLAB_ASSIGN_OR_RETURN(state.config_json, RequiredMetadata(metadata, path, kConfigKey));
  if (!IsJsonOrEmpty(state.config_json)) {
    return BadMetadata(path, kConfigKey, state.config_json.substr(0, 200), "JSON text or empty");
  }

  for (SafetensorsTensor& stored : file.tensors) {
    if (absl::StartsWith(stored.name, kMomentumPrefix)) {
      if (stored.dtype != SafetensorsDType::kF32 || stored.shape.size() != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("checkpoint ", path, ": momentum tensor \"", stored.name, "\" is ",
                         SafetensorsDTypeName(stored.dtype), " of rank ", stored.shape.size(),
                         ", expected 1-D F32"));
      }
      // The container checked bytes == numel × 4 when reading.
      std::vector<float> buffer(static_cast<size_t>(stored.shape[0]));
      if (!buffer.empty()) std::memcpy(buffer.data(), stored.bytes.data(), stored.bytes.size());
      state.momentum.emplace(stored.name.substr(std::strlen(kMomentumPrefix)), std::move(buffer));
    } else if (absl::StartsWith(stored.name, kOptimizerPrefix)) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint ", path, ": unknown optimizer tensor \"", stored.name, "\""));
    } else {
      absl::StatusOr<Tensor> tensor = ToTensor(stored);
      if (!tensor.ok()) return InFile(tensor.status(), path);
      state.model.emplace(stored.name, *std::move(tensor));
    }
    stored.bytes = std::string();  // keeps peak memory near one copy of the state
  }
  return state;
}

std::map<std::string, Tensor> ModelStateDict(const std::map<std::string, Tensor>& weights) {
  std::map<std::string, Tensor> model;
  for (const auto& [name, tensor] : weights) {
    if (!absl::StartsWith(name, kOptimizerPrefix)) model.emplace(name, tensor);
  }
  return model;
}

std::string CheckpointFileName(int64_t epoch) {
  return absl::StrCat(kFilePrefix, epoch, kFileSuffix);
}

absl::StatusOr<std::string> LatestCheckpoint(const std::string& dir) {
  DIR* listing = ::opendir(dir.c_str());
  if (listing == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot read checkpoint folder ", dir, ": ", std::strerror(errno)));
  }
  int64_t best_epoch = -1;
  std::string best_name;
  while (const dirent* entry = ::readdir(listing)) {
    absl::string_view name = entry->d_name;
    if (!absl::ConsumePrefix(&name, kFilePrefix) || !absl::ConsumeSuffix(&name, kFileSuffix)) {
      continue;
    }
    int64_t epoch = 0;
    if (ParseCanonical(name, &epoch) && epoch >= 0 && epoch > best_epoch) {
      best_epoch = epoch;
      best_name = entry->d_name;
    }
  }
  ::closedir(listing);
  if (best_epoch < 0) {
    return absl::NotFoundError(absl::StrCat("no ", kFilePrefix, "<N>", kFileSuffix, " in ", dir));
  }
  return absl::StrCat(dir, "/", best_name);
}

}  // namespace qlab::train
