// The backend quantizers and the config machinery: what each backend annotates on a small
// residual CNN, config precedence (name > type > global) with leave-in-float, the composable
// quantizer's refusal to overwrite, and the whole flow (annotate -> prepare -> calibrate ->
// convert) checked against the float graph.
#include "quant/backend_quantizers.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/graph/interpreter.h"
#include "quant/prepare.h"
#include "quant/quantization_annotation.h"
#include "quant/quantize_tensor.h"
#include "quant/testing/test_graphs.h"

namespace qlab {
namespace {

using ::qlab::testing::Ok;
using ::qlab::testing::UniformTensor;
using ::testing::HasSubstr;

// The residual net with batch norm folded, as the PTQ flow quantizes it.
Graph FoldedNet() {
  Graph g = testing::SmallResidualNet();
  QLAB_CHECK(Ok(FoldBatchNorm(g)) == 2);
  return g;
}

std::unique_ptr<BackendQuantizer> Make(Backend backend) {
  // minmax activations keep these tests independent of the histogram calibrator's speed; the
  // backend defaults themselves are checked in DefaultsAreTheDocumentedOnes.
  return Ok(BackendQuantizer::Create(backend, "minmax"));
}

const QuantizationAnnotation* AnnotationOf(const Graph& g, const std::string& name) {
  return g.node(Ok(g.FindNode(name))).annotation.get();
}

const QuantizationSpec* InputSpec(const Graph& g, const std::string& node, NodeId input) {
  const QuantizationAnnotation* a = AnnotationOf(g, node);
  if (a == nullptr) return nullptr;
  const QSpec* spec = a->InputSpec(input);
  return spec == nullptr ? nullptr : std::get_if<QuantizationSpec>(spec);
}

NodeId InputOf(const Graph& g, const std::string& node, int index) {
  return g.node(Ok(g.FindNode(node))).inputs[index];
}

TEST(BackendQuantizerTest, DefaultsAreTheDocumentedOnes) {
  const auto xnn = Ok(BackendQuantizer::Create(Backend::kXnnpack));
  EXPECT_EQ(xnn->default_config().input_activation->observer(), "histogram");
  EXPECT_EQ(xnn->default_config().input_activation->format().dtype, DType::kInt8);
  EXPECT_EQ(xnn->default_config().input_activation->eps(), 1.0f / 4096.0f);
  EXPECT_EQ(xnn->default_config().weight->format().quant_min, -127);
  EXPECT_TRUE(xnn->default_config().quantize_bias);
  const auto x86 = Ok(BackendQuantizer::Create(Backend::kX86));
  EXPECT_EQ(x86->default_config().input_activation->format().dtype, DType::kUInt8);
  EXPECT_EQ(x86->default_config().weight->format().quant_min, -128);
  EXPECT_FALSE(x86->default_config().quantize_bias);
  const auto trt = Ok(BackendQuantizer::Create(Backend::kTensorRT));
  EXPECT_EQ(trt->default_config().input_activation->format().qscheme, QScheme::kPerTensorSymmetric);
  EXPECT_FALSE(trt->default_config().output_activation.has_value());
  EXPECT_EQ(ParseBackend("nope").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ParseBackend("nope").status().message(), HasSubstr("xnnpack, x86, tensorrt"));
}

TEST(BackendQuantizerTest, XnnpackAnnotatesPatternsAndSharesPoolQParams) {
  Graph g = FoldedNet();
  auto q = Make(Backend::kXnnpack);
  ASSERT_TRUE(q->Annotate(g).ok());
  ASSERT_TRUE(q->Validate(g).ok());
  // conv1 -> relu1 is one pattern: conv1 gets input, weight and bias specs, relu1 the output.
  const QuantizationAnnotation* conv1 = AnnotationOf(g, "conv1");
  ASSERT_NE(conv1, nullptr);
  EXPECT_EQ(conv1->input_qspec_map.size(), 3u);
  EXPECT_FALSE(conv1->output_qspec.has_value());
  EXPECT_TRUE(
      std::holds_alternative<DerivedQuantizationSpec>(*conv1->InputSpec(InputOf(g, "conv1", 2))));
  EXPECT_TRUE(AnnotationOf(g, "relu1")->output_qspec.has_value());
  // maxpool: output shares the input edge.
  const QuantizationAnnotation* pool = AnnotationOf(g, "maxpool");
  ASSERT_TRUE(pool->output_qspec.has_value());
  EXPECT_TRUE(std::holds_alternative<SharedQuantizationSpec>(*pool->output_qspec));

  const PreparedModel prepared = Ok(Prepare(g));
  const NodeId relu1 = Ok(g.FindNode("relu1"));
  const NodeId maxpool = Ok(g.FindNode("maxpool"));
  EXPECT_EQ(Ok(prepared.SlotOf(EdgeOrNode::Output(relu1))),
            Ok(prepared.SlotOf(EdgeOrNode::Output(maxpool))));
}

TEST(BackendQuantizerTest, X86UsesUint8Activations) {
  Graph g = FoldedNet();
  ASSERT_TRUE(Make(Backend::kX86)->Annotate(g).ok());
  const QuantizationSpec* act = InputSpec(g, "conv2", InputOf(g, "conv2", 0));
  ASSERT_NE(act, nullptr);
  EXPECT_EQ(act->format().dtype, DType::kUInt8);
  EXPECT_EQ(AnnotationOf(g, "conv2")->InputSpec(InputOf(g, "conv2", 2)), nullptr);  // fp32 bias
}

TEST(BackendQuantizerTest, TensorRTQuantizesInputsOnlyAndTheResidualBranch) {
  Graph g = FoldedNet();
  ASSERT_TRUE(Make(Backend::kTensorRT)->Annotate(g).ok());
  for (const NodeId id : g.node_ids()) {
    const auto& a = g.node(id).annotation;
    if (a != nullptr) {
      EXPECT_FALSE(a->output_qspec.has_value()) << g.node(id).name;
    }
  }
  // add(conv2, maxpool): only the shortcut (maxpool's output) is quantized at the add.
  const QuantizationAnnotation* add = AnnotationOf(g, "add");
  ASSERT_NE(add, nullptr);
  ASSERT_EQ(add->input_qspec_map.size(), 1u);
  EXPECT_EQ(add->input_qspec_map[0].first, Ok(g.FindNode("maxpool")));
  EXPECT_NE(InputSpec(g, "conv2", InputOf(g, "conv2", 0)), nullptr);
  EXPECT_NE(InputSpec(g, "fc", InputOf(g, "fc", 0)), nullptr);
}

TEST(BackendQuantizerTest, ValidateRefusesUnfoldedBatchNorm) {
  Graph g = testing::SmallResidualNet();
  auto q = Make(Backend::kXnnpack);
  ASSERT_TRUE(q->Annotate(g).ok());
  const absl::Status s = q->Validate(g);
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("FoldBatchNorm"));
}

// Tutorial test 6: name > type > global, module prefixes, leave-in-float.
TEST(ConfigTableTest, PrecedenceAndLeaveInFloat) {
  Graph g = FoldedNet();
  auto q = Make(Backend::kXnnpack);
  q->configs().SetOpType(OpKind::kConv2d, QuantizationConfig::Float());
  q->configs().SetNodeName("conv2", q->default_config());  // name beats type
  q->configs().SetNodeName("fc", QuantizationConfig::Float());
  ASSERT_TRUE(q->Annotate(g).ok());
  // conv1 (type: float) is claimed with no specs, and so is its relu.
  EXPECT_TRUE(IsAnnotated(g, Ok(g.FindNode("conv1"))));
  EXPECT_TRUE(AnnotationOf(g, "conv1")->input_qspec_map.empty());
  EXPECT_FALSE(AnnotationOf(g, "relu1")->output_qspec.has_value());
  EXPECT_FALSE(AnnotationOf(g, "conv2")->input_qspec_map.empty());
  EXPECT_TRUE(AnnotationOf(g, "fc")->input_qspec_map.empty());
  EXPECT_FALSE(AnnotationOf(g, "fc")->output_qspec.has_value());
}

TEST(ConfigTableTest, ModulePrefixMatchesWholeComponents) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {1, 2, 4, 4}));
  testing::Conv(g, "layer1.0.conv1", x, 2, 2, 1, 1, 0, 1);
  testing::Conv(g, "layer10.conv", x, 2, 2, 1, 1, 0, 2);
  ConfigTable table;
  QuantizationConfig weight_only;
  weight_only.quantize_bias = true;
  table.SetGlobal(QuantizationConfig::Float());
  table.SetNodeName("layer1", weight_only);
  table.SetNodeName("layer1.0", QuantizationConfig::Float());  // longer prefix wins
  table.SetNodeName("layer1.0.conv1", weight_only);            // exact name, longest of all
  EXPECT_TRUE(table.For(g, Ok(g.FindNode("layer1.0.conv1")))->quantize_bias);
  EXPECT_TRUE(table.For(g, Ok(g.FindNode("layer10.conv")))->is_float());  // not under layer1
}

// A quantizer that (wrongly) re-annotates every conv2d.
class OverwritingQuantizer : public Quantizer {
 public:
  std::string name() const override { return "overwriter"; }
  absl::Status Annotate(Graph& graph) override {
    for (const NodeId id : graph.node_ids()) {
      if (graph.node(id).op != OpKind::kConv2d) continue;
      QuantizationAnnotation a;
      a.annotated = true;
      QLAB_RETURN_IF_ERROR(SetAnnotation(graph, id, a, /*allow_overwrite=*/true));
    }
    return absl::OkStatus();
  }
};

// Tutorial test 7.
TEST(ComposableQuantizerTest, RefusesOverwrite) {
  Graph g = FoldedNet();
  std::vector<std::unique_ptr<Quantizer>> parts;
  parts.push_back(Make(Backend::kXnnpack));
  parts.push_back(std::make_unique<OverwritingQuantizer>());
  ComposableQuantizer composed(std::move(parts));
  const absl::Status s = composed.Annotate(g);
  ASSERT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("overwriter"));
  EXPECT_THAT(s.message(), HasSubstr("%conv1"));
  EXPECT_THAT(s.message(), HasSubstr("xnnpack"));
}

TEST(ComposableQuantizerTest, LaterQuantizerTakesWhatEarlierLeft) {
  Graph g = FoldedNet();
  auto first = Make(Backend::kX86);
  // The first quantizer takes only conv1 (uint8); everything else is left unclaimed.
  first->configs() = ConfigTable();
  first->configs().SetNodeName("conv1", first->default_config());
  std::vector<std::unique_ptr<Quantizer>> parts;
  parts.push_back(std::move(first));
  parts.push_back(Make(Backend::kXnnpack));
  ComposableQuantizer composed(std::move(parts));
  ASSERT_TRUE(composed.Annotate(g).ok());
  EXPECT_EQ(InputSpec(g, "conv1", InputOf(g, "conv1", 0))->format().dtype, DType::kUInt8);
  EXPECT_EQ(InputSpec(g, "conv2", InputOf(g, "conv2", 0))->format().dtype, DType::kInt8);
}

// Tutorial test 10: the converted conv-bn-relu-pool-add network run by the interpreter stays
// within about one quantization step of the float network's logits, for every backend.
TEST(FlowTest, ConvertedNetworkTracksTheFloatNetwork) {
  for (const Backend backend : {Backend::kXnnpack, Backend::kX86, Backend::kTensorRT}) {
    SCOPED_TRACE(BackendName(backend));
    const Graph float_graph = FoldedNet();
    auto quantizer = Make(backend);
    PreparedModel prepared = Ok(PrepareWith(float_graph, *quantizer));
    for (uint32_t seed = 0; seed < 8; ++seed) {
      ASSERT_TRUE(prepared.Calibrate({UniformTensor({2, 3, 12, 12}, -1.0f, 1.0f, seed)}).ok());
    }
    const Graph converted = Ok(Convert(prepared));
    // The step the logits are measured in: the fc output's scale where the backend quantizes
    // it (xnnpack, x86); tensorrt leaves outputs float, so use the step an int8 per-tensor
    // quantization of the calibrated logits range would have.
    const NodeId fc = Ok(float_graph.FindNode("fc"));
    float step = 0.0f;
    if (prepared.SlotOf(EdgeOrNode::Output(fc)).ok()) {
      step = Ok(prepared.SlotQParams(Ok(prepared.SlotOf(EdgeOrNode::Output(fc))))).scales[0];
    }
    int64_t within_one_step = 0, count = 0;
    float max_steps = 0.0f;
    // Probed on the calibration batches: min-max ranges then cover every value, so what is
    // measured is rounding error, not clipping (data outside the calibrated range saturates,
    // by design, and says nothing about convert's correctness).
    for (uint32_t seed = 0; seed < 8; ++seed) {
      const Tensor probe = UniformTensor({2, 3, 12, 12}, -1.0f, 1.0f, seed);
      const Tensor expected = Ok(RunGraph(float_graph, {probe})).outputs[0];
      const Tensor actual = Ok(RunGraph(converted, {probe})).outputs[0];
      ASSERT_EQ(actual.shape(), expected.shape());
      if (step == 0.0f) {
        const Range r = Ok(TensorMinMax(expected));
        step = std::max(-r.min, r.max) / 127.0f;
      }
      for (int64_t i = 0; i < expected.numel(); ++i) {
        const float steps = std::fabs(expected.data<float>()[i] - actual.data<float>()[i]) / step;
        max_steps = std::max(max_steps, steps);
        within_one_step += steps <= 1.0f;
        ++count;
      }
    }
    // The output's own rounding costs up to half a step; input, weight and intermediate
    // rounding through three quantized layers add a fraction of a step on average but can line
    // up on single logits. So: nearly all logits within one step, none beyond two.
    EXPECT_GE(within_one_step, count * 9 / 10) << within_one_step << " of " << count;
    EXPECT_LE(max_steps, 2.0f);
    EXPECT_GT(max_steps, 0.0f);  // it was really quantized
    std::printf("%s: %lld of %lld logits within one step, max %.2f steps\n", BackendName(backend),
                static_cast<long long>(within_one_step), static_cast<long long>(count), max_steps);
  }
}

}  // namespace
}  // namespace qlab
