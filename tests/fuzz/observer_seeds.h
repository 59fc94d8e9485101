// Seed inputs for the observer-file fuzz target: one file per registered observer, written by
// SaveObserver after a few seeded random batches, so the corpus always matches the current file
// format. Used by the replay test (in-process) and by make_observer_seeds (for libFuzzer runs).
#ifndef QLAB_TESTS_FUZZ_OBSERVER_SEEDS_H_
#define QLAB_TESTS_FUZZ_OBSERVER_SEEDS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace qlab::fuzz {

// (observer name, file bytes) for every name in ObserverNames(), written through a temporary
// file in `scratch_dir`. Histogram observers use 64 bins to keep the seeds a few KB.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ObserverSeedFiles(
    const std::string& scratch_dir);

}  // namespace qlab::fuzz

#endif  // QLAB_TESTS_FUZZ_OBSERVER_SEEDS_H_
