// The seed documents' other two flows, expressed with qlab's specs and quantizers:
//  - torchao static quantization: observers inserted on the linears a filter function selects,
//    calibration, then quantized linears with the observed (fixed) scales;
//  - NVIDIA pytorch-quantization: QuantDescriptors for inputs and weights, TensorQuantizers that
//    calibrate with quantization disabled and then quantize with calibration disabled, and the
//    residual quantizer on a ResNet add.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/graph/interpreter.h"
#include "quant/prepare.h"
#include "quant/quant_descriptor.h"
#include "quant/quantization_annotation.h"
#include "quant/quantize_tensor.h"
#include "quant/quantizer.h"
#include "quant/testing/test_graphs.h"

namespace qlab {
namespace {

using ::qlab::testing::Ok;
using ::qlab::testing::UniformTensor;
using ::testing::HasSubstr;

QuantizationSpec Spec(QuantFormat format, const std::string& observer) {
  QuantizationSpec::Options o;
  o.format = format;
  o.observer = observer;
  return Ok(QuantizationSpec::Create(o));
}

// torchao's ToyLinearModel: linear1 (64 -> 64) -> linear2 (64 -> 32), no biases.
Graph ToyLinearModel() {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {1, 64}));
  const NodeId w1 = testing::Param(g, "linear1.weight", {64, 64}, 0.125f, 1);
  const NodeId l1 = Ok(g.AddNode(OpKind::kLinear, "linear1", {x, w1}));
  const NodeId w2 = testing::Param(g, "linear2.weight", {32, 64}, 0.125f, 2);
  const NodeId l2 = Ok(g.AddNode(OpKind::kLinear, "linear2", {l1, w2}));
  QLAB_CHECK(g.SetOutputs({l2}).ok());
  return g;
}

TEST(TorchaoStaticQuantizationTest, FilterSelectsLinearsAndScalesComeFromObservers) {
  const Graph model = ToyLinearModel();
  // torchao's example: per-tensor asymmetric uint8 activations, per-axis(0) asymmetric uint8
  // weights, both AffineQuantizedMinMaxObserver.
  QuantizationConfig config;
  config.input_activation = Spec({DType::kUInt8, 0, 255, QScheme::kPerTensorAffine, -1}, "minmax");
  config.weight =
      Spec({DType::kUInt8, 0, 255, QScheme::kPerChannelAffine, 0}, "per_channel_minmax");
  // The filter function: only linear1, as a user picking layers by name would.
  FilterQuantizer quantizer(
      [](const Graph&, const Node& node) {
        return node.op == OpKind::kLinear && node.name == "linear1";
      },
      config);
  PreparedModel prepared = Ok(PrepareWith(model, quantizer));
  EXPECT_EQ(prepared.slots().size(), 2u);  // linear1's input and weight; linear2 untouched

  // Calibrate on 10 batches, as the tutorial does, and track the input range ourselves.
  float lo = 0.0f, hi = 0.0f;
  for (uint32_t i = 0; i < 10; ++i) {
    const Tensor batch = UniformTensor({1, 64}, -2.0f, 2.0f, 10 + i);
    const Range r = Ok(TensorMinMax(batch));
    lo = std::min(lo, r.min);
    hi = std::max(hi, r.max);
    ASSERT_TRUE(prepared.Calibrate({batch}).ok());
  }
  const Graph quantized = Ok(Convert(prepared));

  const Node& linear1 = quantized.node(Ok(quantized.FindNode("linear1")));
  const Node& act_dq = quantized.node(linear1.inputs[0]);
  ASSERT_EQ(act_dq.op, OpKind::kDequantize);
  const QuantParams expected_act = Ok(ChooseQParams(lo, hi, config.input_activation->target()));
  EXPECT_EQ(act_dq.attr<QuantizeAttrs>().params.scales, expected_act.scales);
  EXPECT_EQ(act_dq.attr<QuantizeAttrs>().params.zero_points, expected_act.zero_points);

  const Node& weight_dq = quantized.node(linear1.inputs[1]);
  ASSERT_EQ(weight_dq.op, OpKind::kDequantize);
  const Tensor& float_weight = model.node(Ok(model.FindNode("linear1.weight"))).value;
  const ChannelRanges w_ranges = Ok(TensorMinMaxPerChannel(float_weight, 0));
  const QuantParams expected_w =
      Ok(ChooseQParamsPerChannel(w_ranges.mins, w_ranges.maxs, 0, config.weight->target()));
  EXPECT_EQ(weight_dq.attr<QuantizeAttrs>().params.scales, expected_w.scales);
  EXPECT_EQ(weight_dq.attr<QuantizeAttrs>().params.zero_points, expected_w.zero_points);
  EXPECT_EQ(quantized.node(weight_dq.inputs[0]).value.dtype(), DType::kUInt8);
  // linear2 still reads a float weight directly.
  const Node& linear2 = quantized.node(Ok(quantized.FindNode("linear2")));
  EXPECT_EQ(quantized.node(linear2.inputs[1]).op, OpKind::kParameter);
  EXPECT_EQ(quantized.node(linear2.inputs[1]).value.dtype(), DType::kFloat32);
}

TEST(TorchaoStaticQuantizationTest, FilterAcceptingAnUnsupportedOpIsNamed) {
  Graph model = ToyLinearModel();
  FilterQuantizer quantizer(
      [](const Graph&, const Node& node) { return node.op == OpKind::kInput; },
      QuantizationConfig{});
  const absl::Status s = quantizer.Annotate(model);
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("%x"));
}

TEST(QuantDescriptorTest, MapsToSpecs) {
  // QUANT_DESC_8BIT_PER_TENSOR: symmetric, scale amax / 127.
  const QSpec per_tensor = Ok(SpecFromQuantDescriptor({}));
  const auto& pt = std::get<QuantizationSpec>(per_tensor);
  EXPECT_EQ(pt.format().quant_min, -127);
  EXPECT_EQ(pt.format().quant_max, 127);
  EXPECT_EQ(pt.observer(), "minmax");
  const QuantParams p = Ok(ChooseQParams(-3.0f, 2.0f, pt.target()));
  EXPECT_EQ(p.scales[0], 3.0f / 127.0f);  // amax / bound, pytorch-quantization's scale
  EXPECT_EQ(p.zero_points[0], 0);

  // QUANT_DESC_8BIT_CONV2D_WEIGHT_PER_CHANNEL.
  QuantDescriptor weight;
  weight.axis = 0;
  const QSpec weight_spec = Ok(SpecFromQuantDescriptor(weight));
  const auto& w = std::get<QuantizationSpec>(weight_spec);
  EXPECT_EQ(w.format().qscheme, QScheme::kPerChannelSymmetric);
  EXPECT_EQ(w.observer(), "per_channel_minmax");

  // 4-bit unsigned with a fixed amax.
  QuantDescriptor fixed;
  fixed.num_bits = 4;
  fixed.is_unsigned = true;
  fixed.amax = 6.0f;
  const QSpec fixed_spec = Ok(SpecFromQuantDescriptor(fixed));
  const auto& f = std::get<FixedQParamsQuantizationSpec>(fixed_spec);
  EXPECT_EQ(f.format().quant_max, 15);
  EXPECT_EQ(f.scale(), 6.0f / 15.0f);

  QuantDescriptor bad;
  bad.calib_method = "kl";
  EXPECT_THAT(SpecFromQuantDescriptor(bad).status().message(), HasSubstr("\"kl\""));
  bad.calib_method = "max";
  bad.num_bits = 9;
  EXPECT_EQ(SpecFromQuantDescriptor(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

// The pytorch-quantization PTQ recipe on a residual CNN: TensorQuantizers built from
// descriptors, calibrated with quantization off, then quantizing with calibration off.
TEST(PytorchQuantizationFlowTest, CalibrateThenQuantizeWithSwitches) {
  Graph model = testing::SmallResidualNet();
  ASSERT_EQ(Ok(FoldBatchNorm(model)), 2);
  auto quantizer = Ok(BackendQuantizer::Create(Backend::kTensorRT));
  QuantizationConfig config;
  config.input_activation = std::get<QuantizationSpec>(Ok(SpecFromQuantDescriptor({})));
  QuantDescriptor weight_desc;
  weight_desc.axis = 0;
  config.weight = std::get<QuantizationSpec>(Ok(SpecFromQuantDescriptor(weight_desc)));
  quantizer->configs().SetGlobal(config);
  PreparedModel qat = Ok(PrepareWith(model, *quantizer, /*qat=*/true));

  // The residual quantizer: the add's shortcut input has its own TensorQuantizer.
  const NodeId add = Ok(model.FindNode("add"));
  const NodeId maxpool = Ok(model.FindNode("maxpool"));
  EXPECT_TRUE(qat.SlotOf(EdgeOrNode::Input(maxpool, add)).ok());

  // enable_calib(); disable_quant(): calibration sees full-precision data, outputs are float.
  for (int s = 0; s < static_cast<int>(qat.slots().size()); ++s) {
    qat.mutable_slot(s).observe = true;
    qat.mutable_slot(s).fake_quantize = false;
  }
  const Tensor batch = UniformTensor({2, 3, 12, 12}, -1.0f, 1.0f, 5);
  const Tensor calibrating = Ok(qat.Run({batch})).outputs[0];
  const Tensor reference = Ok(RunGraph(model, {batch})).outputs[0];
  for (int64_t i = 0; i < reference.numel(); ++i) {
    ASSERT_EQ(calibrating.data<float>()[i], reference.data<float>()[i]) << i;  // exact passthrough
  }
  // load_calib_amax(); disable_calib(); enable_quant().
  for (int s = 0; s < static_cast<int>(qat.slots().size()); ++s) {
    qat.mutable_slot(s).observe = false;
    qat.mutable_slot(s).fake_quantize = true;
  }
  const Tensor quantized = Ok(qat.Run({batch})).outputs[0];
  // The input's amax is what calibration saw: max |x| over the batch, scale amax / 127.
  const int input_slot =
      Ok(qat.SlotOf(EdgeOrNode::Input(Ok(model.FindNode("x")), Ok(model.FindNode("conv1")))));
  const Range r = Ok(TensorMinMax(batch));
  EXPECT_EQ(Ok(qat.SlotQParams(input_slot)).scales[0], std::max(-r.min, r.max) / 127.0f);
  float max_diff = 0.0f;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    max_diff =
        std::max(max_diff, std::fabs(quantized.data<float>()[i] - reference.data<float>()[i]));
  }
  EXPECT_GT(max_diff, 0.0f);  // quantization is on now
  // Observation is off: a second, wider batch must not move the calibrated range.
  ASSERT_TRUE(qat.Run({UniformTensor({2, 3, 12, 12}, -5.0f, 5.0f, 6)}).ok());
  EXPECT_EQ(Ok(qat.SlotQParams(input_slot)).scales[0], std::max(-r.min, r.max) / 127.0f);
}

}  // namespace
}  // namespace qlab
