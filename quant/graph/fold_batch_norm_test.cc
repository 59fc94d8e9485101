// FoldBatchNorm: the folded graph, run by the interpreter, against the unfolded one on random
// data (conv with and without bias, grouped conv, linear), the rewritten structure (names,
// removed nodes, untouched originals), what must not be folded, and bad statistics.
//
// Tolerance. Folding reassociates float math: unfolded computes bn(conv(x, W) + b) as
// (sum x*W + b) * alpha + shift, folded computes sum x*(W*s) + b', with W*s and b' rounded once
// from double. The two differ by the rounding of each folded weight (relative 2^-24) and by the
// K-term float32 sums being rounded at different points (their terms are scaled by s): random-
// sign rounding errors of a K-term sum grow like sqrt(K) ulps of the partial sums, which stay
// within a few times the output scale for these inputs. We allow
//     |folded - unfolded| <= 4 * sqrt(K) * ulp(max |unfolded output|)
// (ulp = 2^-23 relative; 24 ulps for K = 36), i.e. a few ulps per sqrt(term). Observed: under
// 1 ulp. A folding mistake is far outside: even dropping eps = 1e-5 against variances >= 0.05
// moves outputs by ~1e-4 relative (~800 ulps); a wrong channel's statistics by O(scale).
#include "quant/graph/fold_batch_norm.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "gtest/gtest.h"
#include "quant/graph/graph.h"
#include "quant/graph/interpreter.h"

namespace qlab {
namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Tensor Random(std::mt19937& rng, Shape shape, float lo, float hi) {
  Tensor t = *Tensor::Create(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

std::vector<float> Values(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

class Builder {
 public:
  explicit Builder(uint32_t seed) : rng(seed) {}
  NodeId Param(const std::string& name, Shape shape, float lo = -1.0f, float hi = 1.0f) {
    return *g.AddParameter(name, Random(rng, std::move(shape), lo, hi));
  }
  // batch_norm with realistic statistics: gamma around 1, variances in [0.05, 3].
  NodeId Bn(const std::string& name, NodeId in, int64_t channels) {
    return *g.AddNode(OpKind::kBatchNorm, name,
                      {in, Param(name + ".weight", {channels}, 0.5f, 1.5f),
                       Param(name + ".bias", {channels}), Param(name + ".running_mean", {channels}),
                       Param(name + ".running_var", {channels}, 0.05f, 3.0f)});
  }
  std::mt19937 rng;
  Graph g;
};

// Runs both graphs on the same input and compares with the tolerance of the file comment.
void ExpectSameOutputs(const Graph& unfolded, const Graph& folded, const Tensor& input, int64_t k) {
  const RunResult a = *RunGraph(unfolded, {input});
  const RunResult b = *RunGraph(folded, {input});
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t o = 0; o < a.outputs.size(); ++o) {
    ASSERT_EQ(a.outputs[o].shape(), b.outputs[o].shape());
    const std::vector<float> want = Values(a.outputs[o]), got = Values(b.outputs[o]);
    float scale = 0.0f;
    for (float v : want) scale = std::max(scale, std::abs(v));
    const double tolerance = 4.0 * std::sqrt(static_cast<double>(k)) * std::ldexp(scale, -23);
    double worst = 0.0;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
    }
    EXPECT_LE(worst, tolerance) << "output " << o << ", scale " << scale << ", K " << k;
  }
}

TEST(FoldBatchNormTest, ConvWithAndWithoutBiasGroupedAndLinear) {
  Builder b(2024);
  const NodeId x = *b.g.AddInput("x", {2, 4, 9, 9});
  Conv2dAttrs same;
  same.padding = {1, 1};
  // conv1 (bias) -> bn1 -> relu
  const NodeId conv1 = *b.g.AddNode(
      OpKind::kConv2d, "conv1",
      {x, b.Param("conv1.weight", {8, 4, 3, 3}, -0.2f, 0.2f), b.Param("conv1.bias", {8})}, same);
  const NodeId relu1 = *b.g.AddNode(OpKind::kRelu, "relu1", {b.Bn("bn1", conv1, 8)});
  // conv2 (no bias, groups 2, stride 2) -> bn2
  Conv2dAttrs grouped = same;
  grouped.groups = 2;
  grouped.stride = {2, 2};
  const NodeId conv2 =
      *b.g.AddNode(OpKind::kConv2d, "conv2",
                   {relu1, b.Param("conv2.weight", {6, 4, 3, 3}, -0.3f, 0.3f)}, grouped);
  const NodeId bn2 = b.Bn("bn2", conv2, 6);
  // linear -> bn (BatchNorm1d)
  const NodeId flat = *b.g.AddNode(OpKind::kFlatten, "flat",
                                   {*b.g.AddNode(OpKind::kAdaptiveAvgPool2d, "gap", {bn2})});
  const NodeId fc = *b.g.AddNode(OpKind::kLinear, "fc", {flat, b.Param("fc.weight", {5, 6})});
  const NodeId bn3 = b.Bn("bn3", fc, 5);
  ASSERT_TRUE(b.g.SetOutputs({bn3, relu1}).ok());

  const Graph unfolded = b.g;
  const Tensor w1_before = unfolded.node(*unfolded.FindNode("conv1.weight")).value.Clone();
  Graph folded = b.g;
  const absl::StatusOr<int> count = FoldBatchNorm(folded);
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 3);

  // Structure: no batch_norm left, layers keep their names and read the folded parameters,
  // the outputs are redirected to the layers, the old parameters are gone.
  const std::string dump = folded.Dump();
  EXPECT_FALSE(Contains(dump, "batch_norm")) << dump;
  EXPECT_TRUE(Contains(dump, "= conv2d(%x, %conv1.weight_folded, %conv1.bias_folded,")) << dump;
  EXPECT_TRUE(Contains(dump, "= conv2d(%relu1, %conv2.weight_folded, %conv2.bias_folded,")) << dump;
  EXPECT_TRUE(Contains(dump, "= linear(%flat, %fc.weight_folded, %fc.bias_folded)")) << dump;
  EXPECT_EQ(folded.outputs(), std::vector<NodeId>({fc, relu1}));
  for (const char* gone : {"bn1", "bn1.running_var", "conv1.weight", "conv1.bias", "conv2.weight",
                           "fc.weight", "bn3.bias"}) {
    EXPECT_EQ(folded.FindNode(gone).status().code(), absl::StatusCode::kNotFound) << gone;
  }
  // The original graph and its parameter tensors are untouched.
  EXPECT_TRUE(Contains(unfolded.Dump(), "batch_norm(%conv1, %bn1.weight"));
  EXPECT_EQ(Values(unfolded.node(*unfolded.FindNode("conv1.weight")).value), Values(w1_before));

  // 4 * 3 * 3 = 36 terms per conv1 output (the grouped conv: 2 * 9 = 18, linear: 6).
  for (const int64_t batch : {2, 3}) {
    ExpectSameOutputs(unfolded, folded, Random(b.rng, {batch, 4, 9, 9}, -1.0f, 1.0f), 36);
  }
  // Folding again finds nothing.
  EXPECT_EQ(*FoldBatchNorm(folded), 0);
}

TEST(FoldBatchNormTest, LayerWithASecondUserIsNotFolded) {
  Builder b(7);
  const NodeId x = *b.g.AddInput("x", {1, 3, 6, 6});
  const NodeId conv =
      *b.g.AddNode(OpKind::kConv2d, "conv", {x, b.Param("conv.weight", {4, 3, 3, 3})});
  const NodeId bn = b.Bn("bn", conv, 4);
  const NodeId relu = *b.g.AddNode(OpKind::kRelu, "relu", {conv});  // second reader of conv
  // A conv whose output is itself a graph output is not folded either.
  const NodeId conv_out =
      *b.g.AddNode(OpKind::kConv2d, "conv_out", {x, b.Param("conv_out.weight", {4, 3, 3, 3})});
  const NodeId bn_out = b.Bn("bn_out", conv_out, 4);
  // Nor is a batch_norm after something other than conv / linear.
  const NodeId bn_relu = b.Bn("bn_relu", relu, 4);
  ASSERT_TRUE(b.g.SetOutputs({bn, bn_out, conv_out, bn_relu}).ok());
  const std::string before = b.g.Dump();
  EXPECT_EQ(*FoldBatchNorm(b.g), 0);
  EXPECT_EQ(b.g.Dump(), before);
}

TEST(FoldBatchNormTest, BadStatisticsAreRejectedBeforeAnyRewrite) {
  Builder b(8);
  const NodeId x = *b.g.AddInput("x", {1, 3, 6, 6});
  const NodeId good =
      b.Bn("good_bn", *b.g.AddNode(OpKind::kConv2d, "conv_a", {x, b.Param("wa", {4, 3, 3, 3})}), 4);
  const NodeId bad =
      b.Bn("bad_bn", *b.g.AddNode(OpKind::kConv2d, "conv_b", {x, b.Param("wb", {4, 3, 3, 3})}), 4);
  ASSERT_TRUE(b.g.SetOutputs({good, bad}).ok());
  // A negative variance (e.g. from a corrupt checkpoint) in a new tensor, as passes do.
  Tensor var = b.g.node(*b.g.FindNode("bad_bn.running_var")).value.Clone();
  var.data<float>()[2] = -0.5f;
  b.g.mutable_node(*b.g.FindNode("bad_bn.running_var")).value = var;
  const std::string before = b.g.Dump();

  absl::StatusOr<int> r = FoldBatchNorm(b.g);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_PRED2(Contains, std::string(r.status().message()),
               std::string("batch_norm \"bad_bn\": running_var[2] = -0.5"));
  EXPECT_EQ(b.g.Dump(), before);  // conv_a -> good_bn was not folded either

  var.data<float>()[2] = std::nanf("");
  b.g.mutable_node(*b.g.FindNode("bad_bn.running_var")).value = var;
  EXPECT_EQ(FoldBatchNorm(b.g).status().code(), absl::StatusCode::kInvalidArgument);

  // Statistics of the wrong length (a parameter swapped without re-running InferShapes).
  var = *Tensor::Create(DType::kFloat32, {5});
  b.g.mutable_node(*b.g.FindNode("bad_bn.running_var")).value = var;
  r = FoldBatchNorm(b.g);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_PRED2(Contains, std::string(r.status().message()),
               std::string("batch_norm \"bad_bn\": running_var is float32[5]"));
}

}  // namespace
}  // namespace qlab
