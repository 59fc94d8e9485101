// Evaluate on a small generated CIFAR-10 binary file with a runner whose answers are known: every
// image's first pixel encodes the class the runner predicts, so the expected top-1, top-5,
// per-class counts and agreement follow from the file the test wrote.
#include "models/evaluate.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/data/batch_loader.h"
#include "models/data/dataset.h"
#include "models/data/transforms.h"

namespace qlab {
namespace {

using ::testing::HasSubstr;

// 25 records: label i % 10; predicted class (first red pixel) = label for i % 5 != 0, else
// (label + 1) % 10, i.e. 5 of 25 wrong.
std::string WriteCifarBinary() {
  const char* tmp = std::getenv("TEST_TMPDIR");  // Bazel's per-test scratch directory
  const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/eval_batch.bin";
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 25; ++i) {
    const int label = i % 10;
    const int predicted = i % 5 != 0 ? label : (label + 1) % 10;
    std::string record(3073, '\0');
    record[0] = static_cast<char>(label);
    record[1] = static_cast<char>(predicted * 20);  // pixel (0,0) of the red plane
    out.write(record.data(), record.size());
  }
  return path;
}

// Logits: the predicted class (decoded from the normalized first pixel) gets 10, the class before
// it 5, the rest 0 -- a wrong guess (label + 1) thus ranks the true class second.
BatchRunner FirstPixelRunner() {
  return [](const Tensor& images) -> absl::StatusOr<Tensor> {
    const int64_t n = images.dim(0);
    absl::StatusOr<Tensor> logits = Tensor::Create(DType::kFloat32, {n, 10});
    if (!logits.ok()) return logits.status();
    const data::NormalizeParams norm;
    const int64_t per_image = images.numel() / n;
    for (int64_t i = 0; i < n; ++i) {
      const float normalized = images.data<float>()[i * per_image];
      const float pixel = (normalized * norm.std[0] + norm.mean[0]) * 255.0f;
      const int predicted = static_cast<int>(std::lround(pixel / 20.0f));
      logits->data<float>()[i * 10 + predicted] = 10.0f;
      logits->data<float>()[i * 10 + (predicted + 9) % 10] = 5.0f;
    }
    return logits;
  };
}

TEST(EvaluateTest, CountsTop1Top5AndPerClass) {
  auto dataset = *data::OpenCifar10Binary({WriteCifarBinary()});
  EvalOptions options;
  options.batch_size = 7;  // batches of 7, 7, 7, 4
  options.show_progress = false;
  const EvalResult r = *Evaluate(*dataset, data::AllIndices(*dataset), data::CifarEvalTransform(),
                                 FirstPixelRunner(), options);
  EXPECT_EQ(r.images, 25);
  EXPECT_EQ(r.top1_correct, 20);
  EXPECT_EQ(r.top5_correct, 25);  // the 5 wrong ones rank the true class second
  EXPECT_EQ(r.per_class_total[0], 3);     // i = 0, 10, 20
  EXPECT_EQ(r.per_class_correct[0], 0);   // all three are i % 5 == 0
  EXPECT_EQ(r.per_class_correct[1], 3);   // i = 1, 11, 21
  ASSERT_EQ(r.predictions.size(), 25u);
  EXPECT_EQ(r.predictions[0], 1);
  EXPECT_EQ(r.indices[24], 24);
  EXPECT_DOUBLE_EQ(r.top1(), 0.8);
  EXPECT_DOUBLE_EQ(*PredictionAgreement(r, r), 1.0);
}

TEST(EvaluateTest, RejectsLogitsOfTheWrongShape) {
  auto dataset = *data::OpenCifar10Binary({WriteCifarBinary()});
  const BatchRunner wrong = [](const Tensor& images) {
    return Tensor::Create(DType::kFloat32, {images.dim(0), 7});
  };
  EvalOptions options;
  options.show_progress = false;
  const absl::StatusOr<EvalResult> r =
      Evaluate(*dataset, data::AllIndices(*dataset), data::CifarEvalTransform(), wrong, options);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("expected float32[25,10]"));
}

TEST(EvaluateTest, AgreementNeedsTheSameImages) {
  EvalResult a, b;
  a.indices = {0, 1};
  a.predictions = {3, 4};
  b.indices = {0, 1};
  b.predictions = {3, 5};
  EXPECT_DOUBLE_EQ(*PredictionAgreement(a, b), 0.5);
  b.indices = {0, 2};
  EXPECT_EQ(PredictionAgreement(a, b).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab
