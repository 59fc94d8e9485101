// update_baselines: rerun every regression case and rewrite its checked-in baseline, on purpose.
//
//   bazel run //experiments:update_baselines -- --reason="why the numbers are expected to move"
//
// Each baseline records the reason, the command and the commit that produced it, next to the
// numbers; `git diff experiments/baselines` then shows exactly what moved. A reason is required.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "experiments/provenance.h"
#include "experiments/ptq.h"
#include "experiments/record_io.h"
#include "experiments/regression.h"

ABSL_FLAG(std::string, reason, "", "why the baselines change (required, recorded in each file)");

namespace qlab::experiments {
namespace {

absl::Status Main() {
  const std::string reason = absl::GetFlag(FLAGS_reason);
  if (reason.empty()) {
    return absl::InvalidArgumentError("--reason is required: say why the baselines change");
  }
  const std::string workspace = BazelRunWorkspace();
  if (workspace.empty()) {
    return absl::FailedPreconditionError(
        "run through `bazel run //experiments:update_baselines` so the baselines land in the "
        "workspace");
  }
  const Provenance provenance = CollectProvenance();
  for (const RegressionCase& c : RegressionCases()) {
    std::printf("running %s ...\n", c.name.c_str());
    std::fflush(stdout);
    QLAB_ASSIGN_OR_RETURN(const nlohmann::json record, RunPtq(c.config));
    nlohmann::json baseline = RegressionSummary(record);
    baseline["reason"] = reason;
    baseline["produced_by"] =
        absl::StrCat("bazel run //experiments:update_baselines -- --reason=\"", reason, "\"");
    baseline["git_commit"] = provenance.git_commit;
    baseline["git_dirty"] = provenance.git_dirty;
    baseline["highway_target"] = provenance.highway_target;
    const std::string path = absl::StrCat(workspace, "/experiments/baselines/", c.name, ".json");
    QLAB_RETURN_IF_ERROR(WriteJsonFile(path, baseline, /*overwrite=*/true));
    std::printf("  fp32 %.2f %%  fake-quant %.2f %%  -> %s\n",
                100 * baseline["fp32_top1"].get<double>(),
                100 * baseline["fake_quant_top1"].get<double>(), path.c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab::experiments

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (const absl::Status s = qlab::experiments::Main(); !s.ok()) {
    std::fprintf(stderr, "update_baselines: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
