// Tests of train/gemm_layers: the double-precision reference against central finite differences
// of its own forward, the float kernels against that reference (small odd shapes and real
// ResNet / classifier shapes), and bit-identical results across thread counts and scratch reuse.
//
// Randomness: std::mt19937 seeded with kBaseSeed plus a case number (printed on failure);
// `--gtest_random_seed=N` replaces kBaseSeed.
#include "train/gemm_layers/gemm_layers.h"

#include <pthreadpool.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "kernels/fp32/fp32_ref.h"
#include "kernels/threadpool/pthreadpool_ptr.h"
#include "train/gemm_layers/gemm_layers_ref.h"

namespace qlab::train {
namespace {

constexpr uint32_t kBaseSeed = 20261208;

uint32_t Seed(uint32_t case_number) {
  const int flag = ::testing::GTEST_FLAG(random_seed);
  return (flag != 0 ? static_cast<uint32_t>(flag) : kBaseSeed) + case_number;
}

using PoolPtr = kernels::PthreadpoolPtr;

std::vector<float> RandomFloats(size_t size, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// A convolution case: kernel, stride, padding, dilation per axis; output size derived.
struct ConvCase {
  const char* name;
  size_t batch, in_h, in_w, in_c, out_c, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  size_t dilation_h = 1, dilation_w = 1;

  ConvLayerShape Shape() const {
    ConvLayerShape s;
    kernels::Fp32ConvGeometry& g = s.geometry;
    g.batch = batch;
    g.in_h = in_h;
    g.in_w = in_w;
    g.in_channels = in_c;
    g.kernel_h = kernel_h;
    g.kernel_w = kernel_w;
    g.stride_h = stride_h;
    g.stride_w = stride_w;
    g.pad_h = pad_h;
    g.pad_w = pad_w;
    g.dilation_h = dilation_h;
    g.dilation_w = dilation_w;
    g.out_h = (in_h + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1;
    g.out_w = (in_w + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1;
    s.out_channels = out_c;
    return s;
  }
};

// Small shapes for every code path: odd sizes, stride 2 (col2im path), stride 1 (transposed
// convolution path), 1x1 s1 (plain GEMM), 1x1 s2, the 7x7/2 stem, no padding, dilation,
// padding wider than the kernel reach (stride 1 falling back to col2im), asymmetric kernels.
const ConvCase kSmallConvs[] = {
    {"3x3s1p1_c3", 1, 5, 7, 3, 4, 3, 3, 1, 1, 1, 1},
    {"3x3s2p1_c17_b3", 3, 9, 8, 17, 5, 3, 3, 2, 2, 1, 1},
    {"1x1s1_b2", 2, 4, 5, 6, 7, 1, 1, 1, 1, 0, 0},
    {"1x1s2_b3", 3, 7, 6, 5, 3, 1, 1, 2, 2, 0, 0},
    {"7x7s2p3_stem", 1, 11, 13, 3, 4, 7, 7, 2, 2, 3, 3},
    {"3x3s1p0", 2, 6, 6, 2, 3, 3, 3, 1, 1, 0, 0},
    {"3x3s1p2d2", 1, 7, 7, 3, 2, 3, 3, 1, 1, 2, 2, 2, 2},
    {"1x1s1p1", 2, 3, 4, 3, 2, 1, 1, 1, 1, 1, 1},
    {"5x3_s2x1_p2x0", 2, 8, 7, 4, 6, 5, 3, 2, 1, 2, 0},
    {"3x3s2p1_c16_oc33", 1, 7, 7, 16, 33, 3, 3, 2, 2, 1, 1},
    {"3x3s1p1_c17_oc18_b3", 3, 5, 6, 17, 18, 3, 3, 1, 1, 1, 1},
};

// Real shapes: ResNet18 at 224x224 (stem, layer1, the layer2 entry and its 1x1/2 projection),
// CIFAR ResNet20 (stride 1 and 2, 16 and 32 channels), batch reduced so that the double
// reference runs in about a second each.
const ConvCase kResNetConvs[] = {
    {"r18_conv1_7x7s2_3-64_224", 1, 224, 224, 3, 64, 7, 7, 2, 2, 3, 3},
    {"r18_layer1_3x3_64-64_56", 1, 56, 56, 64, 64, 3, 3, 1, 1, 1, 1},
    {"r18_layer2.0_3x3s2_64-128_56", 1, 56, 56, 64, 128, 3, 3, 2, 2, 1, 1},
    {"r18_layer2.0.ds_1x1s2_64-128_56", 2, 56, 56, 64, 128, 1, 1, 2, 2, 0, 0},
    {"r20_layer1_3x3_16-16_32", 8, 32, 32, 16, 16, 3, 3, 1, 1, 1, 1},
    {"r20_layer2.0_3x3s2_16-32_32", 8, 32, 32, 16, 32, 3, 3, 2, 2, 1, 1},
};

struct LinearCase {
  const char* name;
  size_t batch, in, out;
};
const LinearCase kSmallLinears[] = {
    {"3x7->5", 3, 7, 5}, {"1x17->3", 1, 17, 3}, {"5x33->18", 5, 33, 18}};
const LinearCase kRealLinears[] = {
    {"r20_fc_64->10_b128", 128, 64, 10},
    {"r18_fc_512->1000_b4", 4, 512, 1000},
    {"r50_fc_2048->1000_b3", 3, 2048, 1000},
};

// --- 1. The reference against finite differences of its own forward -------------------------
//
// loss(x, w, b) = sum_j y_j r_j for a random r, so d loss / d(param) is the backward with
// dy = r. The loss is linear in each single parameter (x and w enter as products of one each),
// so a central difference has no truncation error: it differs from the derivative only by the
// double rounding of the two loss values, about n_terms * 2^-53 * sum_j |y_j r_j| each, divided
// by 2h. With h = 1e-3 and the sums here (< 1e4 terms of magnitude < 1e3) that is < 1e-8;
// kFdTolerance = 1e-6 relative to (1 + magnitude) leaves 100x headroom, while a wrong index,
// stride or padding in the reference moves a gradient by O(0.1..1).
constexpr double kFdStep = 1e-3;
constexpr double kFdTolerance = 1e-6;

double ConvLoss(const ConvLayerShape& s, const std::vector<double>& x, const std::vector<double>& w,
                const std::vector<double>& b, const std::vector<double>& r) {
  std::vector<double> y(ConvOutputSizeRef(s));
  ConvForwardRef(s, x.data(), w.data(), b.data(), y.data(), nullptr);
  double loss = 0.0;
  for (size_t j = 0; j < y.size(); ++j) loss += y[j] * r[j];
  return loss;
}

// Checks analytic[i] against the central difference of loss() over parameter vector p.
template <class Loss>
void ExpectMatchesFiniteDifferences(const char* what, std::vector<double>& p,
                                    const std::vector<double>& analytic, Loss loss) {
  ASSERT_EQ(p.size(), analytic.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const double saved = p[i];
    p[i] = saved + kFdStep;
    const double plus = loss();
    p[i] = saved - kFdStep;
    const double minus = loss();
    p[i] = saved;
    const double fd = (plus - minus) / (2 * kFdStep);
    ASSERT_NEAR(analytic[i], fd, kFdTolerance * (1.0 + std::fabs(fd))) << what << "[" << i << "]";
  }
}

TEST(GemmLayersReferenceTest, ConvBackwardMatchesFiniteDifferences) {
  uint32_t case_number = 0;
  for (const ConvCase& c : kSmallConvs) {
    SCOPED_TRACE(c.name);
    std::mt19937 rng(Seed(case_number++));
    const ConvLayerShape s = c.Shape();
    std::vector<double> x = ToDouble(RandomFloats(ConvInputSizeRef(s), rng));
    std::vector<double> w = ToDouble(RandomFloats(ConvWeightSizeRef(s), rng));
    std::vector<double> b = ToDouble(RandomFloats(s.out_channels, rng));
    const std::vector<double> r = ToDouble(RandomFloats(ConvOutputSizeRef(s), rng));
    std::vector<double> dx(x.size()), dw(w.size()), db(b.size());
    ConvBackwardRef(s, x.data(), w.data(), r.data(), dx.data(), nullptr, dw.data(), nullptr,
                    db.data(), nullptr);
    const auto loss = [&] { return ConvLoss(s, x, w, b, r); };
    ExpectMatchesFiniteDifferences("dx", x, dx, loss);
    ExpectMatchesFiniteDifferences("dw", w, dw, loss);
    ExpectMatchesFiniteDifferences("dbias", b, db, loss);
    // Not vacuous: every case has a non-zero gradient somewhere in each output.
    EXPECT_GT(*std::max_element(dx.begin(), dx.end()), 0.0);
    EXPECT_GT(*std::max_element(dw.begin(), dw.end()), 0.0);
  }
}

TEST(GemmLayersReferenceTest, LinearBackwardMatchesFiniteDifferences) {
  uint32_t case_number = 100;
  for (const LinearCase& c : kSmallLinears) {
    SCOPED_TRACE(c.name);
    std::mt19937 rng(Seed(case_number++));
    std::vector<double> x = ToDouble(RandomFloats(c.batch * c.in, rng));
    std::vector<double> w = ToDouble(RandomFloats(c.out * c.in, rng));
    std::vector<double> b = ToDouble(RandomFloats(c.out, rng));
    const std::vector<double> r = ToDouble(RandomFloats(c.batch * c.out, rng));
    std::vector<double> dx(x.size()), dw(w.size()), db(b.size());
    LinearBackwardRef(c.batch, c.in, c.out, x.data(), w.data(), r.data(), dx.data(), nullptr,
                      dw.data(), nullptr, db.data(), nullptr);
    const auto loss = [&] {
      std::vector<double> y(c.batch * c.out);
      LinearForwardRef(c.batch, c.in, c.out, x.data(), w.data(), b.data(), y.data(), nullptr);
      double sum = 0.0;
      for (size_t j = 0; j < y.size(); ++j) sum += y[j] * r[j];
      return sum;
    };
    ExpectMatchesFiniteDifferences("dx", x, dx, loss);
    ExpectMatchesFiniteDifferences("dw", w, dw, loss);
    ExpectMatchesFiniteDifferences("dbias", b, db, loss);
  }
}

// --- 2. The float kernels against the reference ----------------------------------------------
//
// Tolerance: |float - reference| <= Fp32SumTolerance(terms, magnitude), magnitude = sum |term|
// over the products summed into that output (from the reference). That is the rigorous bound of
// float32 summation of `terms` products in any order and parenthesization (fp32_ref.h: Higham's
// gamma_n with 2 roundings per term), and it covers every way the kernels split a sum: K order
// in the GEMM, the GEMM's residual between dw chunks, col2im adding tap partial sums. A wrong
// index or a missed tap moves an output by a whole term, far above the bound on the small shapes;
// on the real shapes (up to 25,088 terms, bound ~3e-3 relative) a layout error still moves
// almost every output by O(1) of its magnitude.
void ExpectWithinBound(const char* what, const std::vector<float>& got,
                       const std::vector<double>& want, const std::vector<double>& magnitude,
                       size_t terms) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = kernels::Fp32SumTolerance(terms, magnitude[i]);
    const double error = std::fabs(static_cast<double>(got[i]) - want[i]);
    ASSERT_LE(error, bound) << what << "[" << i << "] = " << got[i] << ", reference " << want[i]
                            << ", magnitude " << magnitude[i];
    if (magnitude[i] > 0) worst = std::max(worst, error / magnitude[i]);
  }
  std::cout << "  " << what << ": max |error| / magnitude = " << worst << "\n";
}

PoolPtr TwoThreads() { return PoolPtr(pthreadpool_create(2)); }

// Every output of one run, concatenated.
struct Outputs {
  std::vector<float> all;
  void Add(const std::vector<float>& v) { all.insert(all.end(), v.begin(), v.end()); }
};

Outputs RunConv(const ConvLayerShape& s, const std::vector<float>& x, const std::vector<float>& w,
                const std::vector<float>& b, const std::vector<float>& dy,
                GemmLayerScratch& scratch, pthreadpool_t pool) {
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
  ConvForward(s, x.data(), w.data(), b.data(), y.data(), scratch, pool);
  ConvBackward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), scratch, pool);
  Outputs out;
  for (const auto* v : {&y, &dx, &dw, &db}) out.Add(*v);
  return out;
}

void ExpectBitIdentical(const Outputs& a, const Outputs& b, const std::string& what) {
  ASSERT_EQ(a.all.size(), b.all.size()) << what;
  EXPECT_EQ(std::memcmp(a.all.data(), b.all.data(), a.all.size() * sizeof(float)), 0) << what;
}

void CheckConvAgainstReference(const ConvCase& c, uint32_t case_number, pthreadpool_t pool) {
  SCOPED_TRACE(c.name);
  std::cout << c.name << "\n";
  std::mt19937 rng(Seed(case_number));
  const ConvLayerShape s = c.Shape();
  const kernels::Fp32ConvGeometry& g = s.geometry;
  const std::vector<float> x = RandomFloats(ConvInputSizeRef(s), rng);
  const std::vector<float> w = RandomFloats(ConvWeightSizeRef(s), rng);
  const std::vector<float> b = RandomFloats(s.out_channels, rng);
  const std::vector<float> dy = RandomFloats(ConvOutputSizeRef(s), rng);
  GemmLayerScratch scratch;
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
  ConvForward(s, x.data(), w.data(), b.data(), y.data(), scratch, pool);
  ConvBackward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), scratch, pool);

  const std::vector<double> xd = ToDouble(x), wd = ToDouble(w), bd = ToDouble(b),
                            dyd = ToDouble(dy);
  std::vector<double> y_ref(y.size()), y_mag(y.size()), dx_ref(x.size()), dx_mag(x.size()),
      dw_ref(w.size()), dw_mag(w.size()), db_ref(b.size()), db_mag(b.size());
  ConvForwardRef(s, xd.data(), wd.data(), bd.data(), y_ref.data(), y_mag.data());
  ConvBackwardRef(s, xd.data(), wd.data(), dyd.data(), dx_ref.data(), dx_mag.data(), dw_ref.data(),
                  dw_mag.data(), db_ref.data(), db_mag.data());
  const size_t taps = g.kernel_h * g.kernel_w, pixels = g.batch * g.out_h * g.out_w;
  ExpectWithinBound("y", y, y_ref, y_mag, taps * g.in_channels + 1);
  ExpectWithinBound("dx", dx, dx_ref, dx_mag, taps * s.out_channels);
  ExpectWithinBound("dw", dw, dw_ref, dw_mag, pixels);
  ExpectWithinBound("dbias", db, db_ref, db_mag, pixels);
}

void CheckLinearAgainstReference(const LinearCase& c, uint32_t case_number, pthreadpool_t pool) {
  SCOPED_TRACE(c.name);
  std::cout << c.name << "\n";
  std::mt19937 rng(Seed(case_number));
  const std::vector<float> x = RandomFloats(c.batch * c.in, rng);
  const std::vector<float> w = RandomFloats(c.out * c.in, rng);
  const std::vector<float> b = RandomFloats(c.out, rng);
  const std::vector<float> dy = RandomFloats(c.batch * c.out, rng);
  GemmLayerScratch scratch;
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
  LinearForward(c.batch, c.in, c.out, x.data(), w.data(), b.data(), y.data(), scratch, pool);
  LinearBackward(c.batch, c.in, c.out, x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                 db.data(), scratch, pool);
  const std::vector<double> xd = ToDouble(x), wd = ToDouble(w), bd = ToDouble(b),
                            dyd = ToDouble(dy);
  std::vector<double> y_ref(y.size()), y_mag(y.size()), dx_ref(x.size()), dx_mag(x.size()),
      dw_ref(w.size()), dw_mag(w.size()), db_ref(b.size()), db_mag(b.size());
  LinearForwardRef(c.batch, c.in, c.out, xd.data(), wd.data(), bd.data(), y_ref.data(),
                   y_mag.data());
  LinearBackwardRef(c.batch, c.in, c.out, xd.data(), wd.data(), dyd.data(), dx_ref.data(),
                    dx_mag.data(), dw_ref.data(), dw_mag.data(), db_ref.data(), db_mag.data());
  ExpectWithinBound("y", y, y_ref, y_mag, c.in + 1);
  ExpectWithinBound("dx", dx, dx_ref, dx_mag, c.out);
  ExpectWithinBound("dw", dw, dw_ref, dw_mag, c.batch);
  ExpectWithinBound("dbias", db, db_ref, db_mag, c.batch);
}

TEST(GemmLayersTest, SmallConvsMatchReference) {
  const PoolPtr pool = TwoThreads();
  uint32_t case_number = 200;
  for (const ConvCase& c : kSmallConvs) CheckConvAgainstReference(c, case_number++, pool.get());
}

TEST(GemmLayersTest, ResNetConvsMatchReference) {
  const PoolPtr pool = TwoThreads();
  uint32_t case_number = 300;
  for (const ConvCase& c : kResNetConvs) CheckConvAgainstReference(c, case_number++, pool.get());
}

// The Highway kernels (conv_filter_grad's tiles, kernels/fp32's GEMM tiles) differ per target:
// every compiled target this CPU supports runs the small shapes and two real ones, and must
// agree with the reference and be thread-count independent there too.
TEST(GemmLayersTest, ConvsMatchReferenceOnEveryTarget) {
  const PoolPtr pool = TwoThreads();
  std::vector<ConvCase> cases(std::begin(kSmallConvs), std::end(kSmallConvs));
  cases.push_back(kResNetConvs[0]);  // the 7x7/2 stem: rows crossing taps
  cases.push_back(kResNetConvs[5]);  // 16 -> 32 channels, stride 2
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    std::cout << "target " << hwy::TargetName(target) << "\n";
    uint32_t case_number = 800;
    for (const ConvCase& c : cases) {
      CheckConvAgainstReference(c, case_number++, pool.get());
      std::mt19937 rng(Seed(case_number));
      const ConvLayerShape s = c.Shape();
      const std::vector<float> x = RandomFloats(ConvInputSizeRef(s), rng);
      const std::vector<float> w = RandomFloats(ConvWeightSizeRef(s), rng);
      const std::vector<float> b = RandomFloats(s.out_channels, rng);
      const std::vector<float> dy = RandomFloats(ConvOutputSizeRef(s), rng);
      GemmLayerScratch scratch;
      const Outputs serial = RunConv(s, x, w, b, dy, scratch, nullptr);
      ExpectBitIdentical(serial, RunConv(s, x, w, b, dy, scratch, pool.get()), c.name);
    }
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the CPU's own targets
}

TEST(GemmLayersTest, LinearsMatchReference) {
  const PoolPtr pool = TwoThreads();
  uint32_t case_number = 400;
  for (const LinearCase& c : kSmallLinears) {
    CheckLinearAgainstReference(c, case_number++, pool.get());
  }
  for (const LinearCase& c : kRealLinears) {
    CheckLinearAgainstReference(c, case_number++, pool.get());
  }
}

// --- 3. Determinism: thread counts and scratch reuse -----------------------------------------

TEST(GemmLayersTest, ConvResultsDoNotDependOnThreadsOrScratchHistory) {
  const PoolPtr one(pthreadpool_create(1)), two = TwoThreads();
  // A scratch first used by a larger layer: buffers bigger than needed, stale contents.
  GemmLayerScratch used;
  {
    std::mt19937 rng(Seed(500));
    const ConvLayerShape big = kResNetConvs[2].Shape();
    (void)RunConv(big, RandomFloats(ConvInputSizeRef(big), rng),
                  RandomFloats(ConvWeightSizeRef(big), rng), RandomFloats(big.out_channels, rng),
                  RandomFloats(ConvOutputSizeRef(big), rng), used, two.get());
  }
  uint32_t case_number = 501;
  std::vector<ConvCase> cases(std::begin(kSmallConvs), std::end(kSmallConvs));
  cases.insert(cases.end(), std::begin(kResNetConvs), std::end(kResNetConvs));
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::mt19937 rng(Seed(case_number++));
    const ConvLayerShape s = c.Shape();
    const std::vector<float> x = RandomFloats(ConvInputSizeRef(s), rng);
    const std::vector<float> w = RandomFloats(ConvWeightSizeRef(s), rng);
    const std::vector<float> b = RandomFloats(s.out_channels, rng);
    const std::vector<float> dy = RandomFloats(ConvOutputSizeRef(s), rng);
    GemmLayerScratch fresh;
    const Outputs serial = RunConv(s, x, w, b, dy, fresh, nullptr);
    ExpectBitIdentical(serial, RunConv(s, x, w, b, dy, fresh, one.get()), "1 thread");
    ExpectBitIdentical(serial, RunConv(s, x, w, b, dy, fresh, two.get()), "2 threads");
    ExpectBitIdentical(serial, RunConv(s, x, w, b, dy, used, two.get()), "reused scratch");

    // Null outputs skip their work and leave the others unchanged.
    std::vector<float> dx(x.size()), dw(w.size());
    ConvBackward(s, x.data(), w.data(), dy.data(), dx.data(), nullptr, nullptr, used, two.get());
    ConvBackward(s, x.data(), w.data(), dy.data(), nullptr, dw.data(), nullptr, used, two.get());
    Outputs partial;
    partial.Add(dx);
    partial.Add(dw);
    Outputs expected;
    expected.all.assign(serial.all.begin() + static_cast<ptrdiff_t>(dy.size()),
                        serial.all.end() - static_cast<ptrdiff_t>(b.size()));
    ExpectBitIdentical(expected, partial, "dx and dw alone");
  }
}

TEST(GemmLayersTest, LinearResultsDoNotDependOnThreads) {
  const PoolPtr one(pthreadpool_create(1)), two = TwoThreads();
  uint32_t case_number = 600;
  std::vector<LinearCase> cases(std::begin(kSmallLinears), std::end(kSmallLinears));
  cases.insert(cases.end(), std::begin(kRealLinears), std::end(kRealLinears));
  for (const LinearCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::mt19937 rng(Seed(case_number++));
    const std::vector<float> x = RandomFloats(c.batch * c.in, rng);
    const std::vector<float> w = RandomFloats(c.out * c.in, rng);
    const std::vector<float> b = RandomFloats(c.out, rng);
    const std::vector<float> dy = RandomFloats(c.batch * c.out, rng);
    const auto run = [&](pthreadpool_t pool) {
      GemmLayerScratch scratch;
      std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
      LinearForward(c.batch, c.in, c.out, x.data(), w.data(), b.data(), y.data(), scratch, pool);
      LinearBackward(c.batch, c.in, c.out, x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                     db.data(), scratch, pool);
      Outputs out;
      for (const auto* v : {&y, &dx, &dw, &db}) out.Add(*v);
      return out;
    };
    const Outputs serial = run(nullptr);
    ExpectBitIdentical(serial, run(one.get()), "1 thread");
    ExpectBitIdentical(serial, run(two.get()), "2 threads");
  }
}

TEST(GemmLayersTest, ScratchGrowsAndMoves) {
  GemmLayerScratch scratch;
  EXPECT_EQ(scratch.CapacityFloats(), 0u);
  std::mt19937 rng(Seed(700));
  const ConvLayerShape s = kSmallConvs[1].Shape();
  (void)RunConv(s, RandomFloats(ConvInputSizeRef(s), rng), RandomFloats(ConvWeightSizeRef(s), rng),
                RandomFloats(s.out_channels, rng), RandomFloats(ConvOutputSizeRef(s), rng), scratch,
                nullptr);
  const size_t grown = scratch.CapacityFloats();
  EXPECT_GT(grown, 0u);
  GemmLayerScratch moved = std::move(scratch);
  EXPECT_EQ(moved.CapacityFloats(), grown);
}

}  // namespace
}  // namespace qlab::train
