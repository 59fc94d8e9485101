// Provenance: what every experiment record says about where its numbers came from.
//
// A record without provenance cannot be trusted or reproduced: it carries the git commit of the
// code (and whether the tree had uncommitted changes), the machine (CPU model, core count, the
// Highway target the kernels dispatched to) and the build mode. The workspace is found through
// Bazel's BUILD_WORKSPACE_DIRECTORY (set by `bazel run`) or an explicit path; without either,
// the commit is recorded as "unknown" rather than guessed.
#ifndef QLAB_EXPERIMENTS_PROVENANCE_H_
#define QLAB_EXPERIMENTS_PROVENANCE_H_

#include <string>

#include "nlohmann/json.hpp"

namespace qlab::experiments {

struct Provenance {
  std::string git_commit = "unknown";  // 40 hex characters when known
  bool git_dirty = false;              // uncommitted changes in tracked files
  std::string cpu_model = "unknown";   // /proc/cpuinfo "model name"
  int cpu_cores = 0;                   // online logical CPUs
  std::string highway_target;          // where qlab's kernels dispatch on this machine
  std::string build_mode;              // "opt" (NDEBUG) or "dbg"

  nlohmann::json ToJson() const;
};

// `workspace` empty: BUILD_WORKSPACE_DIRECTORY when set, else the current folder (a binary run
// from bazel-bin inside the workspace). Never fails: what cannot be read is "unknown".
Provenance CollectProvenance(const std::string& workspace = "");

// The workspace root a `bazel run` binary was started from, or "" outside `bazel run`.
std::string BazelRunWorkspace();

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_PROVENANCE_H_
