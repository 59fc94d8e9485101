// report.html of one training or QAT run: what was run, the accuracies, and the training curves
// (loss and training accuracy per logged step, test accuracy per epoch) as inline SVG charts, so a
// run's folder can be read in a browser without Python or plotting tools.
#ifndef QLAB_EXPERIMENTS_TRAINING_REPORT_H_
#define QLAB_EXPERIMENTS_TRAINING_REPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {

// `record` as RunQat or RunTrain return it; `log_csv` the run's log.csv text (its rows with a
// loss give the step curve). InvalidArgument naming the problem for a log that is not the
// training log's CSV. The same inputs give the same bytes.
absl::StatusOr<std::string> RenderTrainingReport(const nlohmann::json& record,
                                                 const std::string& log_csv);

// <run_dir>/report.html from `record` and <run_dir>/log.csv; an existing report is never
// replaced (AlreadyExists).
absl::Status WriteTrainingReport(const std::string& run_dir, const nlohmann::json& record);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_TRAINING_REPORT_H_
