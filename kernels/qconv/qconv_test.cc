// Tests of kernels/qconv: QConvU8S8_NHWC against the seven-loop reference (qconv_ref.h) on every
// Highway target compiled in and supported by this CPU (the GEMM micro-kernel underneath is the
// dispatched part: VNNI on AVX3_DL, the portable path on AVX3/AVX2/SSE4/SSSE3, SCALAR's loops),
// with 1 and 2 threads, which must also agree with each other. QConvAmxTest runs every ResNet
// conv geometry at sizes that reach the AMX tile path (M >= 16 output pixels, K >= 64) with AMX
// forced on and off in the same binary.
//
// Integer math is exact, and the output stage's float steps are single IEEE operations: no
// tolerance anywhere. Shapes: every convolution kind of ResNet18/50 (7x7/2 stem on 3 channels,
// 3x3 /1 and /2, 1x1 /1 and /2) at small spatial sizes, odd channel counts around the 4-byte K
// groups and 16-column panels, batches 1-3, input zero points 0, 128 and 255, every output type,
// per-tensor and per-channel fp32 and fixed-point requantization, with and without fused ReLU.
//
// Randomness: std::mt19937 seeded with kBaseSeed plus a case number (printed on failure);
// `--gtest_random_seed=N` replaces kBaseSeed.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/qconv/qconv.h"
#include "kernels/qconv/qconv_ref.h"
#include "kernels/qgemm/amx_support.h"
#include "kernels/qgemm/output_stage.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/threadpool/threadpool.h"
#include "quant/qparams.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261124;

uint32_t BaseSeed() {
  const int flag = ::testing::GTEST_FLAG(random_seed);
  return flag != 0 ? static_cast<uint32_t>(flag) : kBaseSeed;
}

// QConvTester, XNNPACK style:
//   QConvTester().input_size(9, 9).kernel(3, 3).stride(2).padding(1).channels(17, 33).Test();
class QConvTester {
 public:
  QConvTester& input_size(size_t h, size_t w) { s_.input_height = h; s_.input_width = w; return *this; }
  QConvTester& kernel(size_t h, size_t w) { s_.kernel_height = h; s_.kernel_width = w; return *this; }
  QConvTester& stride(size_t v) { s_.stride_height = s_.stride_width = v; return *this; }
  QConvTester& padding(size_t v) {
    s_.padding_top = s_.padding_left = s_.padding_bottom = s_.padding_right = v;
    return *this;
  }
  QConvTester& padding(size_t top, size_t left, size_t bottom, size_t right) {
    s_.padding_top = top; s_.padding_left = left; s_.padding_bottom = bottom;
    s_.padding_right = right;
    return *this;
  }
  QConvTester& channels(size_t in, size_t out) {
    s_.input_channels = in; s_.output_channels = out; return *this;
  }
  QConvTester& batch(size_t v) { s_.batch = v; return *this; }
  QConvTester& input_zero_point(int32_t v) { input_zero_point_ = v; return *this; }
  QConvTester& output_type(QOutputType v) { type_ = v; return *this; }
  QConvTester& requantization(QRequantization v) { requant_ = v; return *this; }
  QConvTester& per_channel(bool v) { per_channel_ = v; return *this; }
  QConvTester& relu(bool v) { relu_ = v; return *this; }
  QConvTester& bias(bool v) { bias_ = v; return *this; }
  QConvTester& seed(uint32_t v) { seed_ = v; return *this; }

  void Test() const {
    std::mt19937 rng(seed_);
    std::uniform_int_distribution<int32_t> u8(0, 255), s8(-128, 127);
    std::vector<uint8_t> input(s_.batch * s_.input_height * s_.input_width * s_.input_channels);
    for (uint8_t& v : input) v = static_cast<uint8_t>(u8(rng));
    const size_t k = s_.kernel_height * s_.kernel_width * s_.input_channels;
    std::vector<int8_t> weights(s_.output_channels * k);
    for (int8_t& v : weights) v = static_cast<int8_t>(s8(rng));
    const double typical = std::sqrt(static_cast<double>(k)) * 74.0 * 74.0 + 1.0;
    std::uniform_int_distribution<int32_t> bias_dist(-static_cast<int32_t>(typical) * 2,
                                                     static_cast<int32_t>(typical) * 2);
    std::vector<int32_t> bias(s_.output_channels);
    for (int32_t& v : bias) v = bias_dist(rng);

    QConvOutput out;
    out.type = type_;
    out.requantization = requant_;
    std::uniform_real_distribution<double> mult_dist(0.25 / typical, 3.0 * 256.0 / typical);
    for (size_t c = 0; c < (per_channel_ ? s_.output_channels : 1); ++c) {
      const double real = mult_dist(rng);
      out.multipliers.push_back(static_cast<float>(real));
      const auto fixed = QuantizeMultiplier(real);
      ASSERT_TRUE(fixed.ok()) << fixed.status();
      out.fixed_multipliers.push_back(fixed->multiplier);
      out.shifts.push_back(fixed->shift);
    }
    const bool is_u8 = type_ != QOutputType::kS8;
    out.zero_point = is_u8 ? static_cast<int32_t>(seed_ % 256) : static_cast<int32_t>(seed_ % 256) - 128;
    out.min = relu_ ? out.zero_point : (is_u8 ? 0 : -128);
    out.max = is_u8 ? 255 : 127;

    const auto conv = QConvU8S8_NHWC::Create(s_, input_zero_point_, weights.data(),
                                             bias_ ? bias.data() : nullptr, out);
    ASSERT_TRUE(conv.ok()) << conv.status() << " " << Describe();

    QOutputStage stage;
    stage.type = type_;
    stage.bias = bias_ ? bias.data() : nullptr;
    stage.per_channel = per_channel_;
    stage.requantization = requant_;
    stage.multipliers = out.multipliers.data();
    stage.fixed_multipliers = out.fixed_multipliers.data();
    stage.shifts = out.shifts.data();
    stage.zero_point = out.zero_point;
    stage.min = out.min;
    stage.max = out.max;
    const size_t outputs = s_.batch * s_.output_height() * s_.output_width() * s_.output_channels;
    const size_t bytes = outputs * QOutputElementSize(type_);
    std::vector<uint8_t> expected(bytes);
    QConvU8S8_NHWC_Ref(s_, input.data(), input_zero_point_, weights.data(), stage,
                       expected.data());

    for (size_t threads : {1, 2}) {
      ThreadPool pool(threads);
      // One guard element past the end must survive.
      std::vector<uint8_t> actual(bytes + 4, 0xA5);
      conv->Run(input.data(), actual.data(), &pool);
      for (size_t i = 0; i < bytes; ++i) {
        if (actual[i] != expected[i]) {
          ADD_FAILURE() << Describe() << " threads=" << threads << ": output byte " << i
                        << " (element " << i / QOutputElementSize(type_) << ", channel "
                        << (i / QOutputElementSize(type_)) % s_.output_channels << ") is "
                        << int{actual[i]} << ", expected " << int{expected[i]};
          return;
        }
      }
      for (size_t i = bytes; i < bytes + 4; ++i) {
        ASSERT_EQ(actual[i], 0xA5) << Describe() << ": wrote past the output";
      }
    }
  }

  std::string Describe() const {
    std::ostringstream o;
    o << "QConvU8S8_NHWC target=" << QGemmKernelsTargetName() << " batch=" << s_.batch
      << " input=" << s_.input_height << "x" << s_.input_width << "x" << s_.input_channels
      << " kernel=" << s_.kernel_height << "x" << s_.kernel_width << " stride="
      << s_.stride_height << "," << s_.stride_width << " padding=" << s_.padding_top << ","
      << s_.padding_left << "," << s_.padding_bottom << "," << s_.padding_right
      << " cout=" << s_.output_channels << " input_zero_point=" << input_zero_point_
      << " type=" << static_cast<int>(type_) << " requant=" << static_cast<int>(requant_)
      << " per_channel=" << per_channel_ << " relu=" << relu_ << " bias=" << bias_
      << " seed=" << seed_;
    return o.str();
  }

 private:
  QConvShape s_;
  int32_t input_zero_point_ = 128;
  QOutputType type_ = QOutputType::kU8;
  QRequantization requant_ = QRequantization::kFloat;
  bool per_channel_ = true;
  bool relu_ = true;
  bool bias_ = true;
  uint32_t seed_ = kBaseSeed;
};

constexpr int32_t kZeroPoints[] = {0, 128, 255};

class QConvTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(QConvTest);

// Every ResNet18/50 convolution kind, channels reduced, at small odd and even spatial sizes.
TEST_P(QConvTest, ResNetShapesMatchReference) {
  struct Kind {
    size_t kernel, stride, padding, cin, cout;
  };
  const Kind kKinds[] = {
      {7, 2, 3, 3, 64},     // stem (im2col path: 3 channels)
      {3, 1, 1, 64, 64},    // conv2_x 3x3
      {3, 2, 1, 64, 128},   // conv3_1 3x3/2
      {1, 2, 0, 64, 128},   // downsample 1x1/2
      {1, 1, 0, 64, 256},   // ResNet50 bottleneck expand
      {1, 1, 0, 256, 64},   // ResNet50 bottleneck reduce
      {3, 1, 1, 128, 128},  // conv3_x 3x3
  };
  uint32_t seed = BaseSeed();
  for (const Kind& kind : kKinds) {
    for (size_t size : {5, 8, 9}) {
      for (size_t batch : {1, 2}) {
        ++seed;
        QConvTester()
            .input_size(size, size + 1)
            .kernel(kind.kernel, kind.kernel)
            .stride(kind.stride)
            .padding(kind.padding)
            .channels(kind.cin, kind.cout)
            .batch(batch)
            .input_zero_point(kZeroPoints[seed % 3])
            .seed(seed)
            .Test();
      }
    }
  }
}

// The deepest ResNet layers at their real channel counts (small spatial size): K = 4608.
TEST_P(QConvTest, DeepLayersMatchReference) {
  QConvTester().input_size(3, 3).kernel(3, 3).padding(1).channels(512, 512).seed(BaseSeed() + 1).Test();
  QConvTester().input_size(4, 4).kernel(3, 3).stride(2).padding(1).channels(256, 512)
      .seed(BaseSeed() + 2).Test();
  QConvTester().input_size(4, 4).kernel(1, 1).channels(2048, 512).per_channel(false)
      .seed(BaseSeed() + 3).Test();
}

// Odd channel counts around the K groups (cin % 4: pointer vs im2col path) and the panels.
TEST_P(QConvTest, OddChannelsMatchReference) {
  uint32_t seed = BaseSeed() + 1000;
  for (size_t cin : {1, 3, 4, 5, 7, 8, 12, 17}) {
    for (size_t cout : {1, 5, 16, 17, 33}) {
      for (size_t kernel : {1, 3}) {
        for (size_t stride : {1, 2}) {
          ++seed;
          QConvTester()
              .input_size(6, 7)
              .kernel(kernel, kernel)
              .stride(stride)
              .padding(kernel / 2)
              .channels(cin, cout)
              .batch(1 + seed % 3)
              .input_zero_point(kZeroPoints[seed % 3])
              .per_channel(seed % 2 == 0)
              .relu(seed % 4 < 2)
              .seed(seed)
              .Test();
        }
      }
    }
  }
}

// Asymmetric padding and non-square kernels (as TF "SAME" padding produces).
TEST_P(QConvTest, AsymmetricPaddingMatchesReference) {
  uint32_t seed = BaseSeed() + 2000;
  QConvTester().input_size(8, 8).kernel(3, 3).stride(2).padding(0, 0, 1, 1).channels(16, 20)
      .seed(++seed).Test();
  QConvTester().input_size(7, 9).kernel(1, 3).padding(0, 1, 0, 1).channels(8, 24).seed(++seed)
      .Test();
  QConvTester().input_size(7, 9).kernel(5, 3).stride(2).padding(2, 0, 1, 2).channels(3, 9)
      .seed(++seed).Test();
}

// Every output type and requantization form on the 3x3 and stem paths.
TEST_P(QConvTest, OutputStagesMatchReference) {
  uint32_t seed = BaseSeed() + 3000;
  const QOutputType kTypes[] = {QOutputType::kS32, QOutputType::kF32, QOutputType::kU8,
                                QOutputType::kS8};
  for (QOutputType type : kTypes) {
    for (QRequantization requant : {QRequantization::kFloat, QRequantization::kFixedPoint}) {
      for (bool per_channel : {false, true}) {
        for (bool relu : {false, true}) {
          for (size_t cin : {3, 32}) {
            ++seed;
            QConvTester()
                .input_size(7, 7)
                .kernel(cin == 3 ? 7 : 3, cin == 3 ? 7 : 3)
                .stride(cin == 3 ? 2 : 1)
                .padding(cin == 3 ? 3 : 1)
                .channels(cin, 40)
                .output_type(type)
                .requantization(requant)
                .per_channel(per_channel)
                .relu(relu)
                .bias(seed % 3 != 0)
                .input_zero_point(kZeroPoints[seed % 3])
                .seed(seed)
                .Test();
          }
        }
      }
    }
  }
}

// Many output pixels (several row blocks) so that both threads get tiles of every kind.
TEST_P(QConvTest, LargeSpatialMatchesReference) {
  QConvTester().input_size(23, 21).kernel(3, 3).padding(1).channels(16, 48).batch(2)
      .seed(BaseSeed() + 4000).Test();
  QConvTester().input_size(30, 30).kernel(7, 7).stride(2).padding(3).channels(3, 64)
      .seed(BaseSeed() + 4001).Test();
}

// ---------------------------------------------------------------------------------------------
// AMX forced on ("Amx") and off ("Vnni") at the CPU's best target; the forced-on half is skipped,
// with the reason, only on CPUs without AMX.
class QConvAmxTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam() && !AmxAvailable()) {
      GTEST_SKIP() << "this CPU/OS has no usable AMX-INT8: the Amx cases would run the VNNI path";
    }
    SetAmxEnabledForTesting(GetParam());
    ASSERT_EQ(QGemmUsesAmx(), GetParam()) << "kernels: " << QGemmKernelsName();
  }
  void TearDown() override { SetAmxEnabledForTesting(true); }
};
INSTANTIATE_TEST_SUITE_P(Path, QConvAmxTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "Amx" : "Vnni");
                         });

// Every convolution kind of ResNet18/50 at spatial sizes giving several 32-row AMX blocks and a
// partial one (and, at 2 threads, tiles split over channels), batches 1 and 2, input zero points
// 0 / 128 / 255.
TEST_P(QConvAmxTest, ResNetGeometriesMatchReference) {
  struct Kind {
    size_t kernel, stride, padding, cin, cout, size;
  };
  const Kind kKinds[] = {
      {7, 2, 3, 3, 64, 20},     // stem: im2col rows, K = 147 (a tail K block)
      {3, 1, 1, 64, 64, 10},    // layer1 3x3
      {3, 2, 1, 64, 128, 13},   // layer2.0 3x3/2
      {3, 1, 1, 128, 128, 7},   // layer2 3x3
      {1, 2, 0, 64, 128, 13},   // downsample 1x1/2
      {1, 1, 0, 64, 256, 9},    // ResNet50 expand 1x1
      {1, 1, 0, 256, 64, 9},    // ResNet50 reduce 1x1
      {3, 1, 1, 512, 512, 5},   // layer4 3x3: K = 4608
      {1, 1, 0, 2048, 512, 4},  // ResNet50 layer4 reduce: M = 16, K = 2048
      {3, 1, 1, 20, 40, 8},     // cin % 16 != 0: taps of 5 groups, a tail K block
  };
  uint32_t seed = BaseSeed() + 5000;
  for (const Kind& kind : kKinds) {
    for (size_t batch : {1, 2}) {
      ++seed;
      QConvTester()
          .input_size(kind.size, kind.size + 1)
          .kernel(kind.kernel, kind.kernel)
          .stride(kind.stride)
          .padding(kind.padding)
          .channels(kind.cin, kind.cout)
          .batch(batch)
          .input_zero_point(kZeroPoints[seed % 3])
          .per_channel(seed % 2 == 0)
          .seed(seed)
          .Test();
    }
  }
  // Asymmetric padding ("SAME" style) on a 3x3/2.
  QConvTester()
      .input_size(12, 12)
      .kernel(3, 3)
      .stride(2)
      .padding(0, 0, 1, 1)
      .channels(64, 48)
      .seed(++seed)
      .Test();
}

// Every output type and requantization mode through the AMX epilogue, on the 3x3 and stem
// paths.
TEST_P(QConvAmxTest, OutputStagesMatchReference) {
  uint32_t seed = BaseSeed() + 6000;
  const QOutputType kTypes[] = {QOutputType::kS32, QOutputType::kF32, QOutputType::kU8,
                                QOutputType::kS8};
  for (QOutputType type : kTypes) {
    for (QRequantization requant : {QRequantization::kFloat, QRequantization::kFixedPoint}) {
      for (bool per_channel : {false, true}) {
        for (size_t cin : {3, 64}) {
          ++seed;
          QConvTester()
              .input_size(11, 11)
              .kernel(cin == 3 ? 7 : 3, cin == 3 ? 7 : 3)
              .stride(cin == 3 ? 2 : 1)
              .padding(cin == 3 ? 3 : 1)
              .channels(cin, 40)
              .output_type(type)
              .requantization(requant)
              .per_channel(per_channel)
              .relu(seed % 2 == 0)
              .bias(seed % 3 != 0)
              .input_zero_point(kZeroPoints[seed % 3])
              .seed(seed)
              .Test();
        }
      }
    }
  }
}

TEST(QConvCreateTest, RejectsInvalidArguments) {
  const int8_t weights[64] = {};
  QConvShape shape;
  shape.input_height = shape.input_width = 4;
  shape.input_channels = 2;
  shape.output_channels = 2;
  QConvOutput out;
  out.multipliers = {0.5f};
  EXPECT_TRUE(QConvU8S8_NHWC::Create(shape, 0, weights, nullptr, out).ok());
  EXPECT_EQ(QConvU8S8_NHWC::Create(shape, 256, weights, nullptr, out).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(QConvU8S8_NHWC::Create(shape, 0, nullptr, nullptr, out).ok());
  QConvShape bad = shape;
  bad.stride_height = 0;
  EXPECT_FALSE(QConvU8S8_NHWC::Create(bad, 0, weights, nullptr, out).ok());
  bad = shape;
  bad.padding_top = 1;  // >= kernel 1
  EXPECT_FALSE(QConvU8S8_NHWC::Create(bad, 0, weights, nullptr, out).ok());
  QConvOutput bad_out = out;
  bad_out.multipliers = {0.5f, 0.5f, 0.5f};  // neither 1 nor 2 channels
  EXPECT_FALSE(QConvU8S8_NHWC::Create(shape, 0, weights, nullptr, bad_out).ok());
  bad_out = out;
  bad_out.multipliers = {-1.0f};
  EXPECT_FALSE(QConvU8S8_NHWC::Create(shape, 0, weights, nullptr, bad_out).ok());
  bad_out = out;
  bad_out.min = 10;
  bad_out.max = 5;
  EXPECT_FALSE(QConvU8S8_NHWC::Create(shape, 0, weights, nullptr, bad_out).ok());
  bad_out = out;
  bad_out.requantization = QRequantization::kFixedPoint;
  bad_out.fixed_multipliers = {1};
  bad_out.shifts = {31};
  EXPECT_FALSE(QConvU8S8_NHWC::Create(shape, 0, weights, nullptr, bad_out).ok());
}

}  // namespace
}  // namespace qlab::kernels
