// Tests of kernels/fp32/fp32_pool.h against fp32_ref.h's double loops on every compiled Highway
// target: max pooling exactly (a max is one of the inputs), average pooling within
// Fp32SumTolerance(window, sum |x| / divisor) (float32 sum of the window, then one division),
// over channel counts around the vector widths (1, 3, 15, 16, 17, 64), kernels 1-3, strides,
// paddings, count_include_pad both ways, ceil-mode-like output sizes whose last window hangs over
// the edge, batches, and 1 vs 2 threads (bit-identical: threads split output rows).
//
// Randomness: std::mt19937 seeded with kBaseSeed plus a case number, printed on failure.

#include <pthreadpool.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/fp32/fp32_pool.h"
#include "kernels/fp32/fp32_ref.h"
#include "kernels/threadpool/pthreadpool_ptr.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261202;


// Output size as PyTorch computes it (quant/graph/graph.cc), floor or ceil mode.
size_t OutSize(size_t in, size_t kernel, size_t stride, size_t pad, bool ceil_mode) {
  const size_t span = in + 2 * pad - kernel;
  size_t out = (span + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Pool2dTester: one pooling call checked against the reference, e.g.
//   Pool2dTester().max(true).input(9, 9, 17).kernel(3).stride(2).pad(1).Test();
class Pool2dTester {
 public:
  Pool2dTester& max(bool v) { max_ = v; return *this; }
  Pool2dTester& batch(size_t v) { batch_ = v; return *this; }
  Pool2dTester& input(size_t h, size_t w, size_t c) { h_ = h; w_ = w; c_ = c; return *this; }
  Pool2dTester& kernel(size_t v) { kernel_ = v; return *this; }
  Pool2dTester& stride(size_t v) { stride_ = v; return *this; }
  Pool2dTester& pad(size_t v) { pad_ = v; return *this; }
  Pool2dTester& ceil_mode(bool v) { ceil_ = v; return *this; }
  Pool2dTester& count_include_pad(bool v) { include_pad_ = v; return *this; }
  Pool2dTester& threads(size_t v) { threads_ = v; return *this; }
  Pool2dTester& seed(uint32_t v) { seed_ = v; return *this; }

  std::vector<float> Test() const {
    Fp32PoolGeometry g;
    g.batch = batch_;
    g.in_h = h_;
    g.in_w = w_;
    g.channels = c_;
    g.kernel_h = g.kernel_w = kernel_;
    g.stride_h = g.stride_w = stride_;
    g.pad_h = g.pad_w = pad_;
    g.out_h = OutSize(h_, kernel_, stride_, pad_, ceil_);
    g.out_w = OutSize(w_, kernel_, stride_, pad_, ceil_);
    g.count_include_pad = include_pad_;
    std::mt19937 rng(seed_);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> input(batch_ * h_ * w_ * c_);
    for (float& x : input) x = dist(rng);
    const size_t outputs = batch_ * g.out_h * g.out_w * c_;
    std::vector<float> output(outputs);
    const kernels::PthreadpoolPtr pool = kernels::MakePthreadpool(threads_);
    if (max_) {
      Fp32MaxPool2dNhwc(g, input.data(), output.data(), pool.get());
    } else {
      Fp32AvgPool2dNhwc(g, input.data(), output.data(), pool.get());
    }
    std::vector<double> expected(outputs), magnitude(outputs);
    Fp32Pool2dNhwcRef(max_, input.data(), batch_, h_, w_, c_, kernel_, kernel_, stride_, stride_,
                      pad_, pad_, g.out_h, g.out_w, include_pad_, expected.data(),
                      magnitude.data());
    for (size_t i = 0; i < outputs; ++i) {
      const double tolerance = max_ ? 0.0 : Fp32SumTolerance(kernel_ * kernel_, magnitude[i]);
      if (!(std::fabs(output[i] - expected[i]) <= tolerance)) {
        ADD_FAILURE() << Describe() << ": output " << i << " = " << output[i] << ", expected "
                      << expected[i] << " (tolerance " << tolerance << ")";
        break;
      }
    }
    return output;
  }

  std::string Describe() const {
    std::ostringstream s;
    s << (max_ ? "Fp32MaxPool2dNhwc" : "Fp32AvgPool2dNhwc") << " target=" << Fp32PoolTargetName()
      << " batch=" << batch_ << " input=" << h_ << "x" << w_ << "x" << c_ << " kernel=" << kernel_
      << " stride=" << stride_ << " pad=" << pad_ << " ceil_mode=" << ceil_
      << " count_include_pad=" << include_pad_ << " threads=" << threads_ << " seed=" << seed_;
    return s.str();
  }

 private:
  bool max_ = true;
  size_t batch_ = 1, h_ = 5, w_ = 5, c_ = 1, kernel_ = 2, stride_ = 2, pad_ = 0;
  bool ceil_ = false, include_pad_ = true;
  size_t threads_ = 1;
  uint32_t seed_ = kBaseSeed;
};

class Fp32PoolTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(Fp32PoolTest);

TEST_P(Fp32PoolTest, ReportsTarget) {
  EXPECT_STREQ(Fp32PoolTargetName(), hwy::TargetName(GetParam()));
}

TEST_P(Fp32PoolTest, ShapesMatchReference) {
  uint32_t seed = kBaseSeed;
  for (bool max : {true, false}) {
    for (size_t c : {1, 3, 15, 16, 17, 64}) {
      for (size_t kernel : {1, 2, 3}) {
        for (size_t stride : {1, 2}) {
          for (size_t pad = 0; pad <= kernel / 2; ++pad) {
            for (bool ceil_mode : {false, true}) {
              ++seed;
              Pool2dTester()
                  .max(max)
                  .batch(1 + seed % 2)
                  .input(4 + seed % 5, 3 + seed % 6, c)
                  .kernel(kernel)
                  .stride(stride)
                  .pad(pad)
                  .ceil_mode(ceil_mode)
                  .count_include_pad(seed % 2 == 0)
                  .seed(seed)
                  .Test();
            }
          }
        }
      }
    }
  }
}

// ResNet's stem max pool (3x3/2, pad 1) at 112x112x64 -> 56x56; two threads bit-identical.
TEST_P(Fp32PoolTest, StemMaxPoolTwoThreads) {
  const Pool2dTester tester = Pool2dTester().input(112, 112, 64).kernel(3).stride(2).pad(1);
  const std::vector<float> one = Pool2dTester(tester).threads(1).Test();
  const std::vector<float> two = Pool2dTester(tester).threads(2).Test();
  EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
}

TEST_P(Fp32PoolTest, GlobalAvgPoolMatchesReference) {
  uint32_t seed = kBaseSeed + 1000;
  for (size_t c : {1, 10, 16, 17, 512}) {
    for (size_t pixels : {1, 49, 64}) {
      std::mt19937 rng(++seed);
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      const size_t batch = 2;
      std::vector<float> input(batch * pixels * c), output(batch * c);
      for (float& x : input) x = dist(rng);
      Fp32GlobalAvgPoolNhwc(batch, pixels, c, input.data(), output.data());
      for (size_t b = 0; b < batch; ++b) {
        for (size_t ch = 0; ch < c; ++ch) {
          double sum = 0, mag = 0;
          for (size_t p = 0; p < pixels; ++p) {
            sum += input[(b * pixels + p) * c + ch];
            mag += std::fabs(input[(b * pixels + p) * c + ch]);
          }
          const double tolerance = Fp32SumTolerance(pixels, mag / pixels);
          ASSERT_LE(std::fabs(output[b * c + ch] - sum / pixels), tolerance)
              << "c=" << c << " pixels=" << pixels << " b=" << b << " ch=" << ch;
        }
      }
    }
  }
}

}  // namespace
}  // namespace qlab::kernels
