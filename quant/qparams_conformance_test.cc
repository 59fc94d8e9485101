// ChooseQParams against PyTorch 1.13 (Debian's python3-torch run by /usr/bin/python3): the same
// float32 ranges must give bit-identical scales and identical zero points. The ranges cover
// normal, one-sided (post-ReLU), constant, zero, tiny, huge and tie-producing cases, for every
// dtype/range/qscheme combination the quantizers use, per tensor and per channel.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "quant/qparams.h"

namespace qlab {
namespace {

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

struct Case {
  QuantTarget target;
  std::vector<float> mins, maxs;
};

std::vector<std::pair<float, float>> MakeRanges(std::mt19937& rng) {
  std::vector<std::pair<float, float>> ranges = {
      {0.0f, 0.0f},    {5.0f, 5.0f},        {-3.0f, -3.0f},    {0.0f, 6.0f},
      {-1.5f, 253.5f}, {-2.5f, 252.5f},     {-1e-30f, 1e-30f}, {1e-25f, 3e-25f},
      {-1e30f, 1e30f}, {-3.4e38f, 3.4e38f}, {-1.0f, 1.0f},     {-0.001f, 1000.0f}};
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> log_magnitude(-12.0f, 12.0f);
  for (int i = 0; i < 200; ++i) {
    const float magnitude = std::exp2(log_magnitude(rng));
    float a = normal(rng) * magnitude, b = normal(rng) * magnitude;
    if (a > b) std::swap(a, b);
    if (i % 4 == 1) a = std::abs(a) * 0.01f, b = std::abs(b) + a;  // post-ReLU-like
    ranges.push_back({a, b});
  }
  return ranges;
}

std::vector<QuantTarget> Targets() {
  return {
      {DType::kInt8, -128, 127, QScheme::kPerTensorAffine},
      {DType::kUInt8, 0, 255, QScheme::kPerTensorAffine},
      {DType::kInt8, -128, 127, QScheme::kPerTensorSymmetric},
      {DType::kInt8, -127, 127, QScheme::kPerTensorSymmetric},
      {DType::kUInt8, 0, 255, QScheme::kPerTensorSymmetric},
      {DType::kUInt8, 0, 127, QScheme::kPerTensorAffine},  // reduce_range
      {DType::kUInt8, 0, 127, QScheme::kPerTensorSymmetric},
      {DType::kInt8, -8, 7, QScheme::kPerTensorAffine},  // 4-bit
      {DType::kInt8, -8, 7, QScheme::kPerTensorSymmetric},
      {DType::kInt8, -128, 127, QScheme::kPerTensorAffine, 0x1p-12f},  // HistogramObserver eps
  };
}

TEST(QParamsConformanceTest, MatchesPyTorchObservers) {
  std::mt19937 rng(1234);
  const std::vector<std::pair<float, float>> ranges = MakeRanges(rng);
  std::vector<Case> cases;
  for (const QuantTarget& t : Targets()) {
    for (const auto& [min, max] : ranges) cases.push_back({t, {min}, {max}});
    // The per-channel twin: all ranges as the channels of one tensor.
    QuantTarget per_channel = t;
    per_channel.qscheme =
        IsSymmetric(t.qscheme) ? QScheme::kPerChannelSymmetric : QScheme::kPerChannelAffine;
    Case c{per_channel, {}, {}};
    for (const auto& [min, max] : ranges) c.mins.push_back(min), c.maxs.push_back(max);
    cases.push_back(c);
  }

  nlohmann::json input = nlohmann::json::array();
  for (const Case& c : cases) {
    std::vector<uint32_t> min_bits, max_bits;
    for (float v : c.mins) min_bits.push_back(Bits(v));
    for (float v : c.maxs) max_bits.push_back(Bits(v));
    input.push_back({{"dtype", c.target.dtype == DType::kInt8 ? "int8" : "uint8"},
                     {"quant_min", c.target.quant_min},
                     {"quant_max", c.target.quant_max},
                     {"qscheme", QSchemeName(c.target.qscheme)},
                     {"eps_bits", Bits(c.target.eps)},
                     {"min_bits", min_bits},
                     {"max_bits", max_bits}});
  }
  const std::string dir =
      std::getenv("TEST_TMPDIR") != nullptr ? std::getenv("TEST_TMPDIR") : "/tmp";
  const std::string in_path = dir + "/qparams_cases.json";
  const std::string out_path = dir + "/qparams_torch.json";
  std::ofstream(in_path) << input.dump();
  const std::string command = "/usr/bin/python3 quant/torch_qparams.py " + in_path + " " + out_path;
  ASSERT_EQ(std::system(command.c_str()), 0)
      << command << " failed: is python3-torch installed (tools/setup.sh)?";
  nlohmann::json torch_results;
  std::ifstream(out_path) >> torch_results;
  ASSERT_EQ(torch_results.size(), cases.size());

  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    absl::StatusOr<QuantParams> ours = c.mins.size() == 1 && !IsPerChannel(c.target.qscheme)
                                           ? ChooseQParams(c.mins[0], c.maxs[0], c.target)
                                           : ChooseQParamsPerChannel(c.mins, c.maxs, 0, c.target);
    ASSERT_TRUE(ours.ok()) << ours.status();
    const auto& scale_bits = torch_results[i]["scale_bits"];
    const auto& zero_points = torch_results[i]["zero_points"];
    ASSERT_EQ(scale_bits.size(), ours->scales.size());
    for (size_t ch = 0; ch < ours->scales.size(); ++ch) {
      float torch_scale;
      const uint32_t b = scale_bits[ch].get<uint32_t>();
      std::memcpy(&torch_scale, &b, sizeof(b));
      EXPECT_EQ(Bits(ours->scales[ch]), b)
          << ours->DebugString() << " channel " << ch << " range [" << c.mins[ch] << ", "
          << c.maxs[ch] << "]: qlab scale " << ours->scales[ch] << ", PyTorch " << torch_scale;
      EXPECT_EQ(ours->zero_points[ch], zero_points[ch].get<int32_t>())
          << ours->DebugString() << " channel " << ch << " range [" << c.mins[ch] << ", "
          << c.maxs[ch] << "]";
    }
  }
}

}  // namespace
}  // namespace qlab
