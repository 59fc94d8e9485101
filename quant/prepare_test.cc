// The pt2e "How to write a Quantizer" tutorial's examples, expressed with qlab's annotation API
// and run through prepare -> calibrate -> convert, plus the failure cases the flow must name.
// Expected parameters are recomputed from the data each test feeds (ChooseQParams over the
// range the test itself knows), never hard-coded.
#include "quant/prepare.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/convert.h"
#include "quant/graph/interpreter.h"
#include "quant/quantization_annotation.h"
#include "quant/quantize_tensor.h"
#include "quant/testing/test_graphs.h"

namespace qlab {
namespace {

using ::qlab::testing::Ok;
using ::qlab::testing::UniformTensor;
using ::testing::HasSubstr;

QuantizationSpec ActSpec(std::string observer = "minmax") {
  QuantizationSpec::Options o;
  o.format = {DType::kInt8, -128, 127, QScheme::kPerTensorAffine, -1};
  o.observer = std::move(observer);
  return Ok(QuantizationSpec::Create(o));
}

QuantizationSpec WeightSpec() {
  QuantizationSpec::Options o;
  o.format = {DType::kInt8, -127, 127, QScheme::kPerChannelSymmetric, 0};
  o.observer = "per_channel_minmax";
  return Ok(QuantizationSpec::Create(o));
}

// Observer / fake-quantize nodes of a prepared graph, by slot.
std::vector<int> ObserverSlots(const Graph& g) {
  std::vector<int> slots;
  for (const NodeId id : g.node_ids()) {
    const Node& n = g.node(id);
    if (n.op == OpKind::kObserver || n.op == OpKind::kFakeQuantize) {
      slots.push_back(n.attr<ObserverAttrs>().slot);
    }
  }
  std::sort(slots.begin(), slots.end());
  return slots;
}

// The dequantize node feeding `consumer`'s input `index` in a converted graph.
const Node& DequantizeFeeding(const Graph& g, const std::string& consumer, int index) {
  const Node& c = g.node(Ok(g.FindNode(consumer)));
  const Node& dq = g.node(c.inputs[index]);
  QLAB_CHECK_MSG(dq.op == OpKind::kDequantize, "input is not a dequantize node");
  return dq;
}

QuantParams Expected(float min, float max, const QuantizationSpec& spec) {
  return Ok(ChooseQParams(min, max, spec.target()));
}

void ExpectSameParams(const QuantParams& a, const QuantParams& b) {
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.quant_min, b.quant_min);
  EXPECT_EQ(a.quant_max, b.quant_max);
  EXPECT_EQ(a.qscheme, b.qscheme);
  EXPECT_EQ(a.scales, b.scales);  // exact: same ChooseQParams arithmetic on the same range
  EXPECT_EQ(a.zero_points, b.zero_points);
}

// x, y -> add: the graph of the tutorial's examples 1 and 2. Inputs span [-1, 1] and [-4, 4].
struct AddGraph {
  Graph g;
  NodeId x, y, add;
  AddGraph() {
    x = Ok(g.AddInput("x", {2, 4, 3, 3}));
    y = Ok(g.AddInput("y", {2, 4, 3, 3}));
    add = Ok(g.AddNode(OpKind::kAdd, "add", {x, y}));
    QLAB_CHECK(g.SetOutputs({add}).ok());
  }
  std::vector<Tensor> Batch() const {
    std::vector<Tensor> inputs = {UniformTensor({2, 4, 3, 3}, -1.0f, 1.0f, 1),
                                  UniformTensor({2, 4, 3, 3}, -4.0f, 4.0f, 2)};
    // Pin the extremes so the expected ranges are exact.
    inputs[0].data<float>()[0] = -1.0f;
    inputs[0].data<float>()[1] = 1.0f;
    inputs[1].data<float>()[0] = -4.0f;
    inputs[1].data<float>()[1] = 4.0f;
    return inputs;
  }
};

// Example 1: add with two independently observed inputs.
TEST(TutorialTest, AddWithIndependentInputs) {
  AddGraph m;
  QuantizationAnnotation a;
  a.input_qspec_map = {{m.x, ActSpec()}, {m.y, ActSpec()}};
  a.output_qspec = ActSpec();
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(m.g, m.add, a).ok());

  PreparedModel prepared = Ok(Prepare(m.g));
  EXPECT_EQ(prepared.slots().size(), 3u);
  EXPECT_EQ(ObserverSlots(prepared.graph()), (std::vector<int>{0, 1, 2}));
  const std::vector<Tensor> batch = m.Batch();
  ASSERT_TRUE(prepared.Calibrate(batch).ok());

  const Graph converted = Ok(Convert(prepared));
  ExpectSameParams(DequantizeFeeding(converted, "add", 0).attr<QuantizeAttrs>().params,
                   Expected(-1.0f, 1.0f, ActSpec()));
  ExpectSameParams(DequantizeFeeding(converted, "add", 1).attr<QuantizeAttrs>().params,
                   Expected(-4.0f, 4.0f, ActSpec()));
}

// Example 2: the second input shares the first input edge's spec: one observer for both.
TEST(TutorialTest, AddWithSharedInputs) {
  AddGraph m;
  QuantizationAnnotation a;
  a.input_qspec_map = {{m.x, ActSpec()},
                       {m.y, SharedQuantizationSpec(EdgeOrNode::Input(m.x, m.add))}};
  a.output_qspec = ActSpec();
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(m.g, m.add, a).ok());

  PreparedModel prepared = Ok(Prepare(m.g));
  ASSERT_EQ(prepared.slots().size(), 2u);  // the shared input pair, the output
  EXPECT_EQ(Ok(prepared.SlotOf(EdgeOrNode::Input(m.x, m.add))),
            Ok(prepared.SlotOf(EdgeOrNode::Input(m.y, m.add))));
  // Two observer nodes (one per edge) feed the same slot.
  EXPECT_EQ(ObserverSlots(prepared.graph()), (std::vector<int>{0, 0, 1}));
  ASSERT_TRUE(prepared.Calibrate(m.Batch()).ok());

  const Graph converted = Ok(Convert(prepared));
  const QuantParams both = Expected(-4.0f, 4.0f, ActSpec());  // the union of both ranges
  ExpectSameParams(DequantizeFeeding(converted, "add", 0).attr<QuantizeAttrs>().params, both);
  ExpectSameParams(DequantizeFeeding(converted, "add", 1).attr<QuantizeAttrs>().params, both);
}

// Example 3: conv1, conv2 -> cat, the second cat input and the output sharing the first input
// edge: by transitivity and implicit sharing, conv1's and conv2's outputs end in one group.
TEST(TutorialTest, CatSharingIsTransitive) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {2, 3, 6, 6}));
  const NodeId conv1 = testing::Conv(g, "conv1", x, 3, 4, 3, 1, 1, 5);
  const NodeId conv2 = testing::Conv(g, "conv2", x, 3, 4, 3, 1, 1, 7);
  const NodeId cat = Ok(g.AddNode(OpKind::kCat, "cat", {conv1, conv2}, CatAttrs{1}));
  ASSERT_TRUE(g.SetOutputs({cat}).ok());
  for (const NodeId conv : {conv1, conv2}) {
    QuantizationAnnotation a;
    a.input_qspec_map = {{x, ActSpec()}, {g.node(conv).inputs[1], WeightSpec()}};
    a.output_qspec = ActSpec();
    a.annotated = true;
    ASSERT_TRUE(SetAnnotation(g, conv, a).ok());
  }
  const SharedQuantizationSpec shared(EdgeOrNode::Input(conv1, cat));
  QuantizationAnnotation c;
  c.input_qspec_map = {{conv1, ActSpec()}, {conv2, shared}};
  c.output_qspec = shared;
  c.annotated = true;
  ASSERT_TRUE(SetAnnotation(g, cat, c).ok());

  PreparedModel prepared = Ok(Prepare(g));
  const int group = Ok(prepared.SlotOf(EdgeOrNode::Output(conv1)));
  for (const EdgeOrNode& key : {EdgeOrNode::Output(conv2), EdgeOrNode::Input(conv1, cat),
                                EdgeOrNode::Input(conv2, cat), EdgeOrNode::Output(cat)}) {
    EXPECT_EQ(Ok(prepared.SlotOf(key)), group) << key.ToString(prepared.graph());
  }
  // Five groups: the two edges from x (a graph input has no output spec to share, so each
  // edge is observed on its own, as in pt2e), the two weights, and the shared group.
  EXPECT_EQ(prepared.slots().size(), 5u) << prepared.Dump();

  for (uint32_t seed = 0; seed < 3; ++seed) {
    ASSERT_TRUE(prepared.Calibrate({UniformTensor({2, 3, 6, 6}, -2.0f, 2.0f, 100 + seed)}).ok());
  }
  const Graph converted = Ok(Convert(prepared));
  const QuantParams p1 = DequantizeFeeding(converted, "cat", 0).attr<QuantizeAttrs>().params;
  const QuantParams p2 = DequantizeFeeding(converted, "cat", 1).attr<QuantizeAttrs>().params;
  ExpectSameParams(p1, p2);
  // And that one range covers both convs' outputs: run the float graph on the same batches.
  float lo = 0.0f, hi = 0.0f;
  for (uint32_t seed = 0; seed < 3; ++seed) {
    RunOptions keep;
    keep.keep = {conv1, conv2};
    const RunResult r =
        Ok(RunGraph(g, {UniformTensor({2, 3, 6, 6}, -2.0f, 2.0f, 100 + seed)}, keep));
    for (const NodeId conv : {conv1, conv2}) {
      const Range range = Ok(TensorMinMax(r.kept.at(conv)));
      lo = std::min(lo, range.min);
      hi = std::max(hi, range.max);
    }
  }
  ExpectSameParams(p1, Expected(lo, hi, ActSpec()));
}

// Example 4: sigmoid with fixed uint8 parameters 1/256, 0: convert uses exactly those.
TEST(TutorialTest, SigmoidFixedQParams) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {1, 2, 4, 4}));
  const NodeId sig = Ok(g.AddNode(OpKind::kSigmoid, "sigmoid", {x}));
  const NodeId relu = Ok(g.AddNode(OpKind::kRelu, "relu", {sig}));
  ASSERT_TRUE(g.SetOutputs({relu}).ok());
  const FixedQParamsQuantizationSpec fixed = Ok(FixedQParamsQuantizationSpec::Create(
      {DType::kUInt8, 0, 255, QScheme::kPerTensorAffine, -1}, 1.0f / 256.0f, 0));
  QuantizationAnnotation a;
  a.input_qspec_map = {{x, ActSpec()}};
  a.output_qspec = fixed;
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(g, sig, a).ok());
  // relu reads sigmoid's output with the same fixed spec: implicitly shared, no new observer.
  QuantizationAnnotation r;
  r.input_qspec_map = {{sig, fixed}};
  r.annotated = true;
  ASSERT_TRUE(SetAnnotation(g, relu, r).ok());

  PreparedModel prepared = Ok(Prepare(g));
  EXPECT_EQ(prepared.slots().size(), 2u);
  EXPECT_EQ(Ok(prepared.SlotOf(EdgeOrNode::Input(sig, relu))),
            Ok(prepared.SlotOf(EdgeOrNode::Output(sig))));
  ASSERT_TRUE(prepared.Calibrate({UniformTensor({1, 2, 4, 4}, -3.0f, 3.0f, 9)}).ok());
  const Graph converted = Ok(Convert(prepared));
  const QuantParams& p = DequantizeFeeding(converted, "relu", 0).attr<QuantizeAttrs>().params;
  EXPECT_EQ(p.dtype, DType::kUInt8);
  EXPECT_EQ(p.quant_min, 0);
  EXPECT_EQ(p.quant_max, 255);
  EXPECT_EQ(p.scales, std::vector<float>{1.0f / 256.0f});
  EXPECT_EQ(p.zero_points, std::vector<int32_t>{0});
}

// Example 5: conv with a derived bias spec: bias scale = act scale x weight scale per channel,
// int32, the bias quantized at convert time.
TEST(TutorialTest, ConvDerivedBias) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {1, 3, 5, 5}));
  const NodeId conv = testing::Conv(g, "conv", x, 3, 6, 3, 1, 1, 3);
  ASSERT_TRUE(g.SetOutputs({conv}).ok());
  const NodeId weight = g.node(conv).inputs[1];
  const NodeId bias = g.node(conv).inputs[2];
  QuantizationAnnotation a;
  a.input_qspec_map = {{x, ActSpec()}, {weight, WeightSpec()}, {bias, Ok(BiasSpecFor(g, conv))}};
  a.output_qspec = ActSpec();
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(g, conv, a).ok());

  PreparedModel prepared = Ok(Prepare(g));
  ASSERT_TRUE(prepared.Calibrate({UniformTensor({1, 3, 5, 5}, -1.0f, 1.0f, 4)}).ok());
  const Graph converted = Ok(Convert(prepared));
  const QuantParams act = DequantizeFeeding(converted, "conv", 0).attr<QuantizeAttrs>().params;
  const QuantParams w = DequantizeFeeding(converted, "conv", 1).attr<QuantizeAttrs>().params;
  const Node& bias_dq = DequantizeFeeding(converted, "conv", 2);
  const QuantParams& b = bias_dq.attr<QuantizeAttrs>().params;
  ASSERT_EQ(w.scales.size(), 6u);
  ASSERT_EQ(b.scales.size(), 6u);
  EXPECT_EQ(b.dtype, DType::kInt32);
  EXPECT_EQ(b.quant_min, std::numeric_limits<int32_t>::min());
  EXPECT_EQ(b.quant_max, std::numeric_limits<int32_t>::max());
  EXPECT_EQ(b.qscheme, QScheme::kPerChannelSymmetric);
  EXPECT_EQ(b.axis, 0);
  const Node& bias_q = converted.node(bias_dq.inputs[0]);
  ASSERT_EQ(bias_q.op, OpKind::kParameter);
  ASSERT_EQ(bias_q.value.dtype(), DType::kInt32);
  const float* float_bias = g.node(bias).value.data<float>();
  for (int c = 0; c < 6; ++c) {
    EXPECT_EQ(b.scales[c], act.scales[0] * w.scales[c]) << "channel " << c;
    EXPECT_EQ(b.zero_points[c], 0);
    EXPECT_EQ(bias_q.value.data<int32_t>()[c],
              static_cast<int32_t>(std::nearbyint(float_bias[c] / b.scales[c])))
        << "channel " << c;
  }
  // The weight was quantized at convert time too: an int8 parameter, per channel.
  const Node& weight_q = converted.node(DequantizeFeeding(converted, "conv", 1).inputs[0]);
  EXPECT_EQ(weight_q.op, OpKind::kParameter);
  EXPECT_EQ(weight_q.value.dtype(), DType::kInt8);
}

// 4-bit values in an int8 container: the spec's range is what convert quantizes to.
TEST(TutorialTest, FourBitWeightsInAnInt8Container) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {1, 3, 5, 5}));
  const NodeId conv = testing::Conv(g, "conv", x, 3, 4, 3, 1, 1, 8, /*bias=*/false);
  ASSERT_TRUE(g.SetOutputs({conv}).ok());
  QuantizationSpec::Options o;
  o.format = {DType::kInt8, -7, 7, QScheme::kPerChannelSymmetric, 0};
  o.observer = "per_channel_minmax";
  QuantizationAnnotation a;
  a.input_qspec_map = {{g.node(conv).inputs[1], Ok(QuantizationSpec::Create(o))}};
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(g, conv, a).ok());
  const Graph converted = Ok(Convert(Ok(Prepare(g))));  // weights only: no calibration needed
  const Node& w = converted.node(DequantizeFeeding(converted, "conv", 1).inputs[0]);
  ASSERT_EQ(w.value.dtype(), DType::kInt8);
  int seen_min = 0, seen_max = 0;
  for (int64_t i = 0; i < w.value.numel(); ++i) {
    seen_min = std::min<int>(seen_min, w.value.data<int8_t>()[i]);
    seen_max = std::max<int>(seen_max, w.value.data<int8_t>()[i]);
  }
  // Symmetric per channel: each channel's largest |w| maps to +-7, nothing beyond.
  EXPECT_GE(seen_min, -7);
  EXPECT_LE(seen_max, 7);
  EXPECT_TRUE(seen_min == -7 || seen_max == 7);
}

// prepare_qat's fake-quantize nodes and convert's quantize -> dequantize pairs are the same
// arithmetic: with the same observers (and no int32 bias, which QAT keeps in float), the QAT
// model and the converted model give bit-identical outputs.
TEST(PrepareQatTest, FakeQuantModelEqualsConvertedModel) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {2, 3, 6, 6}));
  const NodeId conv = testing::Conv(g, "conv", x, 3, 5, 3, 1, 1, 12);
  const NodeId relu = Ok(g.AddNode(OpKind::kRelu, "relu", {conv}));
  ASSERT_TRUE(g.SetOutputs({relu}).ok());
  QuantizationAnnotation a;
  a.input_qspec_map = {{x, ActSpec()}, {g.node(conv).inputs[1], WeightSpec()}};
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(g, conv, a).ok());
  QuantizationAnnotation r;
  r.output_qspec = ActSpec();
  r.annotated = true;
  ASSERT_TRUE(SetAnnotation(g, relu, r).ok());

  PreparedModel qat = Ok(PrepareQat(g));
  const Tensor batch = UniformTensor({2, 3, 6, 6}, -1.0f, 1.0f, 31);
  ASSERT_TRUE(qat.Calibrate({batch}).ok());  // first run: observe and fake-quantize
  for (int s = 0; s < static_cast<int>(qat.slots().size()); ++s)
    qat.mutable_slot(s).observe = false;
  const Tensor fake = Ok(qat.Run({batch})).outputs[0];
  const Tensor real = Ok(RunGraph(Ok(Convert(qat)), {batch})).outputs[0];
  ASSERT_EQ(fake.numel(), real.numel());
  for (int64_t i = 0; i < fake.numel(); ++i) {
    ASSERT_EQ(fake.data<float>()[i], real.data<float>()[i]) << "element " << i;
  }
}

// Dynamic quantization: no calibration; each run's own range picks the parameters.
TEST(DynamicQuantizationTest, ParametersComeFromEachRun) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {2, 8}));
  const NodeId w = testing::Param(g, "fc.weight", {4, 8}, 0.5f, 3);
  const NodeId fc = Ok(g.AddNode(OpKind::kLinear, "fc", {x, w}));
  ASSERT_TRUE(g.SetOutputs({fc}).ok());
  QuantizationSpec::Options o;
  o.format = {DType::kInt8, -128, 127, QScheme::kPerTensorAffine, -1};
  o.is_dynamic = true;
  const QuantizationSpec dynamic = Ok(QuantizationSpec::Create(o));
  QuantizationAnnotation a;
  a.input_qspec_map = {{x, dynamic}};
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(g, fc, a).ok());
  const PreparedModel prepared = Ok(Prepare(g));
  EXPECT_EQ(prepared.SlotQParams(0).status().code(), absl::StatusCode::kFailedPrecondition);
  const Graph converted = Ok(Convert(prepared));  // nothing to calibrate
  for (const float bound : {0.5f, 8.0f}) {        // two runs, two ranges
    const Tensor batch = UniformTensor({2, 8}, -bound, bound, 17);
    const Range r = Ok(TensorMinMax(batch));
    const QuantParams per_run = Ok(ChooseQParams(r.min, r.max, dynamic.target()));
    const Tensor fq = Ok(FakeQuantizeTensor(batch, per_run, false)).values;
    const Tensor expected = Ok(RunGraph(g, {fq})).outputs[0];
    const Tensor actual = Ok(RunGraph(converted, {batch})).outputs[0];
    for (int64_t i = 0; i < expected.numel(); ++i) {
      ASSERT_EQ(actual.data<float>()[i], expected.data<float>()[i]) << "bound " << bound;
    }
  }
}

// --- Failure cases (tutorial test 8) -----------------------------------------------------------

TEST(PrepareErrorsTest, SharedSpecNamingAMissingEdge) {
  AddGraph m;
  QuantizationAnnotation a;
  // (y -> x) is not an edge of the graph.
  a.input_qspec_map = {{m.x, ActSpec()},
                       {m.y, SharedQuantizationSpec(EdgeOrNode::Input(m.y, m.x))}};
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(m.g, m.add, a).ok());
  const absl::StatusOr<PreparedModel> prepared = Prepare(m.g);
  ASSERT_EQ(prepared.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(prepared.status().message(), HasSubstr("(%y -> %x)"));
  EXPECT_THAT(prepared.status().message(), HasSubstr("not an edge"));
}

TEST(PrepareErrorsTest, SharedSpecNamingAnUnannotatedEdge) {
  AddGraph m;
  QuantizationAnnotation a;
  a.input_qspec_map = {{m.y, SharedQuantizationSpec(EdgeOrNode::Input(m.x, m.add))}};
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(m.g, m.add, a).ok());
  const absl::StatusOr<PreparedModel> prepared = Prepare(m.g);
  ASSERT_EQ(prepared.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(prepared.status().message(), HasSubstr("(%x -> %add)"));
  EXPECT_THAT(prepared.status().message(), HasSubstr("no quantization spec"));
}

TEST(PrepareErrorsTest, DerivedSpecWithoutSources) {
  const absl::StatusOr<DerivedQuantizationSpec> spec = DerivedQuantizationSpec::Create(
      {}, DeriveBiasQParams,
      {DType::kInt32, -2147483647 - 1, 2147483647, QScheme::kPerTensorSymmetric, -1});
  ASSERT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("derived_from is empty"));
}

TEST(PrepareErrorsTest, SpecRangeOutsideItsDtype) {
  QuantizationSpec::Options o;
  o.format = {DType::kInt8, -128, 300, QScheme::kPerTensorAffine, -1};
  const absl::StatusOr<QuantizationSpec> spec = QuantizationSpec::Create(o);
  ASSERT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("300"));

  o.format = {DType::kUInt8, -1, 255, QScheme::kPerTensorAffine, -1};
  EXPECT_EQ(QuantizationSpec::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.format = {DType::kInt8, -128, 127, QScheme::kPerChannelSymmetric, -1};  // no axis
  o.observer = "per_channel_minmax";
  EXPECT_THAT(QuantizationSpec::Create(o).status().message(), HasSubstr("channel axis"));
  o.format = {DType::kInt8, -128, 127, QScheme::kPerChannelSymmetric, 0};
  o.observer = "minmax";  // a per-tensor observer for a per-channel scheme
  EXPECT_THAT(QuantizationSpec::Create(o).status().message(), HasSubstr("per tensor"));
  o.observer = "no_such_calibrator";
  EXPECT_EQ(QuantizationSpec::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FixedQParamsQuantizationSpec::Create(
                {DType::kUInt8, 0, 255, QScheme::kPerTensorAffine, -1}, 1.0f / 256, 256)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PrepareErrorsTest, CycleIsNamed) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {1, 2, 3, 3}));
  const NodeId r1 = Ok(g.AddNode(OpKind::kRelu, "r1", {x}));
  const NodeId r2 = Ok(g.AddNode(OpKind::kRelu, "r2", {r1}));
  ASSERT_TRUE(g.SetOutputs({r2}).ok());
  ASSERT_TRUE(g.ReplaceInput(r1, 0, r2).ok());  // r1 <- r2 <- r1
  const absl::StatusOr<PreparedModel> prepared = Prepare(g);
  ASSERT_EQ(prepared.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(prepared.status().message(), "r1") ||
              absl::StrContains(prepared.status().message(), "r2"))
      << prepared.status();
}

TEST(PrepareErrorsTest, ConvertBeforeCalibrationNamesTheObserver) {
  AddGraph m;
  QuantizationAnnotation a;
  a.input_qspec_map = {{m.x, ActSpec()}};
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(m.g, m.add, a).ok());
  const PreparedModel prepared = Ok(Prepare(m.g));
  const absl::StatusOr<Graph> converted = Convert(prepared);
  ASSERT_EQ(converted.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(converted.status().message(), HasSubstr("(%x -> %add)"));
}

TEST(PrepareErrorsTest, NaNInCalibrationDataIsAnError) {
  AddGraph m;
  QuantizationAnnotation a;
  a.input_qspec_map = {{m.x, ActSpec()}};
  a.annotated = true;
  ASSERT_TRUE(SetAnnotation(m.g, m.add, a).ok());
  PreparedModel prepared = Ok(Prepare(m.g));
  std::vector<Tensor> batch = m.Batch();
  batch[0].data<float>()[5] = std::nanf("");
  const absl::Status s = prepared.Calibrate(batch);
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("x.obs"));
}

}  // namespace
}  // namespace qlab
