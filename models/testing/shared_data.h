// Locating the shared data folder (`../shared/data` beside the workspace) from inside a Bazel test.
//
// Bazel runs a test in a sandbox whose working directory is the test's runfiles tree, so the
// workspace-relative path `../shared/data` means nothing there, and qlab hard-codes no absolute
// path. But each runfile is a symlink to the real source file: resolving one that the test lists
// in its `data` (e.g. `models/BUILD`) with realpath gives `<workspace>/models/BUILD`, and the
// data folder is `<workspace>/../shared/data`. The sandbox mounts the file system read-only, so
// the folder is readable from there.
//
//   cc_test(name = "x_test", data = ["BUILD"], deps = ["//models/testing:shared_data"], ...)
//   QLAB_ASSIGN_OR_RETURN(std::string root, SharedDataRoot("models/BUILD"));
//   // root == "/…/shared/data"
//
// For binaries (`bazel run`), prefer a --data_root flag: this helper is for tests.
#ifndef QLAB_MODELS_TESTING_SHARED_DATA_H_
#define QLAB_MODELS_TESTING_SHARED_DATA_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qlab::testing {

// `anchor_runfile` is a workspace-relative path listed in the test's `data` ("models/BUILD").
// Returns the absolute path of `<workspace>/../shared/data`. NotFound (saying what to put
// where) when the anchor cannot be resolved or the folder does not exist.
absl::StatusOr<std::string> SharedDataRoot(absl::string_view anchor_runfile);

// SharedDataRoot + "/" + `relative`, which must exist. NotFound naming the missing path and
// where the data is expected to come from (../shared/data/README.md) otherwise.
absl::StatusOr<std::string> SharedDataPath(absl::string_view anchor_runfile,
                                           absl::string_view relative);

}  // namespace qlab::testing

#endif  // QLAB_MODELS_TESTING_SHARED_DATA_H_
