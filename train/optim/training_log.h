// TrainingLog: the CSV file a qlab training run appends one row to per logged step, for plots
// and for comparing runs.
//
//   step,epoch,loss,lr,train_accuracy,test_accuracy,images_per_second
//   100,0,2.01537681,0.0999999642,0.25390625,,1843.21997
//   391,1,1.52311945,0.0999384224,0.443359375,0.5124,1850.5
//
// A value not measured at that row (test accuracy between evaluations) is an empty cell. Floats
// are printed with %.9g, which round-trips every float32. Each row is flushed as it is written,
// so a crashed run keeps everything it logged.
//
// A new run creates the file and refuses an existing one (AlreadyExists: nothing a user had is
// lost); a resumed run reopens it to append after checking that it is a log of this kind.
//
//   QLAB_ASSIGN_OR_RETURN(TrainingLog log, resuming ? TrainingLog::OpenForResume(path)
//                                                   : TrainingLog::Create(path));
//   TrainingLogRow row;
//   row.step = step;
//   row.epoch = epoch;
//   row.loss = loss;
//   row.lr = sgd.lr();
//   QLAB_RETURN_IF_ERROR(log.Append(row));
#ifndef QLAB_TRAIN_OPTIM_TRAINING_LOG_H_
#define QLAB_TRAIN_OPTIM_TRAINING_LOG_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qlab::train {

inline constexpr char kTrainingLogHeader[] =
    "step,epoch,loss,lr,train_accuracy,test_accuracy,images_per_second";

struct TrainingLogRow {
  int64_t step = 0;
  int64_t epoch = 0;
  std::optional<float> loss;
  std::optional<float> lr;
  std::optional<float> train_accuracy;  // fraction in [0, 1]
  std::optional<float> test_accuracy;   // fraction in [0, 1]
  std::optional<float> images_per_second;
};

// The row as one CSV line, without the newline.
std::string FormatTrainingLogRow(const TrainingLogRow& row);

class TrainingLog {
 public:
  // A new log at `path` holding only the header (flushed). AlreadyExists naming `path` when a
  // file is there; the system's error (naming `path`) when it cannot be created.
  static absl::StatusOr<TrainingLog> Create(const std::string& path);
  // An existing log, to append to. NotFound naming `path` when it does not exist;
  // InvalidArgument naming `path` and the line found when its first line is not
  // kTrainingLogHeader; DataLoss when its last row has no line end (cut off mid-write: append
  // after it would merge two rows, so the file must be repaired by hand first).
  static absl::StatusOr<TrainingLog> OpenForResume(const std::string& path);

  // Writes `row` and flushes it to the operating system. Internal naming `path` on a write error.
  absl::Status Append(const TrainingLogRow& row);

  const std::string& path() const { return path_; }

 private:
  struct FileCloser {
    void operator()(std::FILE* file) const { std::fclose(file); }
  };
  TrainingLog(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}

  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> file_;
};

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPTIM_TRAINING_LOG_H_
