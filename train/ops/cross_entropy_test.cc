// Tests of train/ops/cross_entropy.h: the double reference's gradient (cross_entropy_ref.h)
// against central finite differences of its loss; the kernel against the reference (loss,
// dlogits, correct count, ties, nullable outputs, extreme logits); and against PyTorch 1.13's
// F.cross_entropy with label_smoothing (run in float64 on the same float32 logits).
#include "train/ops/cross_entropy.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "train/ops/cross_entropy_ref.h"
#include "train/ops/ops_test_util.h"
#include "train/ops/torch_cases.h"

namespace qlab::train {
namespace {

using testing::ExpectWithin;
using testing::kFloatRoundoff;
using testing::ToDouble;

constexpr uint32_t kSeed = 20240804;

// Both the kernel and the reference (or PyTorch in float64) evaluate the loss in double with a
// few operations per class (exp, log, products, sums), each within an ulp (1.1e-16 relative):
// their difference is ~classes * 1e-16 of the loss's magnitude. 1e-12 relative covers classes
// <= 1000 with room; a wrong smoothing convention (eps vs eps * (classes - 1) / classes, or a
// missing term) changes the loss by >= 1e-3 for the eps used here.
double LossTolerance(double loss) { return 1e-12 * (1.0 + std::fabs(loss)); }

// dlogits is computed in double (absolute error ~1e-16: softmax and the target are <= 1) and
// rounded once to float: u |dlogit| + 1e-15.
std::vector<double> GradientTolerance(const std::vector<double>& want) {
  std::vector<double> tol(want.size());
  for (size_t i = 0; i < want.size(); ++i) tol[i] = kFloatRoundoff * std::fabs(want[i]) + 1e-15;
  return tol;
}

std::vector<int> RandomLabels(size_t batch, size_t classes, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(0, static_cast<int>(classes) - 1);
  std::vector<int> labels(batch);
  for (int& l : labels) l = dist(rng);
  return labels;
}

struct Shape {
  size_t batch, classes;
};

TEST(CrossEntropyRefTest, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed);
  for (const Shape s : {Shape{1, 3}, Shape{5, 7}, Shape{4, 10}}) {
    for (double smoothing : {0.0, 0.1, 0.3}) {
      SCOPED_TRACE(absl::StrCat(s.batch, "x", s.classes, " eps=", smoothing));
      std::vector<double> logits = testing::UniformDoubles(s.batch * s.classes, -3, 3, rng);
      const std::vector<int> labels = RandomLabels(s.batch, s.classes, rng);
      const auto loss = [&] {
        return SoftmaxCrossEntropyForwardRef(s.batch, s.classes, logits.data(), labels.data(),
                                             smoothing);
      };
      std::vector<double> dlogits(logits.size());
      SoftmaxCrossEntropyBackwardRef(s.batch, s.classes, logits.data(), labels.data(), smoothing,
                                     dlogits.data());
      // h = 1e-5 on logits in [-3, 3]: truncation h^2/6 * |f'''| (f''' <= 1 for softmax) is
      // ~1e-11 and the loss's rounding over 2h is ~1e-16 * 10 / 1e-5 = 1e-10; 1e-8 is 100x
      // above both, while a wrong gradient is off by ~target / batch >= 1e-2.
      ExpectWithin("dlogits", dlogits, testing::CentralDifferences(logits, loss, 1e-5),
                   std::vector<double>(logits.size(), 1e-8));
    }
  }
}

// Distillation written independently in double: the loss as a mix of the label loss (the
// reference above) and the teacher term -sum_k p_teacher,k log softmax_k, whose central
// differences the kernel's float dlogits must match (the target mix makes the gradient
// softmax - target, which this checks without assuming it).
TEST(CrossEntropyTest, DistillationMatchesFiniteDifferencesOfTheMixedLoss) {
  std::mt19937 rng(kSeed + 7);
  for (const Shape s : {Shape{1, 3}, Shape{6, 10}}) {
    for (double weight : {0.0, 0.5, 1.0}) {
      SCOPED_TRACE(absl::StrCat(s.batch, "x", s.classes, " w=", weight));
      const std::vector<float> logits_f = testing::UniformFloats(s.batch * s.classes, -3, 3, rng);
      const std::vector<float> teacher_f = testing::UniformFloats(s.batch * s.classes, -4, 4, rng);
      const std::vector<int> labels = RandomLabels(s.batch, s.classes, rng);
      const double smoothing = 0.1f;  // the float the kernel receives, exactly
      std::vector<double> logits = testing::ToDouble(logits_f);
      auto teacher_term = [&] {
        double total = 0.0;
        for (size_t b = 0; b < s.batch; ++b) {
          double zs = 0.0, zt = 0.0;
          for (size_t k = 0; k < s.classes; ++k) {
            zs += std::exp(logits[b * s.classes + k]);
            zt += std::exp(static_cast<double>(teacher_f[b * s.classes + k]));
          }
          for (size_t k = 0; k < s.classes; ++k) {
            const double p = std::exp(static_cast<double>(teacher_f[b * s.classes + k])) / zt;
            total -= p * (logits[b * s.classes + k] - std::log(zs));
          }
        }
        return total / static_cast<double>(s.batch);
      };
      const auto loss = [&] {
        return (1 - weight) * SoftmaxCrossEntropyForwardRef(s.batch, s.classes, logits.data(),
                                                            labels.data(), smoothing) +
               weight * teacher_term();
      };
      const double want_loss = loss();
      const std::vector<double> want = testing::CentralDifferences(logits, loss, 1e-5);
      std::vector<float> dlogits(logits.size());
      int64_t correct = -1;
      const double got_loss = DistillationCrossEntropy(
          s.batch, s.classes, logits_f.data(), labels.data(), static_cast<float>(smoothing),
          teacher_f.data(), static_cast<float>(weight), dlogits.data(), &correct);
      // The kernel computes in double (1e-15) and rounds dlogits (|.| <= 2 / batch) to float
      // once; the central differences add <= 1e-8 as in the reference test above.
      EXPECT_NEAR(got_loss, want_loss, 1e-12);
      ExpectWithin("dlogits", dlogits, want, std::vector<double>(logits.size(), 1e-8 + 2e-7));
      EXPECT_EQ(correct, CountCorrectRef(s.batch, s.classes, logits_f.data(), labels.data()));
      if (weight == 0.0) {  // weight 0 is the label loss exactly
        std::vector<float> plain(logits.size());
        EXPECT_EQ(got_loss, SoftmaxCrossEntropy(s.batch, s.classes, logits_f.data(), labels.data(),
                                                static_cast<float>(smoothing), plain.data(),
                                                nullptr));
        EXPECT_TRUE(testing::BitIdentical(plain, dlogits));
      }
    }
  }
}

TEST(CrossEntropyTest, MatchesReference) {
  std::mt19937 rng(kSeed + 1);
  for (const Shape s : {Shape{1, 3}, Shape{7, 10}, Shape{128, 10}, Shape{3, 100}}) {
    for (float smoothing : {0.0f, 0.1f}) {
      for (bool ties : {false, true}) {
        SCOPED_TRACE(
            absl::StrCat(s.batch, "x", s.classes, " eps=", smoothing, ties ? " ties" : ""));
        std::vector<float> logits = testing::NormalFloats(s.batch * s.classes, 0.0f, 4.0f, rng);
        if (ties) {
          for (float& v : logits) v = std::round(v / 4.0f);  // many equal maxima
        }
        const std::vector<int> labels = RandomLabels(s.batch, s.classes, rng);
        std::vector<float> dlogits(logits.size());
        int64_t correct = -1;
        const double loss = SoftmaxCrossEntropy(s.batch, s.classes, logits.data(), labels.data(),
                                                smoothing, dlogits.data(), &correct);
        const std::vector<double> logits_d = ToDouble(logits);
        const double want_loss = SoftmaxCrossEntropyForwardRef(
            s.batch, s.classes, logits_d.data(), labels.data(), static_cast<double>(smoothing));
        std::vector<double> want_dlogits(logits.size());
        SoftmaxCrossEntropyBackwardRef(s.batch, s.classes, logits_d.data(), labels.data(),
                                       static_cast<double>(smoothing), want_dlogits.data());
        EXPECT_NEAR(loss, want_loss, LossTolerance(want_loss));
        ExpectWithin("dlogits", dlogits, want_dlogits, GradientTolerance(want_dlogits));
        EXPECT_EQ(correct, CountCorrectRef(s.batch, s.classes, logits.data(), labels.data()));
        // The optional outputs may be null; the loss does not change.
        EXPECT_EQ(SoftmaxCrossEntropy(s.batch, s.classes, logits.data(), labels.data(), smoothing,
                                      nullptr, nullptr),
                  loss);
      }
    }
  }
}

TEST(CrossEntropyTest, HandComputedCases) {
  // Two classes, logits (1000, 0): exp(1000) overflows unless shifted by the maximum. With the
  // label on the large logit the loss is log(1 + e^-1000) = 0 in double; on the other one it
  // is 1000 + log(1 + e^-1000) = 1000. Softmax is (1, 0) in double; dlogits = softmax - onehot.
  const std::vector<float> logits = {1000.0f, 0.0f, 1000.0f, 0.0f};
  const std::vector<int> labels = {0, 1};
  std::vector<float> dlogits(4);
  int64_t correct = 0;
  const double loss =
      SoftmaxCrossEntropy(2, 2, logits.data(), labels.data(), 0.0f, dlogits.data(), &correct);
  EXPECT_EQ(loss, 500.0);  // (0 + 1000) / 2, exact in double
  EXPECT_EQ(correct, 1);
  EXPECT_EQ(dlogits, (std::vector<float>{0.0f, 0.0f, 0.5f, -0.5f}));
  // Equal logits over 4 classes: softmax = 1/4 each, loss = log 4 whatever the smoothing (the
  // targets sum to one); a tie predicts the lowest index, class 0.
  const std::vector<float> flat = {2.0f, 2.0f, 2.0f, 2.0f};
  for (float smoothing : {0.0f, 0.2f}) {
    const std::vector<int> label0 = {0}, label2 = {2};
    EXPECT_NEAR(SoftmaxCrossEntropy(1, 4, flat.data(), label2.data(), smoothing, nullptr, &correct),
                std::log(4.0), 1e-15);
    EXPECT_EQ(correct, 0);
    SoftmaxCrossEntropy(1, 4, flat.data(), label0.data(), smoothing, dlogits.data(), &correct);
    EXPECT_EQ(correct, 1);
    // dlogits[label] = 1/4 - (1 - eps + eps/4), the others 1/4 - eps/4.
    EXPECT_NEAR(dlogits[0], 0.25 - (1 - smoothing + smoothing / 4.0), 1e-7);
    EXPECT_NEAR(dlogits[1], 0.25 - smoothing / 4.0, 1e-7);
  }
}

TEST(CrossEntropyTorchTest, MatchesPyTorch) {
  auto cases = testing::RunTorchCases("cross_entropy");
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 4u);
  for (const auto& [name, c] : *cases) {
    SCOPED_TRACE(name);
    const std::vector<int64_t> shape = c.Shape("logits");
    const size_t batch = static_cast<size_t>(shape[0]), classes = static_cast<size_t>(shape[1]);
    const std::vector<float> logits = c.Floats("logits");
    std::vector<int> labels;
    for (int64_t l : c.Ints("labels")) labels.push_back(static_cast<int>(l));
    const float smoothing = static_cast<float>(c.Scalar("label_smoothing"));
    std::vector<float> dlogits(logits.size());
    int64_t correct = -1;
    const double loss = SoftmaxCrossEntropy(batch, classes, logits.data(), labels.data(), smoothing,
                                            dlogits.data(), &correct);
    const double want_loss = c.Scalar("loss");
    EXPECT_NEAR(loss, want_loss, LossTolerance(want_loss));
    const std::vector<double> want_dlogits = c.Doubles("dlogits");
    ExpectWithin("dlogits", dlogits, want_dlogits, GradientTolerance(want_dlogits));
    EXPECT_EQ(correct, c.Ints("correct")[0]);
    std::printf("%s: loss %.17g (PyTorch %.17g)\n", name.c_str(), loss, want_loss);
  }
}

}  // namespace
}  // namespace qlab::train
