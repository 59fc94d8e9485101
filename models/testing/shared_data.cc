// SharedDataRoot: realpath of a runfile, minus its workspace-relative components, plus
// ../shared/data.
#include "models/testing/shared_data.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace qlab::testing {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

constexpr absl::string_view kWhatToDo =
    "qlab's tests read real data from ../shared/data beside the workspace (the folder holding "
    "cifar10-test-png/, cifar10-resnet-akamaster/, ... as described in its README.md); put "
    "that folder there";

}  // namespace

absl::StatusOr<std::string> SharedDataRoot(absl::string_view anchor_runfile) {
  char resolved[PATH_MAX];
  const std::string anchor(anchor_runfile);
  if (::realpath(anchor.c_str(), resolved) == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "cannot resolve runfile \"", anchor, "\" (list it in the test's `data`)"));
  }
  std::string workspace(resolved);
  // One parent per component of the workspace-relative anchor path.
  const std::vector<absl::string_view> parts =
      absl::StrSplit(anchor_runfile, '/', absl::SkipEmpty());
  for (size_t i = 0; i < parts.size(); ++i) {
    const size_t slash = workspace.rfind('/');
    if (slash == std::string::npos || slash == 0) {
      return absl::NotFoundError(
          absl::StrCat("runfile \"", anchor, "\" resolves to ", resolved, ", not inside a workspace"));
    }
    workspace.resize(slash);
  }
  const size_t slash = workspace.rfind('/');
  const std::string root = absl::StrCat(workspace.substr(0, slash), "/shared/data");
  if (!IsDirectory(root)) {
    return absl::NotFoundError(absl::StrCat(root, " does not exist: ", kWhatToDo));
  }
  return root;
}

absl::StatusOr<std::string> SharedDataPath(absl::string_view anchor_runfile,
                                           absl::string_view relative) {
  absl::StatusOr<std::string> root = SharedDataRoot(anchor_runfile);
  if (!root.ok()) return root.status();
  const std::string path = absl::StrCat(*root, "/", relative);
  if (!Exists(path)) {
    return absl::NotFoundError(absl::StrCat(path, " does not exist: ", kWhatToDo));
  }
  return path;
}

}  // namespace qlab::testing
