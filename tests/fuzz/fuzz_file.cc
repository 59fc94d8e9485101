// WriteFuzzFile: the temporary file through which fuzz targets feed path-taking loaders
// (LoadPth, LoadObserver, OpenCifar10Binary). One file per process and target, rewritten on every
// input, so parallel fuzzing jobs and tests never share a file.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

std::string WriteFuzzFile(const char* target, const uint8_t* data, size_t size) {
  const char* dir = std::getenv("TEST_TMPDIR");  // set by `bazel test`; libFuzzer runs use /tmp
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/qlab_fuzz_" + target +
                           "_" + std::to_string(getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  // Failing to write the input would silently fuzz nothing: stop instead.
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  if (std::fclose(f) != 0) std::abort();
  return path;
}

}  // namespace qlab::fuzz
