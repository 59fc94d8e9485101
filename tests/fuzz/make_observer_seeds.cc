// Writes the observer-file seed corpus for libFuzzer runs: one SaveObserver file per observer
// kind into the directory given as the only argument (tests/fuzz/corpus/observer_file). The
// replay test builds the same seeds in-process, so this is only needed before fuzzing.
//
//   bazel run //tests/fuzz:make_observer_seeds -- $PWD/tests/fuzz/corpus/observer_file
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/fuzz/observer_seeds.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::filesystem::create_directories(dir);
  auto seeds = qlab::fuzz::ObserverSeedFiles(dir);
  if (!seeds.ok()) {
    std::fprintf(stderr, "%s\n", seeds.status().ToString().c_str());
    return 1;
  }
  for (const auto& [name, bytes] : *seeds) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  }
  std::printf("wrote %zu observer seeds to %s\n", seeds->size(), dir.c_str());
  return 0;
}
