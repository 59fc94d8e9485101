// FindChains / FindNodes on small hand-built graphs: the fused patterns quantizers look for
// (conv -> bn -> relu, conv -> relu, linear -> relu, add -> relu), the cases that must not match
// (an intermediate with a second user, an intermediate that is a graph output, a value fed as
// second input) and non-overlap of matches.
#include "quant/graph/patterns.h"

#include <vector>

#include "core/tensor.h"
#include "gtest/gtest.h"
#include "quant/graph/graph.h"

namespace qlab {
namespace {

using Ids = std::vector<NodeId>;

std::vector<Ids> Nodes(const std::vector<Chain>& chains) {
  std::vector<Ids> out;
  for (const Chain& c : chains) out.push_back(c.nodes);
  return out;
}

// A graph builder for conv / bn / linear layers with zero parameters (only structure matters).
class Net {
 public:
  Net() { x = *g.AddInput("x", {1, 4, 8, 8}); }
  NodeId Conv(NodeId in) {
    const NodeId w = *g.AddParameter("", *Tensor::Create(DType::kFloat32, {4, 4, 3, 3}));
    Conv2dAttrs same;
    same.padding = {1, 1};
    return *g.AddNode(OpKind::kConv2d, "", {in, w}, same);
  }
  NodeId Bn(NodeId in) {
    std::vector<NodeId> inputs = {in};
    for (int i = 0; i < 4; ++i) {
      inputs.push_back(*g.AddParameter("", *Tensor::Create(DType::kFloat32, {4})));
    }
    return *g.AddNode(OpKind::kBatchNorm, "", inputs);
  }
  NodeId Op(OpKind op, std::vector<NodeId> in) { return *g.AddNode(op, "", std::move(in)); }
  Graph g;
  NodeId x;
};

TEST(FindChainsTest, ConvBnRelu) {
  Net n;
  const NodeId conv = n.Conv(n.x);
  const NodeId bn = n.Bn(conv);
  const NodeId relu = n.Op(OpKind::kRelu, {bn});
  const NodeId conv2 = n.Conv(relu);
  const NodeId bn2 = n.Bn(conv2);  // no relu after it
  ASSERT_TRUE(n.g.SetOutputs({bn2}).ok());

  const std::vector<Chain> chains =
      FindChains(n.g, {OpKind::kConv2d, OpKind::kBatchNorm, OpKind::kRelu});
  ASSERT_EQ(chains.size(), 1u);
  EXPECT_EQ(chains[0].nodes, Ids({conv, bn, relu}));
  EXPECT_EQ(chains[0].first(), conv);
  EXPECT_EQ(chains[0].last(), relu);
  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kConv2d, OpKind::kBatchNorm})),
            std::vector<Ids>({{conv, bn}, {conv2, bn2}}));
  // Single-op patterns are every node of that kind.
  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kRelu})), std::vector<Ids>({{relu}}));
  EXPECT_TRUE(FindChains(n.g, {}).empty());
}

TEST(FindChainsTest, ConvReluLinearReluAddRelu) {
  Net n;
  const NodeId conv = n.Conv(n.x);
  const NodeId relu1 = n.Op(OpKind::kRelu, {conv});
  const NodeId add = n.Op(OpKind::kAdd, {relu1, n.x});
  const NodeId relu2 = n.Op(OpKind::kRelu, {add});
  const NodeId flat = n.Op(OpKind::kFlatten, {n.Op(OpKind::kAdaptiveAvgPool2d, {relu2})});
  const NodeId fc =
      *n.g.AddNode(OpKind::kLinear, "fc",
                   {flat, *n.g.AddParameter("", *Tensor::Create(DType::kFloat32, {3, 4}))});
  const NodeId relu3 = n.Op(OpKind::kRelu, {fc});
  ASSERT_TRUE(n.g.SetOutputs({relu3}).ok());

  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kConv2d, OpKind::kRelu})),
            std::vector<Ids>({{conv, relu1}}));
  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kAdd, OpKind::kRelu})),
            std::vector<Ids>({{add, relu2}}));
  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kLinear, OpKind::kRelu})),
            std::vector<Ids>({{fc, relu3}}));
  EXPECT_EQ(FindNodes(n.g, OpKind::kRelu), Ids({relu1, relu2, relu3}));
  EXPECT_TRUE(FindNodes(n.g, OpKind::kSigmoid).empty());
}

TEST(FindChainsTest, NoMatchThroughASecondUserOrAGraphOutput) {
  Net n;
  // conv_a feeds relu_a and (as a second user) the add: fusing would hide conv_a's output.
  const NodeId conv_a = n.Conv(n.x);
  const NodeId relu_a = n.Op(OpKind::kRelu, {conv_a});
  const NodeId add = n.Op(OpKind::kAdd, {relu_a, conv_a});
  // conv_b's output is a graph output itself.
  const NodeId conv_b = n.Conv(add);
  const NodeId relu_b = n.Op(OpKind::kRelu, {conv_b});
  // conv_c reaches the relu-free add only as its second input.
  const NodeId conv_c = n.Conv(relu_b);
  const NodeId add2 = n.Op(OpKind::kAdd, {relu_b, conv_c});
  ASSERT_TRUE(n.g.SetOutputs({add2, conv_b}).ok());

  EXPECT_TRUE(FindChains(n.g, {OpKind::kConv2d, OpKind::kRelu}).empty());
  EXPECT_TRUE(FindChains(n.g, {OpKind::kConv2d, OpKind::kAdd}).empty());
  // relu_a -> add as first input, relu_a's only user: a match. relu_b also feeds conv_c: none.
  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kRelu, OpKind::kAdd})),
            std::vector<Ids>({{relu_a, add}}));
}

TEST(FindChainsTest, MatchesDoNotOverlapAndTheEarliestWins) {
  Net n;
  // relu -> relu -> relu -> relu with pattern (relu, relu): the first two and the last two.
  const NodeId r1 = n.Op(OpKind::kRelu, {n.x});
  const NodeId r2 = n.Op(OpKind::kRelu, {r1});
  const NodeId r3 = n.Op(OpKind::kRelu, {r2});
  const NodeId r4 = n.Op(OpKind::kRelu, {r3});
  const NodeId r5 = n.Op(OpKind::kRelu, {r4});
  ASSERT_TRUE(n.g.SetOutputs({r5}).ok());
  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kRelu, OpKind::kRelu})),
            std::vector<Ids>({{r1, r2}, {r3, r4}}));
  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kRelu, OpKind::kRelu, OpKind::kRelu})),
            std::vector<Ids>({{r1, r2, r3}}));
}

TEST(FindChainsTest, OrderIsTopologicalNotCreation) {
  Net n;
  const NodeId late_conv = n.Conv(n.x);  // created first, runs last after rewiring
  const NodeId late_relu = n.Op(OpKind::kRelu, {late_conv});
  const NodeId early_conv = n.Conv(n.x);
  const NodeId early_relu = n.Op(OpKind::kRelu, {early_conv});
  ASSERT_TRUE(n.g.ReplaceInput(late_conv, 0, early_relu).ok());
  ASSERT_TRUE(n.g.SetOutputs({late_relu}).ok());
  EXPECT_EQ(Nodes(FindChains(n.g, {OpKind::kConv2d, OpKind::kRelu})),
            std::vector<Ids>({{early_conv, early_relu}, {late_conv, late_relu}}));
  EXPECT_EQ(FindNodes(n.g, OpKind::kConv2d), Ids({early_conv, late_conv}));
}

}  // namespace
}  // namespace qlab
