// Fuzz target for the experiment config files (experiments/sweep.h, experiments/ptq.h): the bytes
// are parsed as JSON the way ReadJsonFile reads a config file, then given to every config reader
// the runners use on such files: SweepConfigFromJson (a sweep config, experiments/configs/*.json),
// PtqConfigFromJson (a PTQ config object) and LayerOverridesFromJson (a --layer_config file).
// A sweep config that is accepted must expand to a bounded grid whose run names are unique (the
// records are written under those names); a PtqConfig that is accepted must read back from its
// own ToJson.
#include <cstdlib>
#include <set>
#include <string>

#include "experiments/ptq.h"
#include "experiments/sweep.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzSweepConfig(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return 0;

  absl::StatusOr<experiments::SweepConfig> sweep =
      experiments::SweepConfigFromJson(value, "fuzz", "fuzz config");
  if (sweep.ok()) {
    const std::vector<experiments::PtqConfig> runs = experiments::ExpandGrid(*sweep);
    // Accepted configs are bounded (experiments::kMaxSweepRuns): the grid cannot exhaust memory.
    if (runs.size() > static_cast<size_t>(experiments::kMaxSweepRuns)) std::abort();
    std::set<std::string> names;
    for (const experiments::PtqConfig& run : runs) names.insert(experiments::RunName(run));
    // Two runs with one name would overwrite each other's record (RunName promises uniqueness).
    if (names.size() != runs.size()) std::abort();
  }

  absl::StatusOr<experiments::PtqConfig> ptq = experiments::PtqConfigFromJson(value);
  if (ptq.ok()) {
    // ToJson writes what FromJson reads: a record's config must be loadable again.
    if (!experiments::PtqConfigFromJson(ptq->ToJson()).ok()) std::abort();
  }

  (void)experiments::LayerOverridesFromJson(value, "fuzz layer config");
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzSweepConfig)
