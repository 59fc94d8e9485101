// See torch_reference.h.
#include "calibration/torch_reference.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace qlab::calibration::testing {

uint32_t FloatBits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

namespace {

float FromBits(uint32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof(v));
  return v;
}

std::vector<float> FloatsFromBits(const nlohmann::json& bits) {
  std::vector<float> v;
  for (const auto& b : bits) v.push_back(FromBits(b.get<uint32_t>()));
  return v;
}

}  // namespace

absl::StatusOr<std::vector<TorchResult>> RunTorchObservers(const std::vector<TorchCase>& cases) {
  nlohmann::json input = nlohmann::json::array();
  for (const TorchCase& c : cases) {
    nlohmann::json batches = nlohmann::json::array();
    for (const Tensor& t : c.batches) {
      std::vector<uint32_t> bits(static_cast<size_t>(t.numel()));
      for (size_t i = 0; i < bits.size(); ++i) bits[i] = FloatBits(t.data<float>()[i]);
      batches.push_back({{"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
                         {"bits", bits}});
    }
    input.push_back({{"observer", c.observer},
                     {"c", c.averaging_constant},
                     {"axis", c.axis},
                     {"bins", c.bins},
                     {"dtype", c.target.dtype == DType::kInt8 ? "int8" : "uint8"},
                     {"quant_min", c.target.quant_min},
                     {"quant_max", c.target.quant_max},
                     {"qscheme", QSchemeName(c.target.qscheme)},
                     {"batches", batches}});
  }
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp != nullptr ? tmp : "/tmp";
  const std::string in_path = dir + "/torch_observer_cases.json";
  const std::string out_path = dir + "/torch_observer_results.json";
  std::ofstream(in_path) << input.dump();
  const std::string command =
      "/usr/bin/python3 calibration/torch_observers.py " + in_path + " " + out_path;
  if (std::system(command.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat(command, " failed: is python3-torch installed (tools/setup.sh)?"));
  }
  std::ifstream in(out_path);
  const nlohmann::json out = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!out.is_array() || out.size() != cases.size()) {
    return absl::InternalError(absl::StrCat(out_path, " is not a list of ", cases.size(),
                                            " results"));
  }
  std::vector<TorchResult> results;
  for (const auto& r : out) {
    TorchResult result{FloatsFromBits(r["scale_bits"]), {}, FloatsFromBits(r["min_bits"]),
                       FloatsFromBits(r["max_bits"])};
    for (const auto& z : r["zero_points"]) result.zero_points.push_back(z.get<int32_t>());
    results.push_back(std::move(result));
  }
  return results;
}

const char* DistributionName(Distribution d) {
  switch (d) {
    case Distribution::kNormal:
      return "normal";
    case Distribution::kHeavyTailed:
      return "heavy_tailed";
    case Distribution::kPostRelu:
      return "post_relu";
    case Distribution::kConstant:
      return "constant";
    case Distribution::kTiny:
      return "tiny";
    case Distribution::kHuge:
      return "huge";
  }
  return "?";
}

std::vector<Distribution> AllDistributions() {
  return {Distribution::kNormal,   Distribution::kHeavyTailed, Distribution::kPostRelu,
          Distribution::kConstant, Distribution::kTiny,        Distribution::kHuge};
}

std::vector<Tensor> MakeBatches(Distribution d, uint32_t seed, const Shape& shape, int count) {
  std::vector<Tensor> batches;
  for (int b = 0; b < count; ++b) {
    std::mt19937 rng(seed * 1000u + static_cast<uint32_t>(b));
    std::normal_distribution<float> normal(0.0f, 1.0f + 0.25f * static_cast<float>(b));
    std::student_t_distribution<float> student(2.0f);  // infinite variance: outliers
    Tensor t = Tensor::Create(DType::kFloat32, shape).value();
    float* x = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      switch (d) {
        case Distribution::kNormal:
          x[i] = normal(rng) + 0.3f;
          break;
        case Distribution::kHeavyTailed:
          x[i] = student(rng) * (1.0f + 0.25f * static_cast<float>(b));
          break;
        case Distribution::kPostRelu:
          x[i] = std::max(normal(rng), 0.0f);
          break;
        case Distribution::kConstant:
          x[i] = 0.75f;
          break;
        case Distribution::kTiny:
          x[i] = normal(rng) * 1e-30f;
          break;
        case Distribution::kHuge:
          x[i] = normal(rng) * 1e30f;
          break;
      }
    }
    batches.push_back(t);
  }
  return batches;
}

}  // namespace qlab::calibration::testing
