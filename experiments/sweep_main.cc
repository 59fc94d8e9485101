// sweep: a grid of PTQ runs from a JSON config, with report.html.
//
//   bazel run //experiments:sweep -- --config=experiments/configs/cifar_quick.json
//   bazel run //experiments:sweep -- --config=experiments/configs/cifar_calibrators.json
//       --calib_repeats=3 --eval_images=2000   (one line)
//   bazel run //experiments:sweep -- --config=... --out=results/sweeps/mine --resume
//
// Writes every record, summary.csv and report.html into a new results/sweeps/<config>-<N>/
// (or --out). The config format is in experiments/sweep.h and experiments/README.md; flags given
// here override the config's common settings for this run only.
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "core/interrupt.h"
#include "core/status_macros.h"
#include "experiments/provenance.h"
#include "experiments/record_io.h"
#include "experiments/sweep.h"

ABSL_FLAG(std::string, config, "", "sweep config (JSON), e.g. experiments/configs/cifar_quick.json");
ABSL_FLAG(std::string, out, "",
          "output folder (relative paths are under the workspace); default: a new "
          "results/sweeps/<config name>-<N>");
ABSL_FLAG(bool, resume, false,
          "continue an interrupted sweep in --out: existing records are read, not rerun");
ABSL_FLAG(int, calib_repeats, 0,
          "calibration seeds per configuration (mean +- std in the report); 0: the config's");
ABSL_FLAG(int64_t, eval_images, -1, "override the config's eval_images (0: all); -1: the config's");
ABSL_FLAG(int, timing_runs, -1, "override the config's timing_runs; -1: the config's");
ABSL_FLAG(std::string, cache_dir, "",
          "where the training archive is extracted once; empty: <workspace>/.cache");

namespace qlab::experiments {
namespace {

std::string NewOutDir(const std::string& name) {
  return NewNumberedDir(absl::StrCat("results/sweeps/", name, "-"));
}

absl::Status Main(int argc, char** argv) {
  const std::string config_flag = absl::GetFlag(FLAGS_config);
  if (config_flag.empty()) {
    return absl::InvalidArgumentError("--config is required (see experiments/configs/)");
  }
  const std::string config_path = UnderWorkspace(config_flag);
  QLAB_ASSIGN_OR_RETURN(const nlohmann::json value, ReadJsonFile(config_path));
  const std::string name = std::filesystem::path(config_path).stem().string();
  QLAB_ASSIGN_OR_RETURN(SweepConfig sweep, SweepConfigFromJson(value, name, config_path));
  if (absl::GetFlag(FLAGS_calib_repeats) > 0) sweep.calib_repeats = absl::GetFlag(FLAGS_calib_repeats);
  if (absl::GetFlag(FLAGS_eval_images) >= 0) sweep.common.eval_images = absl::GetFlag(FLAGS_eval_images);
  if (absl::GetFlag(FLAGS_timing_runs) >= 0) sweep.common.timing_runs = absl::GetFlag(FLAGS_timing_runs);
  if (!absl::GetFlag(FLAGS_cache_dir).empty()) {
    sweep.common.cache_dir = absl::GetFlag(FLAGS_cache_dir);
  }
  if (absl::GetFlag(FLAGS_resume) && absl::GetFlag(FLAGS_out).empty()) {
    return absl::InvalidArgumentError("--resume needs the --out folder of the interrupted sweep");
  }
  const std::string out = absl::GetFlag(FLAGS_out).empty() ? NewOutDir(name)
                                                           : UnderWorkspace(absl::GetFlag(FLAGS_out));
  std::string command = "bazel run //experiments:sweep --";
  for (int i = 1; i < argc; ++i) absl::StrAppend(&command, " ", argv[i]);
  SweepOptions options;
  options.command = command;
  options.resume = absl::GetFlag(FLAGS_resume);
  std::fprintf(stderr, "sweep %s: %zu runs -> %s\n", name.c_str(), ExpandGrid(sweep).size(),
               out.c_str());
  QLAB_ASSIGN_OR_RETURN(const SweepOutput result, RunSweep(sweep, out, options));
  std::printf("%zu records, %s, %s\n", result.records.size(), result.summary_csv.c_str(),
              result.report_html.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab::experiments

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // Ctrl-C ends the run at once but never inside a results write (core/interrupt.h): what it
  // completed stays whole, and --resume continues from there.
  qlab::InstallInterruptHandler();
  if (const absl::Status s = qlab::experiments::Main(argc, argv); !s.ok()) {
    std::fprintf(stderr, "sweep: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
