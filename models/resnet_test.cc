// ResNet builders without PyTorch: the registry, the architecture facts a wrong builder would
// get wrong (parameter counts as torchvision / the paper state them, node names, shortcut kinds,
// output shapes for any batch), placeholders, and builder errors. Agreement of the computed
// logits with PyTorch is resnet_conformance_test's and resnet_pretrained_test's job.
#include "models/resnet.h"

#include <string>

#include "gtest/gtest.h"
#include "quant/graph/interpreter.h"

namespace qlab {
namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Graph Build(const std::string& name, ParameterInit init = ParameterInit::kDeterministic,
            int64_t batch = 1) {
  ResNetOptions options;
  options.init = init;
  options.batch = batch;
  absl::StatusOr<Graph> g = BuildResNet(*ModelByName(name), options);
  EXPECT_TRUE(g.ok()) << name << ": " << g.status();
  return *std::move(g);
}

// Learnable parameters (weights and biases, not running statistics), as
// sum(p.numel() for p in model.parameters()) counts them.
int64_t LearnableParameters(const Graph& g) {
  int64_t total = 0;
  for (NodeId id : g.node_ids()) {
    const Node& n = g.node(id);
    if (n.op != OpKind::kParameter) continue;
    if (Contains(n.name, "running_")) continue;
    total += n.value.numel();
  }
  return total;
}

int ParameterTensors(const Graph& g) {
  int count = 0;
  for (NodeId id : g.node_ids()) count += g.node(id).op == OpKind::kParameter;
  return count;
}

TEST(ResNetTest, RegistryKnowsTheIssueModels) {
  EXPECT_EQ(ModelNames(), (std::vector<std::string>{"resnet18", "resnet50", "resnet18_cifar",
                                                    "resnet50_cifar", "resnet20", "resnet32",
                                                    "resnet44", "resnet56"}));
  absl::StatusOr<ResNetSpec> bad = ModelByName("resnet19");
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(bad.status().message()), "resnet19"));
  EXPECT_TRUE(Contains(std::string(bad.status().message()), "resnet18, resnet50")) << bad.status();
}

// Counts from PyTorch 1.13 / torchvision 0.14 (parameters(); state_dict() length minus one
// num_batches_tracked per batch norm).
TEST(ResNetTest, ParameterCountsMatchPyTorch) {
  struct Case {
    const char* name;
    int64_t learnable;
    int tensors;
  };
  const Case cases[] = {
      {"resnet18", 11689512, 122 - 20},      {"resnet50", 25557032, 320 - 53},
      {"resnet18_cifar", 11173962, 122 - 20}, {"resnet50_cifar", 23520842, 320 - 53},
      {"resnet20", 269722, 116 - 19},         {"resnet32", 464154, 188 - 31},
      {"resnet44", 658586, 260 - 43},         {"resnet56", 853018, 332 - 55},
  };
  for (const Case& c : cases) {
    const Graph g = Build(c.name, ParameterInit::kZeros);
    EXPECT_EQ(LearnableParameters(g), c.learnable) << c.name;
    EXPECT_EQ(ParameterTensors(g), c.tensors) << c.name;
  }
}

TEST(ResNetTest, NamesAndShortcutsFollowPyTorch) {
  const Graph r18 = Build("resnet18", ParameterInit::kZeros);
  EXPECT_EQ(r18.node(*r18.FindNode("maxpool")).op, OpKind::kMaxPool2d);
  EXPECT_FALSE(r18.FindNode("layer1.0.downsample.0").ok());  // 64 → 64, stride 1: identity
  EXPECT_EQ(r18.node(*r18.FindNode("layer2.0.downsample.0")).op, OpKind::kConv2d);
  EXPECT_EQ(r18.node(*r18.FindNode("layer2.0.downsample.1.running_var")).shape, Shape({128}));
  EXPECT_EQ(r18.node(*r18.FindNode("fc.weight")).shape, Shape({1000, 512}));
  EXPECT_EQ(r18.node(*r18.FindNode("layer4.1.relu_1")).shape, Shape({1, 512, 7, 7}));

  const Graph r50 = Build("resnet50", ParameterInit::kZeros);
  // Bottleneck: stride on the 3×3 conv (v1.5), and a downsample already in layer1 (64 → 256).
  EXPECT_EQ(r50.node(*r50.FindNode("layer1.0.downsample.0.weight")).shape,
            Shape({256, 64, 1, 1}));
  const Node& conv2 = r50.node(*r50.FindNode("layer2.0.conv2"));
  EXPECT_EQ((conv2.attr<Conv2dAttrs>().stride), (std::array<int64_t, 2>{2, 2}));
  EXPECT_EQ(r50.node(*r50.FindNode("layer2.0.conv1")).attr<Conv2dAttrs>().stride[0], 1);
  EXPECT_EQ(r50.node(*r50.FindNode("fc.weight")).shape, Shape({1000, 2048}));

  const Graph c18 = Build("resnet18_cifar", ParameterInit::kZeros);
  EXPECT_FALSE(c18.FindNode("maxpool").ok());
  EXPECT_EQ(c18.node(*c18.FindNode("conv1.weight")).shape, Shape({64, 3, 3, 3}));
  EXPECT_EQ(c18.node(*c18.FindNode("layer4.1.relu_1")).shape, Shape({1, 512, 4, 4}));

  const Graph r20 = Build("resnet20", ParameterInit::kZeros);
  EXPECT_FALSE(r20.FindNode("layer1.0.shortcut").ok());
  const Node& pad = r20.node(*r20.FindNode("layer3.0.shortcut"));
  EXPECT_EQ(pad.op, OpKind::kChannelPad);
  EXPECT_EQ(pad.attr<ChannelPadAttrs>().before, 16);  // planes / 4 = 64 / 4
  EXPECT_EQ(pad.attr<ChannelPadAttrs>().after, 16);
  EXPECT_EQ(pad.shape, Shape({1, 64, 8, 8}));
  const Node& slice = r20.node(*r20.FindNode("layer2.0.shortcut.slice"));
  EXPECT_EQ(slice.shape, Shape({1, 16, 16, 16}));
  EXPECT_EQ(r20.node(*r20.FindNode("linear.weight")).shape, Shape({10, 64}));
  EXPECT_EQ(r20.node(r20.outputs()[0]).name, "linear");
}

TEST(ResNetTest, RunsAtAnyBatchAndZerosGiveZeros) {
  const Graph g = Build("resnet20", ParameterInit::kDeterministic, /*batch=*/1);
  Tensor x = *Tensor::Create(DType::kFloat32, {3, 3, 32, 32});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i % 7) - 3.0f;
  absl::StatusOr<RunResult> r = RunGraph(g, {x});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outputs[0].shape(), Shape({3, 10}));
  float max_abs = 0;
  for (int64_t i = 0; i < 30; ++i) max_abs = std::max(max_abs, std::abs(r->outputs[0].data<float>()[i]));
  EXPECT_GT(max_abs, 0.0f);  // deterministic placeholders make a non-trivial network

  const Graph zeros = Build("resnet20", ParameterInit::kZeros);
  r = RunGraph(zeros, {x});
  ASSERT_TRUE(r.ok());
  for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(r->outputs[0].data<float>()[i], 0.0f);

  // The same seed gives the same placeholders.
  const Graph again = Build("resnet20");
  EXPECT_EQ(again.node(*again.FindNode("layer2.1.conv1.weight")).value.data<float>()[5],
            g.node(*g.FindNode("layer2.1.conv1.weight")).value.data<float>()[5]);
}

TEST(ResNetTest, BadSpecsAndWeightsAreErrors) {
  ResNetSpec spec = *ModelByName("resnet18");
  spec.blocks_per_stage = {2, 2};
  EXPECT_EQ(BuildResNet(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec = *ModelByName("resnet20");
  spec.blocks_per_stage = {3, 0, 3};
  EXPECT_EQ(BuildResNet(spec).status().code(), absl::StatusCode::kInvalidArgument);
  ResNetOptions options;
  options.batch = 0;
  EXPECT_EQ(BuildResNet(*ModelByName("resnet20"), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Weights of another model: the error names the model and the differences.
  const StateDict r20 = ExtractStateDict(Build("resnet20", ParameterInit::kZeros));
  absl::StatusOr<Graph> wrong = BuildResNet(*ModelByName("resnet32"), r20);
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(Contains(std::string(wrong.status().message()), "model \"resnet32\""));
  EXPECT_TRUE(Contains(std::string(wrong.status().message()), "missing (layer1.3."))
      << wrong.status();
}

}  // namespace
}  // namespace qlab
