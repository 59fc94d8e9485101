// The lowered int8 engine against convert's Q/DQ reference model (run by the interpreter) on a
// CIFAR ResNet20 (option-A shortcuts: slices and channel padding on integers) and a torchvision
// ResNet18 at 64x64 (stem, max pool, downsample convs), for each backend quantizer: what was
// lowered, and how far the logits move.
#include "engine/int8_engine.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "core/check.h"
#include "engine/fp32_engine.h"
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
  // The int8 convolutions sum exactly where the reference sums in float (in another order), so
  // a value on a rounding boundary can still move by one step in a layer and carry a fraction
  // of a step downstream. Through ~20 layers that stays within a few steps at the logits; a
  // wrong scale, zero point, layout or bias is off by tens to hundreds of steps.
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

// --- The reference arithmetic forms (Int8EngineOptions) on hand-built Q/DQ graphs -----------

// A uint8 per-tensor quantize or dequantize of an activation.
QuantizeAttrs U8Params(float scale, int32_t zero_point) {
  QuantizeAttrs a;
  a.params.dtype = DType::kUInt8;
  a.params.quant_min = 0;
  a.params.quant_max = 255;
  a.params.scales = {scale};
  a.params.zero_points = {zero_point};
  return a;
}

// DQ(Q(x)) of `x` with the given parameters, as convert writes it.
NodeId QuantizeDequantize(Graph& g, NodeId x, float scale, int32_t zero_point) {
  const NodeId q = g.AddNode(OpKind::kQuantize, "", {x}, U8Params(scale, zero_point)).value();
  return g.AddNode(OpKind::kDequantize, "", {q}, U8Params(scale, zero_point)).value();
}

// Logits of the int8 engine under `options` and of the fake-quant reference (the FP32 engine on
// the Q/DQ graph with double accumulation, as experiments/ptq evaluates it); the number of
// elements that differ.
int64_t ElementsDiffering(const Graph& g, const Tensor& x, const Int8EngineOptions& options) {
  const Tensor reference =
      Fp32Engine::Create(g, 1, Fp32Accumulation::kDouble).value().Run(x).value();
  Int8Engine engine = Int8Engine::Create(g, 2, options).value();
  const Tensor int8 = engine.Run(x).value();
  // Same elements in the same order (the engine may keep a flattened [N, C] as [N, C, 1, 1]).
  QLAB_CHECK(int8.numel() == reference.numel());
  int64_t differing = 0;
  for (int64_t i = 0; i < int8.numel(); ++i) {
    differing += int8.data<float>()[i] != reference.data<float>()[i] ? 1 : 0;
  }
  return differing;
}

Int8EngineOptions ClassicOptions() {
  Int8EngineOptions o;
  o.float_bias = Int8EngineOptions::FloatBias::kRoundedToInt32;
  o.int32_bias = Int8EngineOptions::Int32Bias::kOneMultiplier;
  o.add = Int8EngineOptions::Add::kPerInputMultipliers;
  o.global_average = Int8EngineOptions::GlobalAverage::kInteger;
  return o;
}

// Random activations around the ResNets' range.
Tensor RandomActivations(const Shape& shape, std::mt19937& rng) {
  Tensor t = Tensor::Create(DType::kFloat32, shape).value();
  std::normal_distribution<float> dist(0.5f, 1.2f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// Residual add + ReLU, requantized: with the default (reference) form the int8 add computes the
// reference's own float operations on the same integers, so all 65,536 outputs equal the
// fake-quant reference's bit for bit. The classic form (x * (s_i / y_s) per input) rounds
// differently: here, with s_a = y_s / 2 and s_b = y_s, it sees exact ties (a / 2 + b for odd a)
// and rounds them half to even, where the reference's rounded products land an ulp to either
// side of them.
TEST(Int8EngineReferenceFormsTest, AddEqualsFakeQuantExactly) {
  constexpr float kOutputScale = 0.0379f;
  Graph g;
  const NodeId x = g.AddInput("x", {4, 64, 16, 16}).value();
  const NodeId a = QuantizeDequantize(g, x, kOutputScale * 0.5f, 131);
  const NodeId b = QuantizeDequantize(g, x, kOutputScale, 97);
  const NodeId sum = g.AddNode(OpKind::kAdd, "add", {a, b}).value();
  const NodeId relu = g.AddNode(OpKind::kRelu, "relu", {sum}).value();
  ASSERT_TRUE(g.SetOutputs({QuantizeDequantize(g, relu, kOutputScale, 0)}).ok());
  std::mt19937 rng(17);
  const Tensor input = RandomActivations({4, 64, 16, 16}, rng);
  EXPECT_TRUE(Int8Engine::Create(g, 1).value().report().float_steps.empty());
  EXPECT_EQ(ElementsDiffering(g, input, Int8EngineOptions()), 0);
  EXPECT_GT(ElementsDiffering(g, input, ClassicOptions()), 0);
}

// Global average pool, requantized: the reference form (dequantize, float sum pixel by pixel,
// divide, quantize) equals the fake-quant reference on all 16 x 256 averages of 64 pixels. The
// exact integer sum times one multiplier rounds some the other way: with the output sharing the
// input's scale (as the backends' quantizers make it), sum / 64 is an exact tie for one sum in
// 64, which the reference's float sum misses by a rounding error to either side.
TEST(Int8EngineReferenceFormsTest, GlobalAverageEqualsFakeQuantExactly) {
  Graph g;
  const NodeId x = g.AddInput("x", {16, 256, 8, 8}).value();
  const NodeId xq = QuantizeDequantize(g, x, 0.0379f, 0);
  const NodeId avg =
      g.AddNode(OpKind::kAdaptiveAvgPool2d, "avgpool", {xq}, AdaptiveAvgPool2dAttrs{}).value();
  const NodeId pooled = QuantizeDequantize(g, avg, 0.0379f, 0);
  ASSERT_TRUE(
      g.SetOutputs({g.AddNode(OpKind::kFlatten, "flatten", {pooled}, FlattenAttrs{}).value()})
          .ok());
  std::mt19937 rng(19);
  const Tensor input = RandomActivations({16, 256, 8, 8}, rng);
  EXPECT_TRUE(Int8Engine::Create(g, 1).value().report().float_steps.empty());
  EXPECT_EQ(ElementsDiffering(g, input, Int8EngineOptions()), 0);
  EXPECT_GT(ElementsDiffering(g, input, ClassicOptions()), 0);
}

// A 3x3 conv with x86's float bias and fused ReLU, per-channel weights. Kept in float, the bias
// enters as the reference adds it, and only the reference's float summation order (its fp32
// convolution of 288 products) separates the two: a handful of 16,384 outputs at most. Rounded
// to int32, it moves every output by up to half an accumulator unit (here a few hundredths of a
// step), which flips the rounding of a few outputs in ten thousand.
TEST(Int8EngineReferenceFormsTest, FloatBiasConvDiffersOnlyBySummationOrder) {
  constexpr int64_t kIn = 32, kOut = 64;
  std::mt19937 rng(23);
  Graph g;
  const NodeId x = g.AddInput("x", {4, kIn, 8, 8}).value();
  const NodeId xq = QuantizeDequantize(g, x, 0.0213f, 0);
  Tensor w = Tensor::Create(DType::kInt8, {kOut, kIn, 3, 3}).value();
  std::uniform_int_distribution<int> weight(-127, 127);
  for (int64_t i = 0; i < w.numel(); ++i) w.data<int8_t>()[i] = static_cast<int8_t>(weight(rng));
  QuantizeAttrs wq;
  wq.params.dtype = DType::kInt8;
  wq.params.quant_min = -127;
  wq.params.quant_max = 127;
  wq.params.qscheme = QScheme::kPerChannelSymmetric;
  wq.params.axis = 0;
  std::uniform_real_distribution<float> weight_scale(0.0005f, 0.002f);
  for (int64_t o = 0; o < kOut; ++o) {
    wq.params.scales.push_back(weight_scale(rng));
    wq.params.zero_points.push_back(0);
  }
  const NodeId wp = g.AddParameter("w", w).value();
  const NodeId wd = g.AddNode(OpKind::kDequantize, "w.dq", {wp}, wq).value();
  Tensor bias = Tensor::Create(DType::kFloat32, {kOut}).value();
  std::uniform_real_distribution<float> bias_value(-0.3f, 0.3f);
  for (int64_t o = 0; o < kOut; ++o) bias.data<float>()[o] = bias_value(rng);
  const NodeId bp = g.AddParameter("b", bias).value();
  Conv2dAttrs conv_attrs;
  conv_attrs.padding = {1, 1};
  const NodeId conv = g.AddNode(OpKind::kConv2d, "conv", {xq, wd, bp}, conv_attrs).value();
  const NodeId relu = g.AddNode(OpKind::kRelu, "relu", {conv}).value();
  const NodeId y = QuantizeDequantize(g, relu, 0.0171f, 0);
  ASSERT_TRUE(g.SetOutputs({y}).ok());
  const Tensor input = RandomActivations({4, kIn, 8, 8}, rng);

  const int64_t outputs = 4 * kOut * 8 * 8;
  const int64_t reference_form = ElementsDiffering(g, input, Int8EngineOptions());
  const int64_t classic = ElementsDiffering(g, input, ClassicOptions());
  std::printf("  float bias kept: %lld of %lld outputs differ; rounded to int32: %lld\n",
              static_cast<long long>(reference_form), static_cast<long long>(outputs),
              static_cast<long long>(classic));
  // Summation order alone: a relative error of ~1e-6 of an output of up to ~250 steps lands on
  // the other side of a rounding boundary for ~1e-4 of the outputs, and 1e-3 leaves margin.
  EXPECT_LE(reference_form, outputs / 1000);
  EXPECT_LT(reference_form, classic);
}

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
