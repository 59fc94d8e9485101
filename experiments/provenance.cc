// CollectProvenance (experiments/provenance.h).
#include "experiments/provenance.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/quantize/quantize.h"

namespace qlab::experiments {
namespace {

// Runs a shell command with no input and returns its stdout, or "" when it fails.
std::string CommandOutput(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), &pclose);
  if (pipe == nullptr) return "";
  std::string out;
  std::array<char, 256> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe.get())) > 0) out.append(buffer.data(), n);
  return out;
}

std::string ShellQuote(const std::string& s) {
  std::string quoted = "'";
  for (const char c : s) quoted += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string CpuModel() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
  }
  return "unknown";
}

}  // namespace

std::string BazelRunWorkspace() {
  const char* dir = std::getenv("BUILD_WORKSPACE_DIRECTORY");  // Bazel's `bazel run` contract
  return dir == nullptr ? "" : dir;
}

Provenance CollectProvenance(const std::string& workspace) {
  Provenance p;
  std::string root = workspace.empty() ? BazelRunWorkspace() : workspace;
  // Run outside `bazel run` (bazel-bin/experiments/... from the workspace): the current folder.
  if (root.empty()) root = ".";
  const std::string git = "git -C " + ShellQuote(root);
  const std::string commit(
      absl::StripAsciiWhitespace(CommandOutput(git + " rev-parse HEAD 2>/dev/null")));
  if (commit.size() == 40) {
    p.git_commit = commit;
    p.git_dirty =
        !CommandOutput(git + " status --porcelain --untracked-files=no 2>/dev/null").empty();
  }
  p.cpu_model = CpuModel();
  p.cpu_cores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  p.highway_target = kernels::QuantizeKernelsTargetName();
#ifdef NDEBUG
  p.build_mode = "opt";
#else
  p.build_mode = "dbg";
#endif
  return p;
}

nlohmann::json Provenance::ToJson() const {
  return nlohmann::json{{"git_commit", git_commit}, {"git_dirty", git_dirty},
                        {"cpu_model", cpu_model},   {"cpu_cores", cpu_cores},
                        {"highway_target", highway_target}, {"build_mode", build_mode}};
}

}  // namespace qlab::experiments
