// TrainingLog (train/optim/training_log.h): creating, validating and appending to the CSV log.
#include "train/optim/training_log.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/interrupt.h"

namespace qlab::train {
namespace {

// An empty cell for a value not measured, else %.9g (enough digits to round-trip a float32).
std::string Cell(const std::optional<float>& value) {
  return value.has_value() ? absl::StrFormat("%.9g", static_cast<double>(*value)) : std::string();
}

absl::Status OpenError(const std::string& path, int error_number, absl::string_view action) {
  return absl::ErrnoToStatus(error_number,
                             absl::StrCat("training log ", path, ": cannot ", action));
}

}  // namespace

std::string FormatTrainingLogRow(const TrainingLogRow& row) {
  return absl::StrCat(row.step, ",", row.epoch, ",", Cell(row.loss), ",", Cell(row.lr), ",",
                      Cell(row.train_accuracy), ",", Cell(row.test_accuracy), ",",
                      Cell(row.images_per_second));
}

absl::StatusOr<TrainingLog> TrainingLog::Create(const std::string& path) {
  // "x": O_EXCL, so an existing file is refused by the open itself, with no window for a race.
  std::FILE* file = std::fopen(path.c_str(), "wbx");
  if (file == nullptr) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat("training log ", path,
                       " exists: a new run does not overwrite it (resume, or choose "
                       "another output folder)"));
    }
    return OpenError(path, errno, "create it");
  }
  TrainingLog log(path, file);
  if (std::fprintf(file, "%s\n", kTrainingLogHeader) < 0 || std::fflush(file) != 0) {
    return OpenError(path, errno, "write its header");
  }
  return log;
}

absl::StatusOr<TrainingLog> TrainingLog::OpenForResume(const std::string& path) {
  {
    std::ifstream existing(path, std::ios::binary);
    if (!existing) {
      return absl::NotFoundError(
          absl::StrCat("training log ", path, " to resume does not exist or cannot be read"));
    }
    std::string header;
    std::getline(existing, header);
    if (header != kTrainingLogHeader) {
      return absl::InvalidArgumentError(absl::StrCat("training log ", path, ": first line \"",
                                                     header.substr(0, 200), "\" is not \"",
                                                     kTrainingLogHeader, "\""));
    }
    existing.clear();
    existing.seekg(-1, std::ios::end);
    char last = '\0';
    if (!existing.get(last) || last != '\n') {
      return absl::DataLossError(
          absl::StrCat("training log ", path,
                       ": the last row has no line end (cut off while being written); "
                       "repair or remove that row before resuming"));
    }
  }
  std::FILE* file = std::fopen(path.c_str(), "ab");
  if (file == nullptr) return OpenError(path, errno, "open it for appending");
  return TrainingLog(path, file);
}

absl::Status TrainingLog::Append(const TrainingLogRow& row) {
  const std::string line = absl::StrCat(FormatTrainingLogRow(row), "\n");
  const CriticalWrite critical;  // Ctrl-C never cuts a row
  if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() ||
      std::fflush(file_.get()) != 0) {
    return absl::InternalError(
        absl::StrCat("training log ", path_, ": writing a row failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace qlab::train
