// Out-of-range inputs to qlab's public APIs, each expecting one specific absl::StatusCode (issue
// 11): negative or oversized shapes, mismatched shapes, zero or negative scales, quant_min >
// quant_max, an empty calibration set, unknown calibrator names, and runner settings that cannot
// run. The libraries' own tests check most of these beside the code, some by message only; this
// file states the code each documented error has, in one place, so that a change of code (or a
// crash in place of a Status) is caught. Engines' input-shape errors are tested in
// engine/*_engine_test.cc (they need compiled graphs).
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "calibration/registry.h"
#include "core/check.h"
#include "core/tensor.h"
#include "experiments/ptq.h"
#include "experiments/training_run.h"
#include "gtest/gtest.h"
#include "quant/qparams.h"
#include "quant/quantization_spec.h"
#include "quant/quantize_tensor.h"

namespace qlab {
namespace {

using absl::StatusCode;

constexpr float kInf = std::numeric_limits<float>::infinity();

Tensor Floats(Shape shape) {
  absl::StatusOr<Tensor> t = Tensor::Create(DType::kFloat32, std::move(shape));
  QLAB_CHECK(t.ok());
  for (int64_t i = 0; i < t->numel(); ++i) t->data<float>()[i] = 0.25f * (i % 7) - 0.5f;
  return *t;
}

QuantParams Int8PerTensor(float scale, int32_t zero_point) {
  return QuantParams{DType::kInt8, -128, 127, QScheme::kPerTensorAffine, -1, {scale}, {zero_point}};
}

// --- Tensor ------------------------------------------------------------------------------------

TEST(PublicApiErrorsTest, TensorShapes) {
  EXPECT_EQ(Tensor::Create(DType::kFloat32, {-1}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensor::Create(DType::kInt8, {4, 0, -2}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensor::Create(DType::kFloat32, Shape(kMaxRank + 1, 1)).status().code(),
            StatusCode::kInvalidArgument);
  // A named 4-d layout on another rank.
  EXPECT_EQ(Tensor::Create(DType::kFloat32, {3, 32, 32}, Layout::kNCHW).status().code(),
            StatusCode::kInvalidArgument);
  // More bytes than any tensor may hold, including a product that would overflow int64.
  EXPECT_EQ(Tensor::Create(DType::kFloat32, {int64_t{1} << 40, int64_t{1} << 40}).status().code(),
            StatusCode::kResourceExhausted);
  Tensor t = Floats({2, 6});
  EXPECT_EQ(t.Reshape({5, 3}).status().code(), StatusCode::kInvalidArgument);  // 15 != 12
  EXPECT_EQ(t.Reshape({-2, -6}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Slice(-1, 1).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(t.Slice(1, 3).status().code(), StatusCode::kOutOfRange);
}

// --- qparams -----------------------------------------------------------------------------------

TEST(PublicApiErrorsTest, ChooseQParamsRangesAndTargets) {
  const QuantTarget int8{DType::kInt8, -128, 127, QScheme::kPerTensorAffine};
  QuantTarget reversed = int8;
  reversed.quant_min = 127;
  reversed.quant_max = -128;
  EXPECT_EQ(ChooseQParams(-1.0f, 1.0f, reversed).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(reversed.Validate().code(), StatusCode::kInvalidArgument);
  QuantTarget negative_eps = int8;
  negative_eps.eps = -1.0f;
  EXPECT_EQ(ChooseQParams(-1.0f, 1.0f, negative_eps).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseQParams(1.0f, -1.0f, int8).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseQParams(NAN, 1.0f, int8).status().code(), StatusCode::kInvalidArgument);
  // What an observer that saw nothing holds.
  EXPECT_EQ(ChooseQParams(kInf, -kInf, int8).status().code(), StatusCode::kFailedPrecondition);
  // Per channel: mins and maxs of different lengths, no channels at all.
  const float mins[] = {-1.0f, -2.0f};
  const float maxs[] = {1.0f};
  const QuantTarget per_channel{DType::kInt8, -127, 127, QScheme::kPerChannelSymmetric};
  EXPECT_EQ(ChooseQParamsPerChannel(mins, maxs, 0, per_channel).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseQParamsPerChannel({}, {}, 0, per_channel).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeMultiplier(0.0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeMultiplier(1.5).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeMultiplier(std::nan("")).status().code(), StatusCode::kInvalidArgument);
}

TEST(PublicApiErrorsTest, QuantizeWithBadParams) {
  const Tensor x = Floats({2, 3, 4, 4});
  for (const float scale : {0.0f, -0.1f, NAN, kInf}) {
    SCOPED_TRACE(scale);
    EXPECT_EQ(QuantizeTensor(x, Int8PerTensor(scale, 0)).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(FakeQuantizeTensor(x, Int8PerTensor(scale, 0), false).status().code(),
              StatusCode::kInvalidArgument);
  }
  QuantParams reversed = Int8PerTensor(0.1f, 0);
  reversed.quant_min = 10;
  reversed.quant_max = -10;
  EXPECT_EQ(QuantizeTensor(x, reversed).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeTensor(x, Int8PerTensor(0.1f, 300)).status().code(),
            StatusCode::kInvalidArgument);  // zero point outside [quant_min, quant_max]
  // Scales and zero points of different counts; a per-channel count not matching the axis.
  QuantParams uneven = Int8PerTensor(0.1f, 0);
  uneven.zero_points = {0, 0};
  EXPECT_EQ(QuantizeTensor(x, uneven).status().code(), StatusCode::kInvalidArgument);
  const QuantParams five_channels{DType::kInt8,
                                  -127,
                                  127,
                                  QScheme::kPerChannelSymmetric,
                                  1,
                                  std::vector<float>(5, 0.1f),
                                  std::vector<int32_t>(5, 0)};
  EXPECT_EQ(QuantizeTensor(x, five_channels).status().code(), StatusCode::kInvalidArgument);
  // Dequantize of a tensor whose dtype is not the parameters'.
  EXPECT_EQ(DequantizeTensor(x, Int8PerTensor(0.1f, 0)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(TensorMinMax(Tensor()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TensorMinMaxPerChannel(x, 4).status().code(), StatusCode::kInvalidArgument);
}

// --- specs -------------------------------------------------------------------------------------

TEST(PublicApiErrorsTest, QuantizationSpecs) {
  QuantizationSpec::Options reversed;
  reversed.format.quant_min = 100;
  reversed.format.quant_max = -100;
  EXPECT_EQ(QuantizationSpec::Create(reversed).status().code(), StatusCode::kInvalidArgument);
  QuantizationSpec::Options beyond_dtype;
  beyond_dtype.format.dtype = DType::kUInt8;
  beyond_dtype.format.quant_min = -1;
  beyond_dtype.format.quant_max = 255;
  EXPECT_EQ(QuantizationSpec::Create(beyond_dtype).status().code(), StatusCode::kInvalidArgument);
  QuantizationSpec::Options unknown_observer;
  unknown_observer.observer = "kl_divergence";
  EXPECT_EQ(QuantizationSpec::Create(unknown_observer).status().code(),
            StatusCode::kInvalidArgument);
  QuantizationSpec::Options zero_eps;
  zero_eps.eps = 0.0f;
  EXPECT_EQ(QuantizationSpec::Create(zero_eps).status().code(), StatusCode::kInvalidArgument);
  const QuantFormat int8;
  EXPECT_EQ(FixedQParamsQuantizationSpec::Create(int8, 0.0f, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(FixedQParamsQuantizationSpec::Create(int8, 1.0f / 256, 200).status().code(),
            StatusCode::kInvalidArgument);
}

// --- calibration -------------------------------------------------------------------------------

// Every registered calibrator, given an empty calibration set (no Observe call, or only failed
// ones), refuses to make parameters with FailedPrecondition.
TEST(PublicApiErrorsTest, EveryCalibratorRefusesAnEmptyCalibrationSet) {
  const std::vector<std::string> names = calibration::ObserverNames();
  ASSERT_GE(names.size(), 8u);
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const bool per_channel = name.rfind("per_channel", 0) == 0;
    calibration::ObserverOptions options;
    options.channel_axis = per_channel ? 0 : -1;
    // The percentiles have a required argument; the others take their defaults.
    const bool percentile = name == "percentile" || name == "per_channel_percentile";
    const std::string spec = percentile ? name + ":99.9" : name;
    absl::StatusOr<std::unique_ptr<calibration::Observer>> observer =
        calibration::CreateObserver(spec, options);
    ASSERT_TRUE(observer.ok()) << observer.status();
    const QuantTarget target{DType::kInt8, -128, 127,
                             per_channel ? QScheme::kPerChannelAffine : QScheme::kPerTensorAffine};
    EXPECT_EQ((*observer)->ComputeQParams(target).status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ((*observer)->ComputeRanges(target).status().code(), StatusCode::kFailedPrecondition);
    // An empty tensor and a non-float one are refused, and leave the set empty.
    EXPECT_EQ((*observer)->Observe(Tensor()).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ((*observer)->Observe(*Tensor::Create(DType::kInt8, {2, 2})).code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ((*observer)->ComputeQParams(target).status().code(), StatusCode::kFailedPrecondition);
  }
}

TEST(PublicApiErrorsTest, UnknownOrMalformedCalibrators) {
  for (const char* spec : {"kl_divergence", "", "minmax:c=0.1", "percentile", "percentile:150",
                           "histogram:bins=-5", "moving_average:c=0"}) {
    SCOPED_TRACE(spec);
    EXPECT_EQ(calibration::CreateObserver(spec).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(calibration::ValidateObserverSpec(spec).code(), StatusCode::kInvalidArgument);
  }
  // A per-channel calibrator's channel axis outside the tensor it is fed, and a channel count
  // that changes between batches.
  calibration::ObserverOptions axis5;
  axis5.channel_axis = 5;
  auto far = calibration::CreateObserver("per_channel_minmax", axis5);
  ASSERT_TRUE(far.ok()) << far.status();
  EXPECT_EQ((*far)->Observe(Floats({2, 3})).code(), StatusCode::kInvalidArgument);
  calibration::ObserverOptions axis0;
  axis0.channel_axis = 0;
  auto changing = calibration::CreateObserver("per_channel_minmax", axis0);
  ASSERT_TRUE(changing.ok()) << changing.status();
  ASSERT_TRUE((*changing)->Observe(Floats({2, 3})).ok());
  EXPECT_EQ((*changing)->Observe(Floats({4, 3})).code(), StatusCode::kInvalidArgument);
}

// --- runners -----------------------------------------------------------------------------------

// Settings are checked before any data is read, so these need no data.
TEST(PublicApiErrorsTest, PtqSettings) {
  auto code = [](auto edit) {
    experiments::PtqConfig c;
    c.model = "resnet20";
    edit(c);
    return experiments::RunPtq(c).status().code();
  };
  EXPECT_EQ(code([](auto& c) { c.calib_images = 0; }), StatusCode::kInvalidArgument);  // empty
  EXPECT_EQ(code([](auto& c) { c.calib_images = -5; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& c) { c.eval_images = -1; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& c) { c.batch_size = 0; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& c) { c.threads = 0; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& c) { c.timing_runs = -1; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& c) { c.calibrator = "kl_divergence"; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& c) { c.quantizer = "tflite"; }), StatusCode::kInvalidArgument);
}

TEST(PublicApiErrorsTest, TrainingRecipes) {
  auto code = [](auto edit) {
    experiments::TrainRecipe r;
    edit(r);
    return experiments::ValidateRecipe(r).code();
  };
  EXPECT_EQ(code([](auto&) {}), StatusCode::kOk);
  EXPECT_EQ(code([](auto& r) { r.epochs = 0; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& r) { r.batch_size = -1; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& r) { r.train_images = -1; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& r) { r.lr = -0.1; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](auto& r) { r.log_every_steps = 0; }), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab
