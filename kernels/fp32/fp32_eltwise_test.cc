// Tests of kernels/fp32/fp32_eltwise.h on every compiled Highway target. Each output is one or
// two float operations evaluated in the interpreter's order, so the scalar float expression is
// the oracle and the comparison is exact (no tolerance). Sizes sweep the vector widths and the
// 16384-element thread chunk; 1 and 2 threads; in-place use.

#include <pthreadpool.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/fp32/fp32_eltwise.h"
#include "kernels/threadpool/pthreadpool_ptr.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261203;


std::vector<float> RandomFloats(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

class Fp32EltwiseTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(Fp32EltwiseTest);

TEST_P(Fp32EltwiseTest, ReportsTarget) {
  EXPECT_STREQ(Fp32EltwiseTargetName(), hwy::TargetName(GetParam()));
}

TEST_P(Fp32EltwiseTest, AddAndReluExact) {
  uint32_t seed = kBaseSeed;
  for (size_t threads : {1, 2}) {
    const kernels::PthreadpoolPtr pool = kernels::MakePthreadpool(threads);
    for (size_t n : {1, 3, 15, 16, 17, 100, 16384, 16385, 40000}) {
      std::mt19937 rng(++seed);
      const std::vector<float> a = RandomFloats(n, rng), b = RandomFloats(n, rng);
      for (bool relu : {false, true}) {
        std::vector<float> out(n);
        Fp32Add(a.data(), b.data(), n, relu, out.data(), pool.get());
        for (size_t i = 0; i < n; ++i) {
          const float want = relu ? std::max(a[i] + b[i], 0.0f) : a[i] + b[i];
          ASSERT_EQ(out[i], want) << "n=" << n << " i=" << i << " relu=" << relu;
        }
      }
      std::vector<float> in_place = a;
      Fp32Relu(in_place.data(), n, in_place.data(), pool.get());
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(in_place[i], std::max(a[i], 0.0f)) << i;
    }
  }
}

TEST_P(Fp32EltwiseTest, ChannelAffineExact) {
  uint32_t seed = kBaseSeed + 100;
  for (size_t channels : {1, 3, 16, 17, 64}) {
    for (size_t pixels : {1, 7, 300, 2000}) {
      std::mt19937 rng(++seed);
      const std::vector<float> x = RandomFloats(pixels * channels, rng);
      const std::vector<float> scale = RandomFloats(channels, rng);
      const std::vector<float> shift = RandomFloats(channels, rng);
      for (bool relu : {false, true}) {
        std::vector<float> out(x.size());
        kernels::PthreadpoolPtr pool(pthreadpool_create(2));
        Fp32ChannelAffine(x.data(), pixels, channels, scale.data(), shift.data(), relu,
                          out.data(), pool.get());
        for (size_t p = 0; p < pixels; ++p) {
          for (size_t c = 0; c < channels; ++c) {
            const float product = x[p * channels + c] * scale[c];
            float want = product + shift[c];
            if (relu) want = std::max(want, 0.0f);
            ASSERT_EQ(out[p * channels + c], want)
                << "channels=" << channels << " pixels=" << pixels << " p=" << p << " c=" << c;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace qlab::kernels
