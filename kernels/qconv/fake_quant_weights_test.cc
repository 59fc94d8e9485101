// Tests of kernels/qconv/fake_quant_weights.h: PackFakeQuantizedConvWeights against the scalar
// packer (qgemm.h PackWeightsStrided on the OHWI codes), byte for byte and column sum for column
// sum, on odd shapes (output channels around the 16-column panels, K around the 4-byte groups,
// K padded for AMX), per-channel and per-tensor scales, 1 and 2 threads; the codes recovered from
// fake-quantized values are the codes that made them; and QConvU8S8_NHWC::Update with those
// weights computes what an operator created from the codes computes.
#include "kernels/qconv/fake_quant_weights.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/qconv/qconv.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/threadpool/threadpool.h"

namespace qlab::kernels {
namespace {

struct Case {
  size_t out_c, in_c, kh, kw;
  bool per_channel;
  size_t extra_k;  // packed_k = K + extra_k (qconv's AMX padding of the stem's K)
};

// Fake-quantized OIHW weights (scale[o] * q, q uniform in [-128, 127]) and their codes in OHWI.
struct FakeQuantWeights {
  std::vector<float> oihw;
  std::vector<float> scales;
  std::vector<int8_t> ohwi_codes;
};

FakeQuantWeights MakeWeights(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> code(-128, 127);
  std::uniform_real_distribution<float> log_scale(-12.0f, 2.0f);
  FakeQuantWeights w;
  const size_t k = c.in_c * c.kh * c.kw;
  w.scales.resize(c.per_channel ? c.out_c : 1);
  for (float& s : w.scales) s = std::exp2(log_scale(rng));
  w.oihw.resize(c.out_c * k);
  w.ohwi_codes.resize(c.out_c * k);
  for (size_t o = 0; o < c.out_c; ++o) {
    const float s = w.scales[c.per_channel ? o : 0];
    for (size_t ci = 0; ci < c.in_c; ++ci) {
      for (size_t ky = 0; ky < c.kh; ++ky) {
        for (size_t kx = 0; kx < c.kw; ++kx) {
          const int32_t q = code(rng);
          // As kernels::FakeQuantize writes it: float(q - 0) * scale.
          w.oihw[((o * c.in_c + ci) * c.kh + ky) * c.kw + kx] = static_cast<float>(q) * s;
          w.ohwi_codes[o * k + (ky * c.kw + kx) * c.in_c + ci] = static_cast<int8_t>(q);
        }
      }
    }
  }
  return w;
}

// The scalar packer on the OHWI codes, K zero-padded to packed_k as QConvU8S8_NHWC::Create does.
PackedWeights ScalarPack(const Case& c, const std::vector<int8_t>& ohwi, size_t packed_k) {
  const size_t k = c.in_c * c.kh * c.kw;
  std::vector<int8_t> padded(c.out_c * packed_k, 0);
  for (size_t o = 0; o < c.out_c; ++o) std::memcpy(&padded[o * packed_k], &ohwi[o * k], k);
  return PackWeightsStrided(padded.data(), packed_k, c.out_c, 1, packed_k);
}

const Case kCases[] = {
    {1, 1, 1, 1, true, 0},  {5, 3, 7, 7, true, 45},  {5, 3, 7, 7, false, 0},
    {17, 5, 3, 3, true, 0}, {16, 8, 3, 3, true, 0},  {33, 7, 1, 1, false, 0},
    {31, 4, 2, 3, true, 0}, {64, 64, 3, 3, true, 0}, {20, 13, 3, 1, false, 3},
    {3, 9, 5, 5, true, 64},
};

TEST(PackFakeQuantizedConvWeightsTest, MatchesScalarPackerBitForBit) {
  uint32_t seed = 1000;
  for (const Case& c : kCases) {
    for (size_t threads : {1, 2}) {
      SCOPED_TRACE(::testing::Message() << "out " << c.out_c << " in " << c.in_c << " kernel "
                                        << c.kh << "x" << c.kw << " per_channel " << c.per_channel
                                        << " extra_k " << c.extra_k << " threads " << threads);
      const FakeQuantWeights w = MakeWeights(c, ++seed);
      const size_t packed_k = c.in_c * c.kh * c.kw + c.extra_k;
      const PackedWeights want = ScalarPack(c, w.ohwi_codes, packed_k);
      ThreadPool pool(threads);
      PackedWeights got;
      // Twice into the same buffers: the second call must overwrite, not depend on, the first.
      for (int round = 0; round < 2; ++round) {
        PackFakeQuantizedConvWeights(w.oihw.data(), {c.out_c, c.in_c, c.kh, c.kw}, w.scales.data(),
                                     c.per_channel, packed_k, got, &pool);
        EXPECT_EQ(got.k, want.k);
        EXPECT_EQ(got.n, want.n);
        EXPECT_EQ(got.k_groups, want.k_groups);
        EXPECT_EQ(got.panels, want.panels);
        EXPECT_EQ(got.data, want.data);
        EXPECT_EQ(got.column_sums, want.column_sums);
      }
    }
  }
}

// Values that are not exactly fake-quantized get kernels::Quantize's codes (clamped): what the
// function computes for any input, stated by the header.
TEST(PackFakeQuantizedConvWeightsTest, ArbitraryValuesGetQuantizeCodes) {
  const Case c{18, 6, 3, 3, true, 0};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t k = c.in_c * c.kh * c.kw;
  std::vector<float> oihw(c.out_c * k), scales(c.out_c);
  for (float& v : oihw) v = normal(rng);
  for (size_t o = 0; o < c.out_c; ++o) scales[o] = 0.005f + 0.001f * static_cast<float>(o);
  std::vector<int8_t> ohwi(c.out_c * k);
  for (size_t o = 0; o < c.out_c; ++o) {
    for (size_t ci = 0; ci < c.in_c; ++ci) {
      for (size_t t = 0; t < c.kh * c.kw; ++t) {
        const float q =
            std::nearbyint(oihw[(o * c.in_c + ci) * c.kh * c.kw + t] * (1.0f / scales[o]));
        ohwi[o * k + t * c.in_c + ci] =
            static_cast<int8_t>(std::fmin(std::fmax(q, -128.0f), 127.0f));
      }
    }
  }
  PackedWeights got;
  PackFakeQuantizedConvWeights(oihw.data(), {c.out_c, c.in_c, c.kh, c.kw}, scales.data(), true, k,
                               got, nullptr);
  const PackedWeights want = ScalarPack(c, ohwi, k);
  EXPECT_EQ(got.data, want.data);
  EXPECT_EQ(got.column_sums, want.column_sums);
}

// An operator created once (zero weights) and updated with the fast-packed weights, a new input
// zero point and a new output stage computes exactly what one created from the codes computes.
TEST(PackFakeQuantizedConvWeightsTest, UpdatedOperatorMatchesCreatedOne) {
  struct ConvCase {
    Case weights;
    size_t height, stride, padding;
  };
  const ConvCase cases[] = {{{19, 3, 7, 7, true, 0}, 13, 2, 3},
                            {{24, 16, 3, 3, true, 0}, 9, 1, 1},
                            {{17, 12, 1, 1, false, 0}, 6, 2, 0},
                            {{40, 8, 3, 3, true, 0}, 7, 2, 1}};
  uint32_t seed = 77;
  for (const ConvCase& cc : cases) {
    const Case& c = cc.weights;
    SCOPED_TRACE(::testing::Message()
                 << "out " << c.out_c << " in " << c.in_c << " kernel " << c.kh);
    const FakeQuantWeights w = MakeWeights(c, ++seed);
    QConvShape shape;
    shape.batch = 2;
    shape.input_height = shape.input_width = cc.height;
    shape.input_channels = c.in_c;
    shape.output_channels = c.out_c;
    shape.kernel_height = c.kh;
    shape.kernel_width = c.kw;
    shape.stride_height = shape.stride_width = cc.stride;
    shape.padding_top = shape.padding_left = shape.padding_bottom = shape.padding_right =
        cc.padding;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> u8(0, 255);
    std::vector<uint8_t> input(shape.batch * cc.height * cc.height * c.in_c);
    for (uint8_t& v : input) v = static_cast<uint8_t>(u8(rng));
    QConvOutput out;
    out.type = QOutputType::kF32;
    out.multipliers.resize(c.out_c);
    out.float_bias.resize(c.out_c);
    for (size_t o = 0; o < c.out_c; ++o) {
      out.multipliers[o] = 0.01f * w.scales[c.per_channel ? o : 0];
      out.float_bias[o] = 0.1f * static_cast<float>(o) - 1.0f;
    }
    const int32_t zero_point = 37;
    auto created = QConvU8S8_NHWC::Create(shape, zero_point, w.ohwi_codes.data(), nullptr, out);
    ASSERT_TRUE(created.ok()) << created.status();
    const std::vector<int8_t> zeros(w.ohwi_codes.size(), 0);
    QConvOutput placeholder;
    placeholder.type = QOutputType::kF32;
    placeholder.multipliers = {1.0f};
    auto updated = QConvU8S8_NHWC::Create(shape, 0, zeros.data(), nullptr, placeholder);
    ASSERT_TRUE(updated.ok()) << updated.status();
    ThreadPool pool(2);
    PackedWeights packed;
    PackFakeQuantizedConvWeights(w.oihw.data(), {c.out_c, c.in_c, c.kh, c.kw}, w.scales.data(),
                                 c.per_channel, updated->packed_k(), packed, &pool);
    ASSERT_TRUE(updated->Update(zero_point, packed, out).ok());
    const size_t outputs = shape.batch * shape.output_height() * shape.output_width() * c.out_c;
    std::vector<float> want(outputs), got(outputs, -1.0f);
    created->Run(input.data(), want.data(), &pool);
    updated->Run(input.data(), got.data(), &pool);
    EXPECT_EQ(std::memcmp(want.data(), got.data(), outputs * sizeof(float)), 0);
    // The previous (zero) weights came back in `packed`, ready to be refilled.
    ASSERT_EQ(packed.k, updated->packed_k());
    for (int32_t s : packed.column_sums) EXPECT_EQ(s, 0);
  }
}

TEST(PackFakeQuantizedConvWeightsTest, UpdateRejectsOtherShapesAndBadStages) {
  QConvShape shape;
  shape.input_height = shape.input_width = 5;
  shape.input_channels = 8;
  shape.output_channels = 20;
  shape.kernel_height = shape.kernel_width = 3;
  const std::vector<int8_t> zeros(20 * 72, 0);
  QConvOutput out;
  out.type = QOutputType::kF32;
  out.multipliers = {1.0f};
  auto conv = QConvU8S8_NHWC::Create(shape, 0, zeros.data(), nullptr, out);
  ASSERT_TRUE(conv.ok());
  PackedWeights wrong = PackWeightsStrided(zeros.data(), 36, 20, 1, 36);
  EXPECT_EQ(conv->Update(0, wrong, out).code(), absl::StatusCode::kInvalidArgument);
  PackedWeights right = PackWeightsStrided(zeros.data(), 72, 20, 1, 72);
  EXPECT_EQ(conv->Update(256, right, out).code(), absl::StatusCode::kInvalidArgument);
  QConvOutput bad = out;
  bad.multipliers = {0.0f};
  EXPECT_EQ(conv->Update(0, right, bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(conv->Update(255, right, out).ok());
}

}  // namespace
}  // namespace qlab::kernels
