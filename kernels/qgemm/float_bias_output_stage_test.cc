// Tests of the float-bias output stage (QRequantization::kFloatBias, and kF32 output with a float
// bias; formulas in output_stage.h) on every Highway target compiled in and supported by this
// CPU: the fused GEMM epilogue (VNNI tile on AVX3_DL, the portable tile elsewhere, SCALAR's loops)
// against the int32 reference GEMM followed by QOutputStageRef, bit for bit; the exact rounding
// of ties and the clamps against values worked out here from the formula; the fused stage
// against the float output followed by kernels/quantize's stand-alone Quantize (the property the
// int8 engine relies on to agree with the fake-quant reference); and the convolution carrying
// the stage's parameters, with one and two threads.
//
// Randomness: std::mt19937 seeded with kBaseSeed plus a case number (printed on failure);
// `--gtest_random_seed=N` replaces kBaseSeed to explore other data.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/qconv/qconv.h"
#include "kernels/qconv/qconv_ref.h"
#include "kernels/qgemm/output_stage.h"
#include "kernels/qgemm/output_stage_ref.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/qgemm/qgemm_ref.h"
#include "kernels/quantize/quantize.h"
#include "kernels/threadpool/threadpool.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261124;

uint32_t BaseSeed() {
  const int flag = ::testing::GTEST_FLAG(random_seed);
  return flag != 0 ? static_cast<uint32_t>(flag) : kBaseSeed;
}

// The parameters of one float-bias layer, drawn as a real layer's would be: activation and
// weight scales give the accumulator scales, the float bias is of the size of typical outputs,
// and the output scale makes the requantized values spread over about 4x the output range, so
// that both clamp ends and every rounding case occur.
struct FloatBiasLayer {
  std::vector<float> acc_scales;  // 1 or n entries
  std::vector<float> float_bias;  // n entries
  std::vector<int32_t> int_bias;  // n entries
  float output_inverse_scale = 1.0f;
};

FloatBiasLayer DrawLayer(std::mt19937& rng, size_t n, size_t k, bool per_channel) {
  FloatBiasLayer layer;
  // Typical |acc| ~ sqrt(K) * 74 * 74 for uniform operands.
  const double typical_acc = std::sqrt(static_cast<double>(k)) * 74.0 * 74.0 + 1.0;
  std::uniform_real_distribution<float> scale_dist(0.002f, 0.05f);
  const float x_scale = scale_dist(rng);
  layer.acc_scales.resize(per_channel ? n : 1);
  for (float& s : layer.acc_scales) s = x_scale * (scale_dist(rng) * 0.1f);
  const double typical_output = typical_acc * x_scale * 0.0025;
  std::uniform_real_distribution<float> bias_dist(static_cast<float>(-2.0 * typical_output),
                                                  static_cast<float>(2.0 * typical_output));
  layer.float_bias.resize(n);
  for (float& b : layer.float_bias) b = bias_dist(rng);
  std::uniform_int_distribution<int32_t> int_bias_dist(-static_cast<int32_t>(typical_acc),
                                                       static_cast<int32_t>(typical_acc));
  layer.int_bias.resize(n);
  for (int32_t& b : layer.int_bias) b = int_bias_dist(rng);
  std::uniform_real_distribution<double> output_scale_dist(0.25, 4.0);
  const double output_scale = typical_output * output_scale_dist(rng) / 64.0;
  layer.output_inverse_scale = 1.0f / static_cast<float>(output_scale);
  return layer;
}

// FloatBiasTester: one fused GEMM call with a float-bias stage against the reference GEMM and
// QOutputStageRef, every byte of C compared (row padding must survive).
//   FloatBiasTester().m(9).n(33).k(65).type(QOutputType::kU8).per_channel(true).Test();
class FloatBiasTester {
 public:
  FloatBiasTester& m(size_t v) {
    m_ = v;
    return *this;
  }
  FloatBiasTester& n(size_t v) {
    n_ = v;
    return *this;
  }
  FloatBiasTester& k(size_t v) {
    k_ = v;
    return *this;
  }
  FloatBiasTester& a_zero_point(int32_t v) {
    a_zero_point_ = v;
    return *this;
  }
  FloatBiasTester& signed_activations(bool v) {
    signed_ = v;
    return *this;
  }
  // kU8/kS8 use kFloatBias; kF32 is the dequantized output plus the float bias.
  FloatBiasTester& type(QOutputType v) {
    type_ = v;
    return *this;
  }
  FloatBiasTester& per_channel(bool v) {
    per_channel_ = v;
    return *this;
  }
  FloatBiasTester& float_bias(bool v) {
    float_bias_ = v;
    return *this;
  }
  FloatBiasTester& int_bias(bool v) {
    int_bias_ = v;
    return *this;
  }
  FloatBiasTester& relu(bool v) {
    relu_ = v;
    return *this;
  }
  FloatBiasTester& output_zero_point(int32_t v) {
    output_zero_point_ = v;
    return *this;
  }
  FloatBiasTester& seed(uint32_t v) {
    seed_ = v;
    return *this;
  }

  void Test() const {
    std::mt19937 rng(seed_);
    const size_t ldc = n_ + 3;
    const int32_t a_min = signed_ ? -128 : 0, a_max = signed_ ? 127 : 255;
    std::uniform_int_distribution<int32_t> a_dist(a_min, a_max), b_dist(-128, 127);
    std::vector<uint8_t> a_bytes(m_ * k_);
    for (uint8_t& v : a_bytes) v = static_cast<uint8_t>(a_dist(rng));
    std::vector<int8_t> b(k_ * n_);
    for (int8_t& v : b) v = static_cast<int8_t>(b_dist(rng));
    const PackedWeights packed = PackWeights(b.data(), k_, n_, n_);
    const FloatBiasLayer layer = DrawLayer(rng, n_, k_, per_channel_);

    QOutputStage stage;
    stage.type = type_;
    stage.bias = int_bias_ ? layer.int_bias.data() : nullptr;
    stage.per_channel = per_channel_;
    stage.requantization = QRequantization::kFloatBias;
    stage.multipliers = layer.acc_scales.data();
    stage.float_bias = float_bias_ ? layer.float_bias.data() : nullptr;
    stage.output_inverse_scale = layer.output_inverse_scale;
    const bool is_u8 = type_ == QOutputType::kU8;
    stage.zero_point = output_zero_point_;
    stage.min = relu_ ? output_zero_point_ : (is_u8 ? 0 : -128);
    stage.max = is_u8 ? 255 : 127;

    std::vector<int32_t> acc(m_ * n_);
    if (signed_) {
      QGemmS8S8S32Ref(reinterpret_cast<const int8_t*>(a_bytes.data()), m_, k_, k_, a_zero_point_,
                      b.data(), n_, n_, acc.data(), n_);
    } else {
      QGemmU8S8S32Ref(a_bytes.data(), m_, k_, k_, a_zero_point_, b.data(), n_, n_, acc.data(), n_);
    }
    const size_t size = QOutputElementSize(type_);
    std::vector<uint8_t> expected(m_ * ldc * size, 0xA5), actual(m_ * ldc * size, 0xA5);
    QOutputStageRef(acc.data(), m_, n_, n_, stage, expected.data(), ldc);
    if (signed_) {
      QGemmS8S8_OutputStage(reinterpret_cast<const int8_t*>(a_bytes.data()), m_, k_, a_zero_point_,
                            packed, stage, actual.data(), ldc);
    } else {
      QGemmU8S8_OutputStage(a_bytes.data(), m_, k_, a_zero_point_, packed, stage, actual.data(),
                            ldc);
    }
    for (size_t i = 0; i < m_ * ldc; ++i) {
      if (std::memcmp(&actual[i * size], &expected[i * size], size) != 0) {
        ADD_FAILURE() << Describe() << ": element [" << i / ldc << "][" << i % ldc
                      << "] differs (acc " << (i % ldc < n_ ? acc[i / ldc * n_ + i % ldc] : 0)
                      << ")" << (i % ldc >= n_ ? " (row padding overwritten)" : "");
        return;  // one mismatch per shape is enough to locate the bug
      }
    }
  }

  std::string Describe() const {
    std::ostringstream s;
    s << "QGemm" << (signed_ ? "S8S8" : "U8S8")
      << "_OutputStage kFloatBias target=" << QGemmKernelsTargetName() << " m=" << m_ << " n=" << n_
      << " k=" << k_ << " a_zero_point=" << a_zero_point_ << " type=" << static_cast<int>(type_)
      << " per_channel=" << per_channel_ << " float_bias=" << float_bias_
      << " int_bias=" << int_bias_ << " relu=" << relu_
      << " output_zero_point=" << output_zero_point_ << " seed=" << seed_;
    return s.str();
  }

 private:
  size_t m_ = 1, n_ = 1, k_ = 1;
  int32_t a_zero_point_ = 0;
  bool signed_ = false;
  QOutputType type_ = QOutputType::kU8;
  bool per_channel_ = false;
  bool float_bias_ = true;
  bool int_bias_ = false;
  bool relu_ = false;
  int32_t output_zero_point_ = 0;
  uint32_t seed_ = kBaseSeed;
};

constexpr int32_t kU8ZeroPoints[] = {0, 128, 255};
constexpr int32_t kS8ZeroPoints[] = {-128, 0, 127};

class FloatBiasOutputStageTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(FloatBiasOutputStageTest);

TEST_P(FloatBiasOutputStageTest, ReportsTarget) {
  std::cout << "qgemm dispatches to " << QGemmKernelsTargetName() << "\n";
  EXPECT_STREQ(QGemmKernelsTargetName(), hwy::TargetName(GetParam()));
}

// u8/s8 (kFloatBias) and f32 outputs, per-tensor and per-channel, with and without each bias
// and fused ReLU, over shapes around the row tiles (4 portable, 12 VNNI), the 16-column panels
// and the 32-column VNNI tile, and K around the 4-byte groups.
TEST_P(FloatBiasOutputStageTest, MatchesReferenceBitForBit) {
  const QOutputType kTypes[] = {QOutputType::kF32, QOutputType::kU8, QOutputType::kS8};
  const size_t kNs[] = {1, 7, 15, 16, 17, 31, 33, 64, 65};
  uint32_t seed = BaseSeed();
  size_t rotation = 0;
  for (QOutputType type : kTypes) {
    for (bool per_channel : {false, true}) {
      for (size_t m : {1, 3, 4, 5, 11, 12, 13, 25, 49}) {
        for (size_t n : kNs) {
          for (size_t k : {1, 3, 5, 64, 147, 577}) {
            ++rotation;
            const bool is_u8 = type != QOutputType::kS8;
            const bool signed_activations = rotation % 4 == 3;
            FloatBiasTester()
                .m(m)
                .n(n)
                .k(k)
                .signed_activations(signed_activations)
                .a_zero_point(signed_activations ? kS8ZeroPoints[rotation % 3]
                                                 : kU8ZeroPoints[rotation % 3])
                .type(type)
                .per_channel(per_channel)
                .float_bias(rotation % 5 != 0)
                .int_bias(rotation % 7 == 0)
                .relu(rotation % 2 == 0)
                .output_zero_point(is_u8 ? kU8ZeroPoints[(rotation / 3) % 3]
                                         : kS8ZeroPoints[(rotation / 3) % 3])
                .seed(++seed)
                .Test();
          }
        }
      }
    }
  }
}

// Exact halves round to even, and the clamp saturates at both ends: with K = 1, B = 1 and
// activations 0..255 at zero point 128, acc runs through -128 .. 127; scale 0.5, bias 0.25 and
// inverse scale 2 make every value acc + 0.5 (all exact in float), a tie for every acc.
TEST_P(FloatBiasOutputStageTest, TiesRoundToEvenAndClampsSaturate) {
  constexpr size_t kM = 256;
  std::vector<uint8_t> a(kM);
  for (size_t i = 0; i < kM; ++i) a[i] = static_cast<uint8_t>(i);
  const int8_t one = 1;
  const PackedWeights packed = PackWeights(&one, 1, 1, 1);
  const float scale = 0.5f, bias = 0.25f;
  for (QOutputType type : {QOutputType::kU8, QOutputType::kS8}) {
    for (int32_t zero_point : {-20, 0, 3}) {
      if (type == QOutputType::kU8 && zero_point < 0) continue;
      const int32_t lo = type == QOutputType::kU8 ? 0 : -100;  // -100: a clamp inside s8
      const int32_t hi = type == QOutputType::kU8 ? 100 : 127;
      QOutputStage stage;
      stage.type = type;
      stage.requantization = QRequantization::kFloatBias;
      stage.multipliers = &scale;
      stage.float_bias = &bias;
      stage.output_inverse_scale = 2.0f;
      stage.zero_point = zero_point;
      stage.min = lo;
      stage.max = hi;
      std::vector<uint8_t> out(kM);
      QGemmU8S8_OutputStage(a.data(), kM, 1, /*a_zero_point=*/128, packed, stage, out.data(), 1);
      for (size_t i = 0; i < kM; ++i) {
        const int32_t acc = static_cast<int32_t>(i) - 128;
        // acc + 0.5 rounded half to even is the even one of acc and acc + 1.
        const int32_t rounded = acc % 2 == 0 ? acc : acc + 1;
        const int32_t want = std::min(std::max(rounded + zero_point, lo), hi);
        const int32_t got =
            type == QOutputType::kU8 ? int32_t{out[i]} : int32_t{static_cast<int8_t>(out[i])};
        ASSERT_EQ(got, want) << "acc " << acc << " type " << static_cast<int>(type)
                             << " zero point " << zero_point << " on " << QGemmKernelsTargetName();
      }
    }
  }
}

// The fused stage is the f32 output (float(acc) * scale + float bias) followed by the stand-alone
// quantize kernel with scale 1 / inverse_scale, bit for bit: kernels/quantize multiplies by the
// float inverse of the scale, as PyTorch's quantize_val and fake_quantize do, so a layer run as
// int8 with this stage requantizes exactly as the fake-quant reference does from the same float
// layer output.
TEST_P(FloatBiasOutputStageTest, EqualsFloatOutputThenQuantize) {
  std::mt19937 rng(BaseSeed() + 500000);
  std::uniform_int_distribution<int32_t> u8(0, 255), s8(-128, 127);
  for (size_t trial = 0; trial < 20; ++trial) {
    const size_t m = 37, n = 40, k = 147;  // ResNet-like K, a partial last panel
    std::vector<uint8_t> a(m * k);
    for (uint8_t& v : a) v = static_cast<uint8_t>(u8(rng));
    std::vector<int8_t> b(k * n);
    for (int8_t& v : b) v = static_cast<int8_t>(s8(rng));
    const PackedWeights packed = PackWeights(b.data(), k, n, n);
    const FloatBiasLayer layer = DrawLayer(rng, n, k, /*per_channel=*/true);
    const int32_t zero_point = u8(rng);
    // The scale whose float inverse (1.0f / scale, as Quantize computes it) is the stage's.
    const float output_scale = 1.0f / layer.output_inverse_scale;
    QOutputStage stage;
    stage.per_channel = true;
    stage.multipliers = layer.acc_scales.data();
    stage.float_bias = layer.float_bias.data();
    stage.output_inverse_scale = 1.0f / output_scale;
    stage.zero_point = zero_point;
    stage.min = 0;
    stage.max = 255;
    stage.type = QOutputType::kF32;
    std::vector<float> float_out(m * n);
    QGemmU8S8_OutputStage(a.data(), m, k, 7, packed, stage, float_out.data(), n);
    std::vector<uint8_t> quantized(m * n), fused(m * n);
    Quantize(float_out.data(), m * n, AffineParams{output_scale, zero_point, 0, 255},
             quantized.data());
    stage.type = QOutputType::kU8;
    stage.requantization = QRequantization::kFloatBias;
    QGemmU8S8_OutputStage(a.data(), m, k, 7, packed, stage, fused.data(), n);
    ASSERT_EQ(fused, quantized) << "trial " << trial << " on " << QGemmKernelsTargetName();
  }
}

// The convolution carries the float bias and inverse scale into the stage: its output equals the
// seven-loop reference convolution followed by QOutputStageRef, with no thread pool and with two
// threads (which split the output channels into tiles: results must not depend on it).
TEST_P(FloatBiasOutputStageTest, ConvolutionCarriesFloatBias) {
  std::mt19937 rng(BaseSeed() + 600000);
  std::uniform_int_distribution<int32_t> u8(0, 255), s8(-128, 127);
  QConvShape shape;
  shape.batch = 2;
  shape.input_height = shape.input_width = 9;
  shape.input_channels = 16;
  shape.output_channels = 70;  // several panels, a partial last one
  shape.kernel_height = shape.kernel_width = 3;
  shape.padding_top = shape.padding_bottom = shape.padding_left = shape.padding_right = 1;
  const size_t k = 3 * 3 * shape.input_channels;
  std::vector<uint8_t> input(shape.batch * 9 * 9 * shape.input_channels);
  for (uint8_t& v : input) v = static_cast<uint8_t>(u8(rng));
  std::vector<int8_t> weights(shape.output_channels * k);
  for (int8_t& v : weights) v = static_cast<int8_t>(s8(rng));
  const FloatBiasLayer layer = DrawLayer(rng, shape.output_channels, k, /*per_channel=*/true);
  QConvOutput output;
  output.type = QOutputType::kU8;
  output.requantization = QRequantization::kFloatBias;
  output.multipliers = layer.acc_scales;
  output.float_bias = layer.float_bias;
  output.output_inverse_scale = layer.output_inverse_scale;
  output.zero_point = 17;
  output.min = 17;  // fused ReLU
  output.max = 255;
  const int32_t input_zero_point = 121;
  auto conv = QConvU8S8_NHWC::Create(shape, input_zero_point, weights.data(), nullptr, output);
  ASSERT_TRUE(conv.ok()) << conv.status();

  QOutputStage stage;
  stage.type = output.type;
  stage.per_channel = true;
  stage.requantization = output.requantization;
  stage.multipliers = output.multipliers.data();
  stage.float_bias = output.float_bias.data();
  stage.output_inverse_scale = output.output_inverse_scale;
  stage.zero_point = output.zero_point;
  stage.min = output.min;
  stage.max = output.max;
  const size_t outputs = shape.batch * 9 * 9 * shape.output_channels;
  std::vector<uint8_t> expected(outputs), single(outputs), threaded(outputs);
  QConvU8S8_NHWC_Ref(shape, input.data(), input_zero_point, weights.data(), stage, expected.data());
  conv->Run(input.data(), single.data(), nullptr);
  ThreadPool pool(2);
  conv->Run(input.data(), threaded.data(), &pool);
  EXPECT_EQ(single, expected) << "on " << QGemmKernelsTargetName();
  EXPECT_EQ(threaded, expected) << "on " << QGemmKernelsTargetName();
}

// Create refuses a float bias of the wrong length and a non-positive inverse output scale.
TEST(FloatBiasOutputStageValidationTest, ConvolutionRejectsBadParameters) {
  QConvShape shape;
  shape.input_channels = 4;
  shape.output_channels = 3;
  const std::vector<int8_t> weights(12, 1);
  QConvOutput output;
  output.requantization = QRequantization::kFloatBias;
  output.multipliers = {0.5f};
  output.float_bias = {1.0f, 2.0f};
  output.max = 255;
  const auto wrong_length = QConvU8S8_NHWC::Create(shape, 0, weights.data(), nullptr, output);
  EXPECT_FALSE(wrong_length.ok());
  EXPECT_NE(wrong_length.status().message().find("float_bias"), std::string::npos)
      << wrong_length.status();
  output.float_bias = {1.0f, 2.0f, 3.0f};
  output.output_inverse_scale = 0.0f;
  const auto zero_scale = QConvU8S8_NHWC::Create(shape, 0, weights.data(), nullptr, output);
  EXPECT_FALSE(zero_scale.ok());
  EXPECT_NE(zero_scale.status().message().find("output_inverse_scale"), std::string::npos)
      << zero_scale.status();
  output.output_inverse_scale = 2.0f;
  EXPECT_TRUE(QConvU8S8_NHWC::Create(shape, 0, weights.data(), nullptr, output).ok());
}

}  // namespace
}  // namespace qlab::kernels
