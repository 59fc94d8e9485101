// Helpers shared by models/data tests: where the shared data and the test's scratch folder are,
// and small file writers for generated fixtures.
#ifndef QLAB_MODELS_DATA_TEST_UTIL_H_
#define QLAB_MODELS_DATA_TEST_UTIL_H_

#include <string>

#include "absl/strings/string_view.h"
#include "models/data/image.h"

namespace qlab::data::testing {

// The shared data folder (<workspace>/../shared/data); fails the calling test if it is missing.
// The test must list "//models/data:BUILD" in its data.
std::string SharedDataRoot();

// TEST_TMPDIR (Bazel's per-test scratch folder), or /tmp outside Bazel.
std::string TempDir();

void WriteFile(const std::string& path, absl::string_view bytes);

// Lossless PNG bytes of `image`.
std::string EncodePng(const Image& image);

}  // namespace qlab::data::testing

#endif  // QLAB_MODELS_DATA_TEST_UTIL_H_
