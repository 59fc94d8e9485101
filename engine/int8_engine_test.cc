// The lowered int8 engine against convert's Q/DQ reference model (run by the interpreter) on a
// CIFAR ResNet20 (option-A shortcuts: slices and channel padding on integers) and a torchvision
// ResNet18 at 64x64 (stem, max pool, downsample convs), for each backend quantizer: what was
// lowered, and how far the logits move.
#include "engine/int8_engine.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/resnet.h"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/graph/interpreter.h"
#include "quant/prepare.h"

namespace qlab {
namespace {

Tensor RandomImages(int64_t n, int64_t size, std::mt19937& rng) {
  Tensor t = Tensor::Create(DType::kFloat32, {n, 3, size, size}).value();
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

struct Converted {
  Graph graph;
  float logit_step = 0.0f;  // the logits' quantization step, or 0 when they stay float
};

Converted Quantize(const std::string& model_name, int64_t image_size, Backend backend,
                   uint32_t seed) {
  ResNetOptions options;
  options.batch = 2;
  options.image_size = image_size;
  options.seed = seed;
  Graph model = BuildResNet(ModelByName(model_name).value(), options).value();
  QLAB_CHECK(FoldBatchNorm(model).ok());
  auto quantizer = BackendQuantizer::Create(backend, "minmax").value();
  PreparedModel prepared = PrepareWith(model, *quantizer).value();
  std::mt19937 rng(seed);
  for (int i = 0; i < 4; ++i) {
    QLAB_CHECK(prepared.Calibrate({RandomImages(2, image_size, rng)}).ok());
  }
  Converted c{Convert(prepared).value()};
  const NodeId logits = model.outputs()[0];
  if (const auto slot = prepared.SlotOf(EdgeOrNode::Output(logits)); slot.ok()) {
    c.logit_step = prepared.SlotQParams(*slot).value().scales[0];
  }
  return c;
}

void ExpectCloseToReference(const Converted& c, int64_t image_size, int threads, uint32_t seed) {
  absl::StatusOr<Int8Engine> engine = Int8Engine::Create(c.graph, threads);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::mt19937 rng(seed);
  const Tensor x = RandomImages(3, image_size, rng);  // another batch than calibration's
  const Tensor reference = RunGraph(c.graph, {x}).value().outputs[0];
  const absl::StatusOr<Tensor> actual = engine->Run(x);
  ASSERT_TRUE(actual.ok()) << actual.status();
  ASSERT_EQ(actual->shape(), reference.shape());
  float max_abs = 0.0f, max_diff = 0.0f;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    max_abs = std::max(max_abs, std::fabs(reference.data<float>()[i]));
    max_diff = std::max(max_diff, std::fabs(actual->data<float>()[i] - reference.data<float>()[i]));
  }
  // Float-output graphs (tensorrt) are measured against the int8 step of their logits' range.
  const float step = c.logit_step > 0.0f ? c.logit_step : max_abs / 127.0f;
  std::printf("  %s\n  logits: max |int8 - fake-quant| = %.3g = %.2f steps\n",
              engine->report().Summary().c_str(), max_diff, max_diff / step);
  // The int8 kernels round in other places than the float reference (one multiplier instead of
  // a multiply then a divide; the add's two multipliers), so a value on a rounding boundary can
  // move by one step in any layer and carry a fraction of a step downstream. Through ~20 layers
  // that stays within a few steps at the logits; a wrong scale, zero point, layout or bias is
  // off by tens to hundreds of steps.
  EXPECT_LE(max_diff, 4.0f * step);
}

class Int8EngineTest : public ::testing::TestWithParam<Backend> {};

TEST_P(Int8EngineTest, ResNet20CloseToFakeQuant) {
  const Converted c = Quantize("resnet20", 32, GetParam(), 5);
  ExpectCloseToReference(c, 32, 2, 99);
}

TEST_P(Int8EngineTest, ResNet18At64CloseToFakeQuant) {
  const Converted c = Quantize("resnet18", 64, GetParam(), 6);
  ExpectCloseToReference(c, 64, 1, 98);
}

INSTANTIATE_TEST_SUITE_P(Backends, Int8EngineTest,
                         ::testing::Values(Backend::kXnnpack, Backend::kX86, Backend::kTensorRT),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return std::string(BackendName(info.param));
                         });

TEST(Int8EngineLoweringTest, XnnpackResNet20IsIntegerEndToEnd) {
  const Converted c = Quantize("resnet20", 32, Backend::kXnnpack, 7);
  const Int8Engine engine = Int8Engine::Create(c.graph, 1).value();
  // Only the final dequantization of the logits leaves the integers: nothing runs in float.
  EXPECT_TRUE(engine.report().float_steps.empty()) << engine.report().Summary();
}

TEST(Int8EngineLoweringTest, WrongInputIsInvalidArgument) {
  const Converted c = Quantize("resnet20", 32, Backend::kXnnpack, 8);
  Int8Engine engine = Int8Engine::Create(c.graph, 1).value();
  const Tensor wrong = Tensor::Create(DType::kFloat32, {1, 3, 16, 16}).value();
  EXPECT_EQ(engine.Run(wrong).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Int8EngineLoweringTest, FloatLayerIsNamedAsNotLowered) {
  ResNetOptions options;
  Graph model = BuildResNet(ModelByName("resnet20").value(), options).value();
  ASSERT_TRUE(FoldBatchNorm(model).ok());
  auto quantizer = BackendQuantizer::Create(Backend::kXnnpack, "minmax").value();
  quantizer->configs().SetNodeName("conv1", QuantizationConfig::Float());
  PreparedModel prepared = PrepareWith(model, *quantizer).value();
  std::mt19937 rng(1);
  ASSERT_TRUE(prepared.Calibrate({RandomImages(1, 32, rng)}).ok());
  const absl::StatusOr<Int8Engine> engine = Int8Engine::Create(Convert(prepared).value(), 1);
  ASSERT_EQ(engine.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(engine.status().message(), ::testing::HasSubstr("%conv1"));
}

}  // namespace
}  // namespace qlab
