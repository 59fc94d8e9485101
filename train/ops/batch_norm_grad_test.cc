// Tests of train/ops/batch_norm_grad.h:
//   1. the double reference's backward (batch_norm_grad_ref.h) equals central finite differences
//      of its forward, for training and eval mode, on small odd shapes;
//   2. the float kernels agree with the double reference within rounding bounds derived below;
//   3. results are bit-identical with no pool, 1 and 2 threads;
//   4. against PyTorch 1.13 (torch.nn.functional.batch_norm, training=True, with momentum; run in
//      float64 by torch_ops_grad.py): forward, saved statistics, backward, running statistics,
//      with the same rounding bounds (PyTorch's float64 error is ~1e-16, negligible next to them).
//
// Rounding bounds: u = 2^-24. The kernels sum in double (error ~rows * 2^-53 relative to the sum
// of magnitudes: below 1e-13 here, negligible) and round each per-channel quantity once to float;
// the element pass is a handful of float operations. Each rounding contributes at most u times
// the magnitude of the quantity it rounds, so every bound is (number of roundings) * u * (sum of
// the magnitudes of the terms involved), computed from the exact values. A wrong formula (biased
// vs unbiased variance, a missing mean term, a swapped gamma) is off by O(1) of these magnitudes,
// i.e. by ~10^6 times the bound.
#include "train/ops/batch_norm_grad.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "train/ops/batch_norm_grad_ref.h"
#include "train/ops/ops_test_util.h"
#include "train/ops/torch_cases.h"

namespace qlab::train {
namespace {

using testing::CentralDifferences;
using testing::Dot;
using testing::ExpectWithin;
using testing::kFloatRoundoff;
using testing::ToDouble;

constexpr uint32_t kSeed = 20240801;

// Finite differences: h = 1e-5 on inputs of order 1. Central differences err by h^2/6 * f'''
// (~1e-10 * f''', and f''' is O(10) for unit-variance channels) plus the rounding of the two
// double losses divided by 2h (~1e-16 * sum|y r| / 1e-5 <= 1e-9 for the sizes here). 1e-6 (plus
// 1e-6 relative) is ~1000x above both; a wrong gradient term is O(1e-1..1).
constexpr double kStep = 1e-5;
std::vector<double> FiniteDifferenceTolerance(const std::vector<double>& gradient) {
  std::vector<double> tol(gradient.size());
  for (size_t i = 0; i < gradient.size(); ++i) tol[i] = 1e-6 + 1e-6 * std::fabs(gradient[i]);
  return tol;
}

// Per-channel data with its own mean and spread (offset > 0): the centering matters.
std::vector<float> ChannelData(size_t rows, size_t channels, float offset, std::mt19937& rng) {
  std::vector<float> center = testing::UniformFloats(channels, -offset, offset, rng);
  std::vector<float> spread = testing::UniformFloats(channels, 0.3f, 2.0f, rng);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(rows * channels);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = center[i % channels] + spread[i % channels] * normal(rng);
  return x;
}

std::vector<float> Signed(std::vector<float> v, std::mt19937& rng) {
  std::bernoulli_distribution flip(0.5);
  for (float& x : v) x = flip(rng) ? -x : x;
  return v;
}

struct Shape {
  size_t rows, channels;
};

TEST(BatchNormGradRefTest, TrainBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed);
  for (const Shape s : {Shape{5, 3}, Shape{21, 4}, Shape{35, 1}, Shape{3, 7}}) {
    SCOPED_TRACE(absl::StrCat("rows=", s.rows, " channels=", s.channels));
    const size_t n = s.rows * s.channels;
    std::vector<double> x = ToDouble(ChannelData(s.rows, s.channels, 2.0f, rng));
    std::vector<double> gamma =
        ToDouble(Signed(testing::UniformFloats(s.channels, 0.5f, 1.5f, rng), rng));
    std::vector<double> beta = testing::UniformDoubles(s.channels, -1, 1, rng);
    const std::vector<double> r = testing::UniformDoubles(n, -1, 1, rng);
    const double eps = 1e-5;
    std::vector<double> y(n), mean(s.channels), inv_std(s.channels), var(s.channels);
    const auto loss = [&] {
      BatchNormTrainForwardRef(s.rows, s.channels, x.data(), gamma.data(), beta.data(), eps,
                               y.data(), mean.data(), inv_std.data(), var.data());
      return Dot(y, r);
    };
    loss();
    std::vector<double> dx(n), dgamma(s.channels), dbeta(s.channels);
    BatchNormTrainBackwardRef(s.rows, s.channels, x.data(), gamma.data(), mean.data(),
                              inv_std.data(), r.data(), dx.data(), dgamma.data(), dbeta.data());
    ExpectWithin("dx", dx, CentralDifferences(x, loss, kStep), FiniteDifferenceTolerance(dx));
    ExpectWithin("dgamma", dgamma, CentralDifferences(gamma, loss, kStep),
                 FiniteDifferenceTolerance(dgamma));
    ExpectWithin("dbeta", dbeta, CentralDifferences(beta, loss, kStep),
                 FiniteDifferenceTolerance(dbeta));
    // Not vacuous: the input gradient of a batch-normalized loss is far from zero.
    double largest = 0;
    for (double g : dx) largest = std::max(largest, std::fabs(g));
    EXPECT_GT(largest, 1e-2);
  }
}

TEST(BatchNormGradRefTest, EvalBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed + 1);
  for (const Shape s : {Shape{5, 3}, Shape{21, 4}, Shape{1, 5}}) {
    SCOPED_TRACE(absl::StrCat("rows=", s.rows, " channels=", s.channels));
    const size_t n = s.rows * s.channels;
    std::vector<double> x = ToDouble(ChannelData(s.rows, s.channels, 2.0f, rng));
    std::vector<double> gamma = testing::UniformDoubles(s.channels, -1.5, 1.5, rng);
    std::vector<double> beta = testing::UniformDoubles(s.channels, -1, 1, rng);
    const std::vector<double> mean = testing::UniformDoubles(s.channels, -1, 1, rng);
    const std::vector<double> var = testing::UniformDoubles(s.channels, 0.5, 2, rng);
    const std::vector<double> r = testing::UniformDoubles(n, -1, 1, rng);
    const double eps = 1e-5;
    std::vector<double> y(n);
    const auto loss = [&] {
      BatchNormEvalForwardRef(s.rows, s.channels, x.data(), gamma.data(), beta.data(), mean.data(),
                              var.data(), eps, y.data());
      return Dot(y, r);
    };
    std::vector<double> dx(n), dgamma(s.channels), dbeta(s.channels);
    BatchNormEvalBackwardRef(s.rows, s.channels, x.data(), gamma.data(), mean.data(), var.data(),
                             eps, r.data(), dx.data(), dgamma.data(), dbeta.data());
    ExpectWithin("dx", dx, CentralDifferences(x, loss, kStep), FiniteDifferenceTolerance(dx));
    ExpectWithin("dgamma", dgamma, CentralDifferences(gamma, loss, kStep),
                 FiniteDifferenceTolerance(dgamma));
    ExpectWithin("dbeta", dbeta, CentralDifferences(beta, loss, kStep),
                 FiniteDifferenceTolerance(dbeta));
  }
}

// Exact training-mode results (the double reference, or PyTorch in float64) to hold the float
// kernels to.
struct TrainExact {
  std::vector<double> y, mean, inv_std, var_unbiased, dx, dgamma, dbeta;
};

TrainExact TrainReference(size_t rows, size_t channels, const std::vector<float>& x,
                          const std::vector<float>& gamma, const std::vector<float>& beta,
                          float eps, const std::vector<float>& dy) {
  const std::vector<double> xd = ToDouble(x), gd = ToDouble(gamma), bd = ToDouble(beta),
                            dyd = ToDouble(dy);
  TrainExact e;
  e.y.resize(x.size());
  e.dx.resize(x.size());
  for (auto* v : {&e.mean, &e.inv_std, &e.var_unbiased, &e.dgamma, &e.dbeta}) v->resize(channels);
  BatchNormTrainForwardRef(rows, channels, xd.data(), gd.data(), bd.data(),
                           static_cast<double>(eps), e.y.data(), e.mean.data(), e.inv_std.data(),
                           e.var_unbiased.data());
  BatchNormTrainBackwardRef(rows, channels, xd.data(), gd.data(), e.mean.data(), e.inv_std.data(),
                            dyd.data(), e.dx.data(), e.dgamma.data(), e.dbeta.data());
  return e;
}

// Runs the float training kernels and checks them against `exact` with the rounding bounds:
//   mean, inv_std, var_unbiased: one rounding of a double value (plus its double sums): 2u.
//   y = (x - mean_f) * (gamma * inv_std)_f + beta: mean_f, the subtraction, the scale, the
//     product and the sum are 5 roundings, each at most u * M, M = |gamma| inv_std (|x| + |mean|)
//     + |beta| (|x - mean| <= |x| + |mean| and mean_f errs relative to |mean|): 5u M, doubled to
//     cover second-order terms and inv_std_f's own rounding.
//   dbeta = float(sum dy): 2u sum|dy|.
//   dgamma = float(sum dy (x - mean_f) inv_std_f): mean_f shifts each term by u |mean| inv_std
//     |dy|; inv_std_f and the final rounding add u |dgamma| each: 3u (sum|dy xhat| + |mean|
//     inv_std sum|dy|), doubled.
//   dx = k ((dy - mean_dy) - (x - mean_f) slope), k = gamma inv_std, slope = dgamma inv_std /
//     rows: at most 12 roundings (x - mean_f: 2; slope: 3, as it carries inv_std_f twice; k: 2;
//     mean_dy, two subtractions, two products: 5) each bounded by u * M with M = |k| (|dy| +
//     |mean_dy| + (|x| + |mean|) (|slope| + inv_std^2 |mean| |mean_dy|)); the last term is the
//     slope's error from mean_f (sum dy * u |mean| inv_std^2 / rows). Bound: 16u M.
double CheckTrainKernel(const std::string& what, size_t rows, size_t channels,
                        const std::vector<float>& x, const std::vector<float>& gamma,
                        const std::vector<float>& beta, float eps, const std::vector<float>& dy,
                        const TrainExact& exact) {
  const double u = kFloatRoundoff;
  std::vector<float> y(x.size()), mean(channels), inv_std(channels), var(channels);
  BatchNormTrainForward(rows, channels, x.data(), gamma.data(), beta.data(), eps, y.data(),
                        mean.data(), inv_std.data(), var.data(), nullptr);
  std::vector<float> dx(x.size()), dgamma(channels), dbeta(channels);
  BatchNormTrainBackward(rows, channels, x.data(), gamma.data(), mean.data(), inv_std.data(),
                         dy.data(), dx.data(), dgamma.data(), dbeta.data(), nullptr);

  std::vector<double> abs_mean_x(channels, 0), sum_abs_dy(channels, 0),
      sum_abs_dy_xhat(channels, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = i % channels;
    abs_mean_x[c] += std::fabs(x[i]) / static_cast<double>(rows);
    sum_abs_dy[c] += std::fabs(dy[i]);
    sum_abs_dy_xhat[c] += std::fabs(dy[i] * (x[i] - exact.mean[c]) * exact.inv_std[c]);
  }
  std::vector<double> tol_mean(channels), tol_inv_std(channels), tol_var(channels),
      tol_dgamma(channels), tol_dbeta(channels);
  for (size_t c = 0; c < channels; ++c) {
    tol_mean[c] = 2 * u * abs_mean_x[c];
    tol_inv_std[c] = 2 * u * exact.inv_std[c];
    tol_var[c] = 2 * u * exact.var_unbiased[c];
    tol_dbeta[c] = 2 * u * sum_abs_dy[c];
    tol_dgamma[c] =
        6 * u * (sum_abs_dy_xhat[c] + std::fabs(exact.mean[c]) * exact.inv_std[c] * sum_abs_dy[c]);
  }
  std::vector<double> tol_y(x.size()), tol_dx(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = i % channels;
    const double s = exact.inv_std[c];
    const double spread = std::fabs(x[i]) + std::fabs(exact.mean[c]);
    tol_y[i] = 10 * u * (std::fabs(gamma[c]) * s * spread + std::fabs(beta[c]));
    const double k = std::fabs(gamma[c]) * s;
    const double mean_dy = std::fabs(exact.dbeta[c]) / static_cast<double>(rows);
    const double slope = std::fabs(exact.dgamma[c]) * s / static_cast<double>(rows);
    tol_dx[i] = 16 * u * k *
                (std::fabs(dy[i]) + mean_dy +
                 spread * (slope + s * s * std::fabs(exact.mean[c]) * mean_dy));
  }
  double worst = 0;
  worst = std::max(worst, ExpectWithin(what + " y", y, exact.y, tol_y));
  worst = std::max(worst, ExpectWithin(what + " mean", mean, exact.mean, tol_mean));
  worst = std::max(worst, ExpectWithin(what + " inv_std", inv_std, exact.inv_std, tol_inv_std));
  worst = std::max(worst, ExpectWithin(what + " var_unbiased", var, exact.var_unbiased, tol_var));
  worst = std::max(worst, ExpectWithin(what + " dx", dx, exact.dx, tol_dx));
  worst = std::max(worst, ExpectWithin(what + " dgamma", dgamma, exact.dgamma, tol_dgamma));
  worst = std::max(worst, ExpectWithin(what + " dbeta", dbeta, exact.dbeta, tol_dbeta));
  return worst;
}

// Running statistics: evaluated in double and rounded once: u (|running| + |batch|), doubled
// for slack; plus momentum times the error bound of the batch statistics fed in, when they are
// the kernel's rather than the exact ones (batch_*_error; zero when both sides use the same).
double CheckRunningStats(const std::string& what, size_t channels, float momentum,
                         const std::vector<float>& batch_mean, const std::vector<float>& batch_var,
                         const std::vector<float>& running_mean_in,
                         const std::vector<float>& running_var_in,
                         const std::vector<double>& want_mean, const std::vector<double>& want_var,
                         const std::vector<double>& batch_mean_error,
                         const std::vector<double>& batch_var_error) {
  std::vector<float> running_mean = running_mean_in, running_var = running_var_in;
  BatchNormUpdateRunningStats(channels, momentum, batch_mean.data(), batch_var.data(),
                              running_mean.data(), running_var.data());
  std::vector<double> tol_mean(channels), tol_var(channels);
  for (size_t c = 0; c < channels; ++c) {
    tol_mean[c] = 2 * kFloatRoundoff * (std::fabs(running_mean_in[c]) + std::fabs(batch_mean[c])) +
                  momentum * batch_mean_error[c];
    tol_var[c] = 2 * kFloatRoundoff * (std::fabs(running_var_in[c]) + std::fabs(batch_var[c])) +
                 momentum * batch_var_error[c];
  }
  return std::max(ExpectWithin(what + " running_mean", running_mean, want_mean, tol_mean),
                  ExpectWithin(what + " running_var", running_var, want_var, tol_var));
}

TEST(BatchNormGradTest, TrainKernelsMatchReference) {
  std::mt19937 rng(kSeed + 2);
  double worst = 0;
  // 429 and 600 rows span several 256-row blocks; 5 rows is a single partial block.
  for (const Shape s : {Shape{5, 3}, Shape{429, 7}, Shape{600, 17}, Shape{2, 1}}) {
    for (float offset : {0.0f, 4.0f}) {
      const std::string what =
          absl::StrCat("rows=", s.rows, " channels=", s.channels, " offset=", offset);
      const std::vector<float> x = ChannelData(s.rows, s.channels, offset, rng);
      const std::vector<float> gamma =
          Signed(testing::UniformFloats(s.channels, 0.5f, 1.5f, rng), rng);
      const std::vector<float> beta = testing::UniformFloats(s.channels, -1, 1, rng);
      const std::vector<float> dy = testing::NormalFloats(x.size(), 0.0f, 1.0f, rng);
      const float eps = 1e-5f;
      const TrainExact exact = TrainReference(s.rows, s.channels, x, gamma, beta, eps, dy);
      worst = std::max(worst,
                       CheckTrainKernel(what, s.rows, s.channels, x, gamma, beta, eps, dy, exact));

      const std::vector<float> running_mean = testing::UniformFloats(s.channels, -1, 1, rng);
      const std::vector<float> running_var = testing::UniformFloats(s.channels, 0.5f, 2, rng);
      std::vector<float> mean_f(exact.mean.begin(), exact.mean.end());
      std::vector<float> var_f(exact.var_unbiased.begin(), exact.var_unbiased.end());
      std::vector<double> want_mean = ToDouble(running_mean), want_var = ToDouble(running_var);
      const std::vector<double> mean_d = ToDouble(mean_f), var_d = ToDouble(var_f);
      BatchNormUpdateRunningStatsRef(s.channels, static_cast<double>(0.1f), mean_d.data(),
                                     var_d.data(), want_mean.data(), want_var.data());
      worst = std::max(
          worst, CheckRunningStats(what, s.channels, 0.1f, mean_f, var_f, running_mean, running_var,
                                   want_mean, want_var, std::vector<double>(s.channels, 0.0),
                                   std::vector<double>(s.channels, 0.0)));
    }
  }
  std::printf("training kernels vs double reference: worst error / bound = %.3g\n", worst);
}

// Exact eval-mode results (the double reference, or PyTorch in float64).
struct EvalExact {
  std::vector<double> y, dx, dgamma, dbeta;
};

// Runs the float eval-mode kernels and checks them against `exact`. a = gamma inv_std and
// b = beta - mean a are double values rounded once (a: u |a|; b: u |b| plus |mean| times a's
// error); y = x * a + b adds 2 roundings: with M = |a| (|x| + |mean|) + |beta| bounding every
// term, 4u M, doubled for slack: 8u M. dx = dy * a: a's rounding and the product's, 2u |dy a|,
// taken as 5u. dgamma = float(double sum dy (x - mean) inv_std): one rounding plus double
// error: u sum|dy (x - mean) inv_std|, taken as 8u. dbeta: 2u sum|dy|.
double CheckEvalKernel(const std::string& what, size_t rows, size_t channels,
                       const std::vector<float>& x, const std::vector<float>& gamma,
                       const std::vector<float>& beta, const std::vector<float>& mean,
                       const std::vector<float>& var, float eps, const std::vector<float>& dy,
                       const EvalExact& exact) {
  const double u = kFloatRoundoff;
  std::vector<float> y(x.size()), dx(x.size()), dgamma(channels), dbeta(channels);
  BatchNormEvalForward(rows, channels, x.data(), gamma.data(), beta.data(), mean.data(), var.data(),
                       eps, y.data(), nullptr);
  BatchNormEvalBackward(rows, channels, x.data(), gamma.data(), mean.data(), var.data(), eps,
                        dy.data(), dx.data(), dgamma.data(), dbeta.data(), nullptr);
  std::vector<double> tol_y(x.size()), tol_dx(x.size()), tol_dgamma(channels, 0),
      tol_dbeta(channels, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = i % channels;
    const double inv_std = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
    const double a = std::fabs(gamma[c]) * inv_std;
    tol_y[i] = 8 * u * (a * (std::fabs(x[i]) + std::fabs(mean[c])) + std::fabs(beta[c]));
    tol_dx[i] = 5 * u * std::fabs(dy[i]) * a;
    tol_dgamma[c] += 8 * u * std::fabs(static_cast<double>(dy[i]) * (x[i] - mean[c])) * inv_std;
    tol_dbeta[c] += 2 * u * std::fabs(dy[i]);
  }
  double worst = 0;
  worst = std::max(worst, ExpectWithin(what + " eval y", y, exact.y, tol_y));
  worst = std::max(worst, ExpectWithin(what + " eval dx", dx, exact.dx, tol_dx));
  worst = std::max(worst, ExpectWithin(what + " eval dgamma", dgamma, exact.dgamma, tol_dgamma));
  worst = std::max(worst, ExpectWithin(what + " eval dbeta", dbeta, exact.dbeta, tol_dbeta));
  return worst;
}

TEST(BatchNormGradTest, EvalKernelsMatchReference) {
  std::mt19937 rng(kSeed + 3);
  double worst = 0;
  for (const Shape s : {Shape{5, 3}, Shape{429, 7}, Shape{1, 17}}) {
    const std::string what = absl::StrCat("rows=", s.rows, " channels=", s.channels);
    const std::vector<float> x = ChannelData(s.rows, s.channels, 3.0f, rng);
    const std::vector<float> gamma = testing::UniformFloats(s.channels, -1.5f, 1.5f, rng);
    const std::vector<float> beta = testing::UniformFloats(s.channels, -1, 1, rng);
    const std::vector<float> mean = testing::UniformFloats(s.channels, -3, 3, rng);
    const std::vector<float> var = testing::UniformFloats(s.channels, 0.2f, 3, rng);
    const std::vector<float> dy = testing::NormalFloats(x.size(), 0.0f, 1.0f, rng);
    const float eps = 1e-5f;
    const std::vector<double> xd = ToDouble(x), gd = ToDouble(gamma), bd = ToDouble(beta),
                              md = ToDouble(mean), vd = ToDouble(var), dyd = ToDouble(dy);
    EvalExact exact{std::vector<double>(x.size()), std::vector<double>(x.size()),
                    std::vector<double>(s.channels), std::vector<double>(s.channels)};
    BatchNormEvalForwardRef(s.rows, s.channels, xd.data(), gd.data(), bd.data(), md.data(),
                            vd.data(), static_cast<double>(eps), exact.y.data());
    BatchNormEvalBackwardRef(s.rows, s.channels, xd.data(), gd.data(), md.data(), vd.data(),
                             static_cast<double>(eps), dyd.data(), exact.dx.data(),
                             exact.dgamma.data(), exact.dbeta.data());
    worst = std::max(worst, CheckEvalKernel(what, s.rows, s.channels, x, gamma, beta, mean, var,
                                            eps, dy, exact));
  }
  std::printf("eval kernels vs double reference: worst error / bound = %.3g\n", worst);
}

TEST(BatchNormGradTest, BitIdenticalForAnyThreadCount) {
  std::mt19937 rng(kSeed + 4);
  const size_t rows = 1000, channels = 19;  // 4 row blocks, the last one partial
  const std::vector<float> x = ChannelData(rows, channels, 2.0f, rng);
  const std::vector<float> gamma = testing::UniformFloats(channels, -1.5f, 1.5f, rng);
  const std::vector<float> beta = testing::UniformFloats(channels, -1, 1, rng);
  const std::vector<float> dy = testing::NormalFloats(x.size(), 0.0f, 1.0f, rng);
  const std::vector<float> running_mean = testing::UniformFloats(channels, -1, 1, rng);
  const std::vector<float> running_var = testing::UniformFloats(channels, 0.5f, 2, rng);
  struct Outputs {
    std::vector<float> y, mean, inv_std, var, dx, dgamma, dbeta, eval_y, eval_dx, eval_dgamma,
        eval_dbeta;
  };
  const auto run = [&](pthreadpool_t pool) {
    Outputs o;
    for (auto* v : {&o.y, &o.dx, &o.eval_y, &o.eval_dx}) v->resize(x.size());
    for (auto* v :
         {&o.mean, &o.inv_std, &o.var, &o.dgamma, &o.dbeta, &o.eval_dgamma, &o.eval_dbeta}) {
      v->resize(channels);
    }
    BatchNormTrainForward(rows, channels, x.data(), gamma.data(), beta.data(), 1e-5f, o.y.data(),
                          o.mean.data(), o.inv_std.data(), o.var.data(), pool);
    BatchNormTrainBackward(rows, channels, x.data(), gamma.data(), o.mean.data(), o.inv_std.data(),
                           dy.data(), o.dx.data(), o.dgamma.data(), o.dbeta.data(), pool);
    BatchNormEvalForward(rows, channels, x.data(), gamma.data(), beta.data(), running_mean.data(),
                         running_var.data(), 1e-5f, o.eval_y.data(), pool);
    BatchNormEvalBackward(rows, channels, x.data(), gamma.data(), running_mean.data(),
                          running_var.data(), 1e-5f, dy.data(), o.eval_dx.data(),
                          o.eval_dgamma.data(), o.eval_dbeta.data(), pool);
    return o;
  };
  testing::ThreadPools pools;
  const Outputs base = run(nullptr);
  for (const auto& [name, pool] : pools.All()) {
    SCOPED_TRACE(name);
    const Outputs o = run(pool);
    EXPECT_TRUE(testing::BitIdentical(o.y, base.y));
    EXPECT_TRUE(testing::BitIdentical(o.mean, base.mean));
    EXPECT_TRUE(testing::BitIdentical(o.inv_std, base.inv_std));
    EXPECT_TRUE(testing::BitIdentical(o.var, base.var));
    EXPECT_TRUE(testing::BitIdentical(o.dx, base.dx));
    EXPECT_TRUE(testing::BitIdentical(o.dgamma, base.dgamma));
    EXPECT_TRUE(testing::BitIdentical(o.dbeta, base.dbeta));
    EXPECT_TRUE(testing::BitIdentical(o.eval_y, base.eval_y));
    EXPECT_TRUE(testing::BitIdentical(o.eval_dx, base.eval_dx));
    EXPECT_TRUE(testing::BitIdentical(o.eval_dgamma, base.eval_dgamma));
    EXPECT_TRUE(testing::BitIdentical(o.eval_dbeta, base.eval_dbeta));
  }
}

// PyTorch 1.13's F.batch_norm(training=True, momentum), native_batch_norm's saved statistics and
// F.batch_norm(training=False), in float64 on the same float32 inputs (torch_ops_grad.py
// batch_norm).
TEST(BatchNormGradTorchTest, MatchesPyTorch) {
  auto cases = testing::RunTorchCases("batch_norm");
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 4u);
  double worst = 0;
  for (const auto& [name, c] : *cases) {
    const std::vector<int64_t> shape = c.Shape("x");  // NHWC
    ASSERT_EQ(shape.size(), 4u) << name;
    const size_t channels = static_cast<size_t>(shape[3]);
    const size_t rows = static_cast<size_t>(shape[0] * shape[1] * shape[2]);
    const std::vector<float> x = c.Floats("x"), gamma = c.Floats("gamma"), beta = c.Floats("beta"),
                             dy = c.Floats("dy");
    const float eps = static_cast<float>(c.Scalar("eps"));
    const float momentum = static_cast<float>(c.Scalar("momentum"));
    TrainExact torch;
    torch.y = c.Doubles("y");
    torch.mean = c.Doubles("save_mean");
    torch.inv_std = c.Doubles("save_invstd");
    torch.dx = c.Doubles("dx");
    torch.dgamma = c.Doubles("dgamma");
    torch.dbeta = c.Doubles("dbeta");
    // PyTorch exposes the unbiased batch variance only through the running update; invert it
    // (exact in float64 up to ~1e-16) to check batch_var_unbiased directly as well.
    const std::vector<double> rv_in = c.Doubles("running_var_in"), rv = c.Doubles("running_var");
    torch.var_unbiased.resize(channels);
    for (size_t ch = 0; ch < channels; ++ch) {
      torch.var_unbiased[ch] = (rv[ch] - (1 - static_cast<double>(momentum)) * rv_in[ch]) /
                               static_cast<double>(momentum);
    }
    worst = std::max(worst, CheckTrainKernel(name, rows, channels, x, gamma, beta, eps, dy, torch));

    std::vector<float> mean(channels), inv_std(channels), var(channels), y(x.size());
    BatchNormTrainForward(rows, channels, x.data(), gamma.data(), beta.data(), eps, y.data(),
                          mean.data(), inv_std.data(), var.data(), nullptr);
    // The kernel's batch statistics err by at most 2u mean|x| and 2u var (CheckTrainKernel).
    std::vector<double> mean_error(channels, 0.0), var_error(channels);
    for (size_t i = 0; i < x.size(); ++i) {
      mean_error[i % channels] += 2 * kFloatRoundoff * std::fabs(x[i]) / static_cast<double>(rows);
    }
    for (size_t ch = 0; ch < channels; ++ch) {
      var_error[ch] = 2 * kFloatRoundoff * torch.var_unbiased[ch];
    }
    // Eval mode with the case's running statistics (F.batch_norm(training=False), float64).
    const EvalExact torch_eval{c.Doubles("eval_y"), c.Doubles("eval_dx"), c.Doubles("eval_dgamma"),
                               c.Doubles("eval_dbeta")};
    worst = std::max(
        worst, CheckEvalKernel(name, rows, channels, x, gamma, beta, c.Floats("running_mean_in"),
                               c.Floats("running_var_in"), eps, dy, torch_eval));
    worst =
        std::max(worst, CheckRunningStats(name, channels, momentum, mean, var,
                                          c.Floats("running_mean_in"), c.Floats("running_var_in"),
                                          c.Doubles("running_mean"), rv, mean_error, var_error));
  }
  std::printf("training and eval kernels vs PyTorch (float64): worst error / bound = %.3g\n",
              worst);
}

}  // namespace
}  // namespace qlab::train
