// Tests of kernels/qgemm: both GEMMs against the scalar triple loop (qgemm_ref.h) on every
// Highway target compiled in and supported by this CPU. On a VNNI machine that covers the
// AVX3_DL micro-kernel (vpdpbusd) and, on AVX3/AVX2/SSE4/SSSE3, the portable
// PromoteTo + ReorderWidenMulAccumulate path, and SCALAR's loops.
//
// Integer math is exact: no tolerance. Shapes sweep every blocking boundary (M = 1 ... 9 around
// the 8-row VNNI tile and 4-row portable tile, N around the 16-column panels and 32-column VNNI
// tile, K around the 4-byte groups, up to K = 4608), the zero points at both ends of each range,
// row strides larger than the rows, and constant extreme operands whose sums reach
// +-K * 255 * 128 (no saturation may occur anywhere).
//
// Randomness: each case draws from std::mt19937 seeded with kBaseSeed plus a case number, printed
// on failure with the shape; `--gtest_random_seed=N` replaces kBaseSeed to explore other data.

#include <cstdint>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/qgemm/qgemm_ref.h"

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

  void Test() const {
    std::mt19937 rng(seed_);
    const size_t lda = k_ + padding_, ldb = n_ + padding_, ldc = n_ + padding_;
    const int32_t a_min = signed_ ? -128 : 0, a_max = signed_ ? 127 : 255;
    std::uniform_int_distribution<int32_t> a_dist(a_min, a_max), b_dist(-128, 127);
    std::vector<uint8_t> a_bytes(m_ * lda);
    for (uint8_t& v : a_bytes) {
      v = static_cast<uint8_t>(constant_a_ ? *constant_a_ : a_dist(rng));
    }
    std::vector<int8_t> b(k_ * ldb);
    for (int8_t& v : b) v = static_cast<int8_t>(constant_b_ ? *constant_b_ : b_dist(rng));

    const PackedWeights packed = PackWeights(b.data(), k_, n_, ldb);
    std::vector<int32_t> actual(m_ * ldc, kSentinel), expected(m_ * ldc, kSentinel);
    if (signed_) {
      const int8_t* a = reinterpret_cast<const int8_t*>(a_bytes.data());
      QGemmS8S8S32(a, m_, lda, a_zero_point_, packed, actual.data(), ldc);
      QGemmS8S8S32Ref(a, m_, k_, lda, a_zero_point_, b.data(), n_, ldb, expected.data(), ldc);
    } else {
      QGemmU8S8S32(a_bytes.data(), m_, lda, a_zero_point_, packed, actual.data(), ldc);
      QGemmU8S8S32Ref(a_bytes.data(), m_, k_, lda, a_zero_point_, b.data(), n_, ldb,
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
  for (size_t m = 1; m <= 9; ++m) {
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

TEST_P(QGemmTest, EmptyMIsNoOp) {
  const int8_t b[3] = {1, 2, 3};
  const PackedWeights packed = PackWeights(b, 1, 3, 3);
  int32_t c[3] = {kSentinel, kSentinel, kSentinel};
  QGemmU8S8S32(nullptr, 0, 1, 0, packed, c, 3);
  for (int32_t v : c) EXPECT_EQ(v, kSentinel);
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
