// Test helpers shared by the train/ops tests: seeded random data, central finite differences in
// double, tolerance-checked comparisons that report the worst error relative to its bound, and
// thread pools of 0 (null), 1 and 2 threads for bit-identity checks.
#ifndef QLAB_TRAIN_OPS_OPS_TEST_UTIL_H_
#define QLAB_TRAIN_OPS_OPS_TEST_UTIL_H_

#include <pthreadpool.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/threadpool/pthreadpool_ptr.h"

namespace qlab::train::testing {

// Unit roundoff of float32 (round to nearest): one rounded operation has relative error <= u.
inline constexpr double kFloatRoundoff = 0x1p-24;

inline std::vector<double> UniformDoubles(size_t n, double lo, double hi, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

inline std::vector<float> UniformFloats(size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<float> NormalFloats(size_t n, float mean, float stddev, std::mt19937& rng) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// dloss/dv[i] by central differences (loss(v + h e_i) - loss(v - h e_i)) / 2h, restoring v.
inline std::vector<double> CentralDifferences(std::vector<double>& v,
                                              const std::function<double()>& loss, double h) {
  std::vector<double> gradient(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double saved = v[i];
    v[i] = saved + h;
    const double up = loss();
    v[i] = saved - h;
    const double down = loss();
    v[i] = saved;
    gradient[i] = (up - down) / (2 * h);
  }
  return gradient;
}

// sum(y * r): the scalar whose gradient with respect to y is r, turning a backward pass into a
// gradient that finite differences of the forward pass can check.
inline double Dot(const std::vector<double>& y, const std::vector<double>& r) {
  double sum = 0.0;
  for (size_t i = 0; i < y.size(); ++i) sum += y[i] * r[i];
  return sum;
}

// Expects |got[i] - want[i]| <= tolerance[i] for every i; returns the largest error relative to
// its tolerance (so a test can print how much headroom its bound has). Stops reporting after a
// few failures.
template <typename Got, typename Want>
double ExpectWithin(const std::string& what, const std::vector<Got>& got,
                    const std::vector<Want>& want, const std::vector<double>& tolerance) {
  EXPECT_EQ(got.size(), want.size()) << what;
  EXPECT_EQ(got.size(), tolerance.size()) << what;
  double worst = 0.0;
  int failures = 0;
  for (size_t i = 0; i < got.size() && i < want.size() && i < tolerance.size(); ++i) {
    const double error = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    if (!(error <= tolerance[i])) {
      if (++failures <= 5) {
        ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << " want " << want[i] << " error "
                      << error << " > tolerance " << tolerance[i];
      }
    }
    if (tolerance[i] > 0) worst = std::max(worst, error / tolerance[i]);
  }
  return worst;
}

// Expects got == want element for element (as floats: -0 equals +0).
template <typename T>
void ExpectEqualValues(const std::string& what, const std::vector<T>& got,
                       const std::vector<T>& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(got[i] == want[i]) && ++failures <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << " want " << want[i];
    }
  }
  EXPECT_EQ(failures, 0) << what << ": " << failures << " of " << got.size() << " differ";
}

template <typename T>
bool BitIdentical(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

using PoolPtr = kernels::PthreadpoolPtr;

// The pools every threaded op is run with: none (calling thread), 1 thread and 2 threads.
struct ThreadPools {
  PoolPtr one{pthreadpool_create(1)};
  PoolPtr two{pthreadpool_create(2)};
  std::vector<std::pair<std::string, pthreadpool_t>> All() const {
    return {{"null", nullptr}, {"1 thread", one.get()}, {"2 threads", two.get()}};
  }
};

}  // namespace qlab::train::testing

#endif  // QLAB_TRAIN_OPS_OPS_TEST_UTIL_H_
