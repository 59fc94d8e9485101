// ObserverSeedFiles: every observer kind saved by SaveObserver after seeded random batches (see
// observer_seeds.h).
#include "tests/fuzz/observer_seeds.h"

#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

#include "calibration/registry.h"
#include "core/status_macros.h"
#include "core/tensor.h"

namespace qlab::fuzz {
namespace {

// One spec per registered observer; histograms at 64 bins so each seed stays a few hundred bytes.
constexpr const char* kSpecs[] = {
    "minmax",           "moving_average:c=0.1", "per_channel_minmax",
    "per_channel_moving_average:c=0.2", "histogram:bins=64", "percentile:p=99.9,bins=64",
    "entropy:bins=64",  "mse:bins=64", "per_channel_histogram:bins=16",
};

absl::StatusOr<Tensor> Random(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  QLAB_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(DType::kFloat32, {3, 4, 5}));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ObserverSeedFiles(
    const std::string& scratch_dir) {
  std::vector<std::pair<std::string, std::string>> seeds;
  calibration::ObserverOptions options;
  options.channel_axis = 1;  // ignored by the per-tensor observers
  for (const char* spec : kSpecs) {
    QLAB_ASSIGN_OR_RETURN(auto observer, calibration::CreateObserver(spec, options));
    for (uint32_t seed = 1; seed <= 2; ++seed) {
      QLAB_ASSIGN_OR_RETURN(Tensor batch, Random(seed));
      QLAB_RETURN_IF_ERROR(observer->Observe(batch));
    }
    const std::string name(absl::string_view(spec).substr(0, absl::string_view(spec).find(':')));
    const std::string path = scratch_dir + "/" + name + "." + std::to_string(getpid());
    QLAB_RETURN_IF_ERROR(calibration::SaveObserver(*observer, path));
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    std::remove(path.c_str());
    seeds.emplace_back(name, bytes.str());
  }
  return seeds;
}

}  // namespace qlab::fuzz
