// Tests of kernels/qgemm: both GEMMs against the scalar triple loop (qgemm_ref.h) on every
// Highway target compiled in and supported by this CPU. On a VNNI machine that covers the
// AVX3_DL micro-kernel (vpdpbusd) and, on AVX3/AVX2/SSE4/SSSE3, the portable
// PromoteTo + ReorderWidenMulAccumulate path, and SCALAR's loops. On a CPU with AMX-INT8 the
// AVX3_DL cases with M >= 16 and K >= 64 run the AMX tile path; QGemmAmxTest runs its own sweep
// around the AMX blocking twice, with AMX forced on and off (skipping only the forced-on half,
// with the reason, on CPUs without AMX).
//
// Integer math is exact: no tolerance. Shapes sweep every blocking boundary (M = 1 ... 13 around
// the 12-row VNNI tile and 4-row portable tile, N around the 16-column panels and 32-column VNNI
// tile, K around the 4-byte groups, up to K = 4608), the zero points at both ends of each range,
// row strides larger than the rows, and constant extreme operands whose sums reach
// +-K * 255 * 128 (no saturation may occur anywhere).
//
// Randomness: each case draws from std::mt19937 seeded with kBaseSeed plus a case number, printed
// on failure with the shape; `--gtest_random_seed=N` replaces kBaseSeed to explore other data.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/qgemm/amx_support.h"
#include "kernels/qgemm/output_stage.h"
#include "kernels/qgemm/output_stage_ref.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/qgemm/qgemm_ref.h"
#include "quant/qparams.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261123;
// Written into C's row padding; must survive every call (the kernels write exactly M x N).
constexpr int32_t kSentinel = 0x5EE5EE5E;

uint32_t BaseSeed() {
  const int flag = ::testing::GTEST_FLAG(random_seed);
  return flag != 0 ? static_cast<uint32_t>(flag) : kBaseSeed;
}

// QGemmTester: one GEMM call checked against the reference, XNNPACK style:
//   QGemmTester().m(3).n(17).k(65).a_zero_point(128).Test();
// Activations are uint8 unless signed_activations(true). By default A and B are uniform random
// over their whole ranges; constant_a()/constant_b() pin every element (for extreme sums).
class QGemmTester {
 public:
  QGemmTester& m(size_t v) { m_ = v; return *this; }
  QGemmTester& n(size_t v) { n_ = v; return *this; }
  QGemmTester& k(size_t v) { k_ = v; return *this; }
  QGemmTester& a_zero_point(int32_t v) { a_zero_point_ = v; return *this; }
  QGemmTester& signed_activations(bool v) { signed_ = v; return *this; }
  // Extra elements at the end of each row of A, B and C (strides lda = k + pad, ...).
  QGemmTester& stride_padding(size_t v) { padding_ = v; return *this; }
  QGemmTester& seed(uint32_t v) { seed_ = v; return *this; }
  QGemmTester& constant_a(int32_t v) { constant_a_ = v; return *this; }
  QGemmTester& constant_b(int32_t v) { constant_b_ = v; return *this; }
  // A starts on a 64-byte boundary (with lda % 64 == 0, the AMX tiles then read A in place).
  QGemmTester& align_a(bool v) { align_a_ = v; return *this; }

  void Test() const {
    std::mt19937 rng(seed_);
    const size_t lda = k_ + padding_, ldb = n_ + padding_, ldc = n_ + padding_;
    const int32_t a_min = signed_ ? -128 : 0, a_max = signed_ ? 127 : 255;
    std::uniform_int_distribution<int32_t> a_dist(a_min, a_max), b_dist(-128, 127);
    // A in a buffer with 64 bytes of slack, starting on a cache line when align_a().
    std::vector<uint8_t> a_storage(m_ * lda + 64);
    const size_t a_offset =
        align_a_ ? (64 - reinterpret_cast<uintptr_t>(a_storage.data()) % 64) % 64 : 0;
    uint8_t* const a_bytes = a_storage.data() + a_offset;
    for (size_t i = 0; i < m_ * lda; ++i) {
      a_bytes[i] = static_cast<uint8_t>(constant_a_ ? *constant_a_ : a_dist(rng));
    }
    std::vector<int8_t> b(k_ * ldb);
    for (int8_t& v : b) v = static_cast<int8_t>(constant_b_ ? *constant_b_ : b_dist(rng));

    const PackedWeights packed = PackWeights(b.data(), k_, n_, ldb);
    std::vector<int32_t> actual(m_ * ldc, kSentinel), expected(m_ * ldc, kSentinel);
    if (signed_) {
      const int8_t* a = reinterpret_cast<const int8_t*>(a_bytes);
      QGemmS8S8S32(a, m_, lda, a_zero_point_, packed, actual.data(), ldc);
      QGemmS8S8S32Ref(a, m_, k_, lda, a_zero_point_, b.data(), n_, ldb, expected.data(), ldc);
    } else {
      QGemmU8S8S32(a_bytes, m_, lda, a_zero_point_, packed, actual.data(), ldc);
      QGemmU8S8S32Ref(a_bytes, m_, k_, lda, a_zero_point_, b.data(), n_, ldb,
                      expected.data(), ldc);
    }
    for (size_t i = 0; i < m_; ++i) {
      for (size_t j = 0; j < ldc; ++j) {
        if (actual[i * ldc + j] != expected[i * ldc + j]) {
          ADD_FAILURE() << Describe() << ": C[" << i << "][" << j << "] = " << actual[i * ldc + j]
                        << ", expected " << expected[i * ldc + j]
                        << (j >= n_ ? " (row padding overwritten)" : "");
          return;  // one mismatch per shape is enough to locate the bug
        }
      }
    }
  }

  std::string Describe() const {
    std::ostringstream s;
    s << (signed_ ? "QGemmS8S8S32" : "QGemmU8S8S32") << " target=" << QGemmKernelsTargetName()
      << " m=" << m_ << " n=" << n_ << " k=" << k_ << " a_zero_point=" << a_zero_point_
      << " padding=" << padding_ << " seed=" << seed_;
    if (constant_a_) s << " constant_a=" << *constant_a_;
    if (constant_b_) s << " constant_b=" << *constant_b_;
    return s.str();
  }

 private:
  size_t m_ = 1, n_ = 1, k_ = 1;
  int32_t a_zero_point_ = 0;
  bool signed_ = false;
  size_t padding_ = 0;
  uint32_t seed_ = kBaseSeed;
  std::optional<int32_t> constant_a_, constant_b_;
  bool align_a_ = false;
};


// QGemmOutputStageTester: the fused output stage (output_stage.h) checked against the int32
// reference GEMM followed by QOutputStageRef, bit for bit (floats too: every stage is one IEEE
// operation). Multipliers are drawn so that the requantized values spread over about 4x the
// output range: both saturation ends and every rounding case occur. Fixed-point multipliers come
// from quant/qparams.h QuantizeMultiplier, as an operator would make them.
//   QGemmOutputStageTester().m(9).n(33).k(65).type(QOutputType::kU8).per_channel(true).Test();
class QGemmOutputStageTester {
 public:
  QGemmOutputStageTester& m(size_t v) { m_ = v; return *this; }
  QGemmOutputStageTester& n(size_t v) { n_ = v; return *this; }
  QGemmOutputStageTester& k(size_t v) { k_ = v; return *this; }
  QGemmOutputStageTester& a_zero_point(int32_t v) { a_zero_point_ = v; return *this; }
  QGemmOutputStageTester& signed_activations(bool v) { signed_ = v; return *this; }
  QGemmOutputStageTester& type(QOutputType v) { type_ = v; return *this; }
  QGemmOutputStageTester& requantization(QRequantization v) { requant_ = v; return *this; }
  QGemmOutputStageTester& per_channel(bool v) { per_channel_ = v; return *this; }
  QGemmOutputStageTester& bias(bool v) { bias_ = v; return *this; }
  // Fused ReLU: the clamp's lower bound is the output zero point.
  QGemmOutputStageTester& relu(bool v) { relu_ = v; return *this; }
  QGemmOutputStageTester& output_zero_point(int32_t v) { output_zero_point_ = v; return *this; }
  QGemmOutputStageTester& seed(uint32_t v) { seed_ = v; return *this; }

  void Test() const {
    std::mt19937 rng(seed_);
    const size_t ldc = n_ + 3;  // row padding must survive
    const int32_t a_min = signed_ ? -128 : 0, a_max = signed_ ? 127 : 255;
    std::uniform_int_distribution<int32_t> a_dist(a_min, a_max), b_dist(-128, 127);
    std::vector<uint8_t> a_bytes(m_ * k_);
    for (uint8_t& v : a_bytes) v = static_cast<uint8_t>(a_dist(rng));
    std::vector<int8_t> b(k_ * n_);
    for (int8_t& v : b) v = static_cast<int8_t>(b_dist(rng));
    const PackedWeights packed = PackWeights(b.data(), k_, n_, n_);

    // Typical |acc| ~ sqrt(K) * 74 * 74; a multiplier of 4 * 256 / (that) spreads the outputs.
    const double typical = std::sqrt(static_cast<double>(k_)) * 74.0 * 74.0 + 1.0;
    std::uniform_real_distribution<double> mult_dist(0.25 / typical, 4.0 * 256.0 / typical);
    std::uniform_int_distribution<int32_t> bias_dist(-static_cast<int32_t>(typical) * 4,
                                                     static_cast<int32_t>(typical) * 4);
    const size_t channels = per_channel_ ? n_ : 1;
    std::vector<float> multipliers(channels);
    std::vector<int32_t> fixed_multipliers(channels), shifts(channels);
    for (size_t c = 0; c < channels; ++c) {
      const double real = mult_dist(rng);
      multipliers[c] = static_cast<float>(real);
      const auto fixed = QuantizeMultiplier(real);
      ASSERT_TRUE(fixed.ok()) << fixed.status();
      fixed_multipliers[c] = fixed->multiplier;
      shifts[c] = fixed->shift;
    }
    std::vector<int32_t> bias(n_);
    for (int32_t& v : bias) v = bias_dist(rng);

    QOutputStage stage;
    stage.type = type_;
    stage.bias = bias_ ? bias.data() : nullptr;
    stage.per_channel = per_channel_;
    stage.requantization = requant_;
    stage.multipliers = multipliers.data();
    stage.fixed_multipliers = fixed_multipliers.data();
    stage.shifts = shifts.data();
    const bool is_u8 = type_ == QOutputType::kU8;
    stage.zero_point = output_zero_point_;
    stage.min = relu_ ? output_zero_point_ : (is_u8 ? 0 : -128);
    stage.max = is_u8 ? 255 : 127;

    std::vector<int32_t> acc(m_ * n_);
    if (signed_) {
      QGemmS8S8S32Ref(reinterpret_cast<const int8_t*>(a_bytes.data()), m_, k_, k_,
                      a_zero_point_, b.data(), n_, n_, acc.data(), n_);
    } else {
      QGemmU8S8S32Ref(a_bytes.data(), m_, k_, k_, a_zero_point_, b.data(), n_, n_, acc.data(),
                      n_);
    }
    const size_t size = QOutputElementSize(type_);
    std::vector<uint8_t> expected(m_ * ldc * size, 0xA5), actual(m_ * ldc * size, 0xA5);
    QOutputStageRef(acc.data(), m_, n_, n_, stage, expected.data(), ldc);
    if (signed_) {
      QGemmS8S8_OutputStage(reinterpret_cast<const int8_t*>(a_bytes.data()), m_, k_,
                            a_zero_point_, packed, stage, actual.data(), ldc);
    } else {
      QGemmU8S8_OutputStage(a_bytes.data(), m_, k_, a_zero_point_, packed, stage, actual.data(),
                            ldc);
    }
    for (size_t i = 0; i < m_ * ldc; ++i) {
      if (std::memcmp(&actual[i * size], &expected[i * size], size) != 0) {
        ADD_FAILURE() << Describe() << ": element [" << i / ldc << "][" << i % ldc
                      << "] differs (acc " << (i % ldc < n_ ? acc[i / ldc * n_ + i % ldc] : 0)
                      << ")" << (i % ldc >= n_ ? " (row padding overwritten)" : "");
        return;
      }
    }
  }

  std::string Describe() const {
    std::ostringstream s;
    s << "QGemm" << (signed_ ? "S8S8" : "U8S8") << "_OutputStage target="
      << QGemmKernelsTargetName() << " m=" << m_ << " n=" << n_ << " k=" << k_
      << " a_zero_point=" << a_zero_point_ << " type=" << static_cast<int>(type_)
      << " requant=" << static_cast<int>(requant_) << " per_channel=" << per_channel_
      << " bias=" << bias_ << " relu=" << relu_ << " output_zero_point=" << output_zero_point_
      << " seed=" << seed_;
    return s.str();
  }

 private:
  size_t m_ = 1, n_ = 1, k_ = 1;
  int32_t a_zero_point_ = 0;
  bool signed_ = false;
  QOutputType type_ = QOutputType::kU8;
  QRequantization requant_ = QRequantization::kFloat;
  bool per_channel_ = false;
  bool bias_ = true;
  bool relu_ = false;
  int32_t output_zero_point_ = 0;
  uint32_t seed_ = kBaseSeed;
};

// Zero points at both ends and the middle of each activation range.
constexpr int32_t kU8ZeroPoints[] = {0, 128, 255};
constexpr int32_t kS8ZeroPoints[] = {-128, 0, 127};

class QGemmTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(QGemmTest);

TEST_P(QGemmTest, ReportsTarget) {
  // Under the test harness, dispatch is restricted to this test's target.
  std::cout << "qgemm dispatches to " << QGemmKernelsTargetName() << "\n";
  EXPECT_STREQ(QGemmKernelsTargetName(), hwy::TargetName(GetParam()));
}

// Every (M, N, K) around the tile and group boundaries; zero points rotate through both ranges.
TEST_P(QGemmTest, SmallShapesMatchReference) {
  const size_t kNs[] = {1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65};
  const size_t kKs[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 63, 64, 65, 127};
  uint32_t seed = BaseSeed();
  size_t rotation = 0;
  for (size_t m = 1; m <= 13; ++m) {
    for (size_t n : kNs) {
      for (size_t k : kKs) {
        ++rotation;
        QGemmTester().m(m).n(n).k(k).a_zero_point(kU8ZeroPoints[rotation % 3]).seed(++seed).Test();
        QGemmTester()
            .m(m).n(n).k(k)
            .signed_activations(true)
            .a_zero_point(kS8ZeroPoints[rotation % 3])
            .seed(++seed)
            .Test();
      }
    }
  }
}

// Deep K (the ResNet50 range, up to 3 x 3 x 512 = 4608), with tails of every K % 4.
TEST_P(QGemmTest, LargeKMatchesReference) {
  const size_t kKs[] = {255, 576, 1153, 2306, 4607, 4608};
  uint32_t seed = BaseSeed() + 100000;
  size_t rotation = 0;
  for (size_t k : kKs) {
    for (size_t m : {1, 9}) {
      for (size_t n : {17, 64, 65}) {
        ++rotation;
        QGemmTester().m(m).n(n).k(k).a_zero_point(kU8ZeroPoints[rotation % 3]).seed(++seed).Test();
        QGemmTester()
            .m(m).n(n).k(k)
            .signed_activations(true)
            .a_zero_point(kS8ZeroPoints[rotation % 3])
            .seed(++seed)
            .Test();
      }
    }
  }
}

// Row strides beyond the rows: the kernels must read only K bytes per row of A and write only N
// outputs per row of C (the tester checks C's padding still holds its sentinel).
TEST_P(QGemmTest, StridedRowsMatchReference) {
  uint32_t seed = BaseSeed() + 200000;
  for (size_t padding : {1, 3, 16}) {
    for (size_t m : {1, 5, 8, 17}) {
      for (size_t n : {1, 17, 33}) {
        for (size_t k : {3, 65}) {
          QGemmTester().m(m).n(n).k(k).a_zero_point(7).stride_padding(padding).seed(++seed).Test();
          QGemmTester()
              .m(m).n(n).k(k)
              .signed_activations(true)
              .a_zero_point(-9)
              .stride_padding(padding)
              .seed(++seed)
              .Test();
        }
      }
    }
  }
}

// Constant extreme operands: |C| = K * 255 * 128 (150,405,120 at K = 4608) with both signs, so
// any saturating or 16-bit intermediate would show.
TEST_P(QGemmTest, ExtremeValuesDoNotSaturate) {
  struct Extreme {
    bool is_signed;
    int32_t a, zero_point, b;
  };
  const Extreme kExtremes[] = {
      {false, 255, 0, -128},  // -255 * 128 per term
      {false, 0, 255, -128},  // +255 * 128
      {false, 255, 0, 127},   {false, 0, 255, 127},
      {true, -128, 127, -128},  // (-255) * (-128) = +255 * 128
      {true, 127, -128, -128},  // -255 * 128
      {true, 127, -128, 127},   {true, -128, 127, 127},
  };
  for (const Extreme& e : kExtremes) {
    for (size_t k : {1, 4, 5, 4608}) {
      for (size_t m : {1, 9}) {
        QGemmTester()
            .m(m).n(33).k(k)
            .signed_activations(e.is_signed)
            .a_zero_point(e.zero_point)
            .constant_a(e.a)
            .constant_b(e.b)
            .Test();
      }
    }
  }
}

// Every output type and requantization mode, per-tensor and per-channel, bias and ReLU on and
// off (rotated), zero points at both extremes, over the given shapes: shared by the dispatched
// and the AMX-forced tests.
void TestEveryOutputStage(uint32_t seed, const std::vector<size_t>& ms,
                          const std::vector<size_t>& ns, const std::vector<size_t>& ks) {
  const QOutputType kTypes[] = {QOutputType::kS32, QOutputType::kF32, QOutputType::kU8,
                                QOutputType::kS8};
  size_t rotation = 0;
  for (QOutputType type : kTypes) {
    for (QRequantization requant : {QRequantization::kFloat, QRequantization::kFixedPoint}) {
      if (requant == QRequantization::kFixedPoint &&
          (type == QOutputType::kS32 || type == QOutputType::kF32)) {
        continue;  // those types do not requantize
      }
      for (bool per_channel : {false, true}) {
        for (size_t m : ms) {
          for (size_t n : ns) {
            for (size_t k : ks) {
              ++rotation;
              const bool is_u8 = type != QOutputType::kS8;
              QGemmOutputStageTester()
                  .m(m).n(n).k(k)
                  .signed_activations(rotation % 4 == 3)
                  .a_zero_point(rotation % 4 == 3 ? kS8ZeroPoints[rotation % 3]
                                                  : kU8ZeroPoints[rotation % 3])
                  .type(type)
                  .requantization(requant)
                  .per_channel(per_channel)
                  .bias(rotation % 5 != 0)
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
}

// Every output type, both requantization forms, per-tensor and per-channel, with and without
// bias and fused ReLU, over shapes around the tile and panel boundaries.
TEST_P(QGemmTest, OutputStageMatchesReference) {
  TestEveryOutputStage(BaseSeed() + 300000, {1, 3, 8, 12, 13, 25, 49}, {1, 15, 16, 17, 33, 64},
                       {1, 5, 64, 147});
}

// Indirect GEMM: rows assembled from segments scattered through a buffer (as a convolution's
// kernel taps are), against the plain GEMM of the gathered rows.
TEST_P(QGemmTest, IndirectGemmMatchesGatheredReference) {
  std::mt19937 rng(BaseSeed() + 400000);
  std::uniform_int_distribution<int32_t> u8(0, 255), s8(-128, 127);
  for (size_t taps : {1, 2, 9}) {
    for (size_t tap_k : {4, 8, 64}) {
      for (size_t m : {1, 7, 8, 9, 20}) {
        for (size_t n : {5, 32, 48}) {
          const size_t k = taps * tap_k;
          // A pool of segments; row m tap t picks a random one.
          const size_t pool_size = 13;
          std::vector<uint8_t> pool(pool_size * tap_k);
          for (uint8_t& v : pool) v = static_cast<uint8_t>(u8(rng));
          std::vector<const uint8_t*> indirection(m * taps);
          std::vector<uint8_t> gathered(m * k);
          std::uniform_int_distribution<size_t> pick(0, pool_size - 1);
          for (size_t i = 0; i < m * taps; ++i) {
            indirection[i] = pool.data() + pick(rng) * tap_k;
            std::memcpy(&gathered[i * tap_k], indirection[i], tap_k);
          }
          std::vector<int8_t> b(k * n);
          for (int8_t& v : b) v = static_cast<int8_t>(s8(rng));
          const PackedWeights packed = PackWeights(b.data(), k, n, n);
          std::vector<int32_t> expected(m * n), actual(m * n, kSentinel);
          QGemmU8S8S32Ref(gathered.data(), m, k, k, 77, b.data(), n, n, expected.data(), n);
          // Two calls on disjoint panel ranges cover the output, as two threads would.
          const QOutputStage stage;
          const size_t split = packed.panels / 2;
          QIGemmU8S8_OutputStage(indirection.data(), m, taps, 77, packed, 0, split, stage,
                                 actual.data(), n);
          QIGemmU8S8_OutputStage(indirection.data(), m, taps, 77, packed, split, packed.panels,
                                 stage, actual.data(), n);
          ASSERT_EQ(actual, expected) << "taps=" << taps << " tap_k=" << tap_k << " m=" << m
                                      << " n=" << n << " target=" << QGemmKernelsTargetName();
        }
      }
    }
  }
}

TEST_P(QGemmTest, EmptyMIsNoOp) {
  const int8_t b[3] = {1, 2, 3};
  const PackedWeights packed = PackWeights(b, 1, 3, 3);
  int32_t c[3] = {kSentinel, kSentinel, kSentinel};
  QGemmU8S8S32(nullptr, 0, 1, 0, packed, c, 3);
  for (int32_t v : c) EXPECT_EQ(v, kSentinel);
}

// ---------------------------------------------------------------------------------------------
// The AMX-INT8 path (qgemm_amx-inl.h) forced on ("Amx") and off ("Vnni": the AVX3_DL VNNI tiles
// on this kind of CPU) in the same binary, at the CPU's best target. AMX takes M >= 16 rows and
// K >= 64, so these shapes sit around its blocking instead of the VNNI tile's: 16-row A/C tiles,
// 32-row C blocks, 96-row gathers, 16-column panels in pairs, 64-byte K blocks (16 groups) with a
// zero-padded tail block when K / 4 is not a multiple of 16; smaller M and K are included too,
// to check they still go to the VNNI tiles correctly with AMX on.
class QGemmAmxTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam() && !AmxAvailable()) {
      GTEST_SKIP() << "this CPU/OS has no usable AMX-INT8: the Amx cases would run the VNNI path";
    }
    SetAmxEnabledForTesting(GetParam());
    // On a machine with AMX both settings must take effect, or one of the two paths goes untested.
    ASSERT_EQ(QGemmUsesAmx(), GetParam()) << "kernels: " << QGemmKernelsName();
  }
  void TearDown() override { SetAmxEnabledForTesting(true); }
};
INSTANTIATE_TEST_SUITE_P(Path, QGemmAmxTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "Amx" : "Vnni");
                         });

TEST_P(QGemmAmxTest, ReportsPath) {
  std::cout << "qgemm kernels: " << QGemmKernelsName() << "\n";
  EXPECT_EQ(std::string(QGemmKernelsName()).find("AMX") != std::string::npos, GetParam());
}

// M x N x K around every AMX boundary, u8 and s8 activations, zero points at both ends and the
// middle of each range.
TEST_P(QGemmAmxTest, ShapesAroundTilesMatchReference) {
  const size_t kMs[] = {1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 95, 96, 97, 113, 193};
  const size_t kNs[] = {1, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65};
  const size_t kKs[] = {1, 17, 63, 64, 65, 67, 127, 128, 129, 131, 192};
  uint32_t seed = BaseSeed() + 500000;
  size_t rotation = 0;
  for (size_t m : kMs) {
    for (size_t n : kNs) {
      for (size_t k : kKs) {
        ++rotation;
        QGemmTester().m(m).n(n).k(k).a_zero_point(kU8ZeroPoints[rotation % 3]).seed(++seed).Test();
        QGemmTester()
            .m(m)
            .n(n)
            .k(k)
            .signed_activations(true)
            .a_zero_point(kS8ZeroPoints[rotation % 3])
            .seed(++seed)
            .Test();
      }
    }
  }
}

// Deep K up to ResNet50's 4608, with tails of every length in K groups and bytes.
TEST_P(QGemmAmxTest, LargeKMatchesReference) {
  const size_t kKs[] = {255, 576, 1023, 1024, 1025, 1153, 2306, 4607, 4608};
  uint32_t seed = BaseSeed() + 600000;
  size_t rotation = 0;
  for (size_t k : kKs) {
    for (size_t m : {16, 33, 97}) {
      for (size_t n : {17, 64}) {
        ++rotation;
        QGemmTester().m(m).n(n).k(k).a_zero_point(kU8ZeroPoints[rotation % 3]).seed(++seed).Test();
        QGemmTester()
            .m(m)
            .n(n)
            .k(k)
            .signed_activations(true)
            .a_zero_point(kS8ZeroPoints[rotation % 3])
            .seed(++seed)
            .Test();
      }
    }
  }
}

// Cache-line aligned rows with K a multiple of 64: unsigned activations feed the A tiles in place
// (no gather) except in partial 16-row tiles, which are gathered; signed ones are always gathered.
TEST_P(QGemmAmxTest, AlignedRowsMatchReference) {
  uint32_t seed = BaseSeed() + 750000;
  for (size_t padding : {0, 64}) {
    for (size_t m : {16, 17, 32, 40, 48, 96, 97, 130}) {
      for (size_t k : {64, 128, 576}) {
        for (size_t n : {16, 40}) {
          QGemmTester().m(m).n(n).k(k).a_zero_point(131).stride_padding(padding).align_a(true)
              .seed(++seed).Test();
          QGemmTester().m(m).n(n).k(k).signed_activations(true).a_zero_point(3)
              .stride_padding(padding).align_a(true).seed(++seed).Test();
        }
      }
    }
  }
}

// Row strides beyond K: the gather must read only K bytes per row, the epilogue write only N.
TEST_P(QGemmAmxTest, StridedRowsMatchReference) {
  uint32_t seed = BaseSeed() + 700000;
  for (size_t padding : {1, 3, 64}) {
    for (size_t m : {16, 17, 40}) {
      for (size_t n : {17, 33}) {
        for (size_t k : {64, 65, 150}) {
          QGemmTester()
              .m(m)
              .n(n)
              .k(k)
              .a_zero_point(200)
              .stride_padding(padding)
              .seed(++seed)
              .Test();
          QGemmTester()
              .m(m)
              .n(n)
              .k(k)
              .signed_activations(true)
              .a_zero_point(-100)
              .stride_padding(padding)
              .seed(++seed)
              .Test();
        }
      }
    }
  }
}

// |C| = K * 255 * 128 with both signs: TDPBUSD's int32 sums must not saturate.
TEST_P(QGemmAmxTest, ExtremeValuesDoNotSaturate) {
  for (bool is_signed : {false, true}) {
    for (int32_t b : {-128, 127}) {
      for (size_t k : {64, 65, 4608}) {
        const int32_t low = is_signed ? -128 : 0, high = is_signed ? 127 : 255;
        QGemmTester()
            .m(33)
            .n(33)
            .k(k)
            .signed_activations(is_signed)
            .a_zero_point(low)
            .constant_a(high)
            .constant_b(b)
            .Test();
        QGemmTester()
            .m(33)
            .n(33)
            .k(k)
            .signed_activations(is_signed)
            .a_zero_point(high)
            .constant_a(low)
            .constant_b(b)
            .Test();
      }
    }
  }
}

// Every output type and requantization mode, per-tensor and per-channel, bias and ReLU on and
// off, through the AMX epilogue (whole 16-row tiles and partial ones).
TEST_P(QGemmAmxTest, OutputStageMatchesReference) {
  TestEveryOutputStage(BaseSeed() + 800000, {16, 17, 32, 45, 97}, {1, 16, 17, 33, 64},
                       {64, 147, 576});
}

// The convolution form: scattered tap segments, computed in two disjoint panel ranges (as two
// threads would), against the plain reference GEMM of the gathered rows.
TEST_P(QGemmAmxTest, IndirectGemmMatchesGatheredReference) {
  std::mt19937 rng(BaseSeed() + 900000);
  std::uniform_int_distribution<int32_t> u8(0, 255), s8(-128, 127);
  for (size_t taps : {1, 2, 9}) {
    for (size_t tap_k : {4, 12, 64, 68}) {
      for (size_t m : {16, 33, 96, 97}) {
        for (size_t n : {5, 48, 80}) {
          const size_t k = taps * tap_k;
          const size_t pool_size = 13;
          std::vector<uint8_t> pool(pool_size * tap_k);
          for (uint8_t& v : pool) v = static_cast<uint8_t>(u8(rng));
          std::vector<const uint8_t*> indirection(m * taps);
          std::vector<uint8_t> gathered(m * k);
          std::uniform_int_distribution<size_t> pick(0, pool_size - 1);
          for (size_t i = 0; i < m * taps; ++i) {
            indirection[i] = pool.data() + pick(rng) * tap_k;
            std::memcpy(&gathered[i * tap_k], indirection[i], tap_k);
          }
          std::vector<int8_t> b(k * n);
          for (int8_t& v : b) v = static_cast<int8_t>(s8(rng));
          const PackedWeights packed = PackWeights(b.data(), k, n, n);
          const int32_t zero_point = static_cast<int32_t>(u8(rng));
          std::vector<int32_t> expected(m * n), actual(m * n, kSentinel);
          QGemmU8S8S32Ref(gathered.data(), m, k, k, zero_point, b.data(), n, n, expected.data(), n);
          const QOutputStage stage;
          const size_t split = (packed.panels + 1) / 2;  // odd panel ranges on both sides
          QIGemmU8S8_OutputStage(indirection.data(), m, taps, zero_point, packed, 0, split, stage,
                                 actual.data(), n);
          QIGemmU8S8_OutputStage(indirection.data(), m, taps, zero_point, packed, split,
                                 packed.panels, stage, actual.data(), n);
          ASSERT_EQ(actual, expected) << "taps=" << taps << " tap_k=" << tap_k << " m=" << m
                                      << " n=" << n << " kernels=" << QGemmKernelsName();
        }
      }
    }
  }
}

// The packed layout and column sums, by hand: K = 5, N = 3 gives 2 groups (the second holding
// row 4 and three zero rows) of one panel.
TEST(QGemmPackTest, LayoutAndColumnSums) {
  // B[k][n] = 10 * k + n (k = 0..4, n = 0..2), negated in odd rows.
  int8_t b[5 * 3];
  for (int k = 0; k < 5; ++k) {
    for (int n = 0; n < 3; ++n) b[k * 3 + n] = static_cast<int8_t>((k % 2 ? -1 : 1) * (10 * k + n));
  }
  const PackedWeights p = PackWeights(b, 5, 3, 3);
  EXPECT_EQ(p.k_groups, 2u);
  EXPECT_EQ(p.panels, 1u);
  ASSERT_EQ(p.data.size(), 2u * 64);
  ASSERT_EQ(p.column_sums.size(), 16u);
  // Group 0, column 1: B[0..3][1] = 1, -11, 21, -31. Group 1, column 2: B[4][2] = 42, then 0s.
  EXPECT_EQ(p.data[1 * 4 + 0], 1);
  EXPECT_EQ(p.data[1 * 4 + 1], -11);
  EXPECT_EQ(p.data[1 * 4 + 2], 21);
  EXPECT_EQ(p.data[1 * 4 + 3], -31);
  EXPECT_EQ(p.data[64 + 2 * 4 + 0], 42);
  EXPECT_EQ(p.data[64 + 2 * 4 + 1], 0);
  // Column n sums 0 - 10 + 20 - 30 + 40 = 20 plus n * (1 - 1 + 1 - 1 + 1) = n.
  EXPECT_EQ(p.column_sums[0], 20);
  EXPECT_EQ(p.column_sums[1], 21);
  EXPECT_EQ(p.column_sums[2], 22);
  for (size_t c = 3; c < 16; ++c) EXPECT_EQ(p.column_sums[c], 0);
  for (size_t c = 3; c < 16; ++c) EXPECT_EQ(p.data[c * 4], 0);
}

}  // namespace
}  // namespace qlab::kernels
