// Tests of engine/fp32_engine.h: the engine's outputs against quant/graph's reference interpreter
// (RunGraph, on the unfolded graph) for seeded random ResNet-like graphs (stems, max/avg pools,
// batch norms folded and unfolded, basic blocks with identity, 1x1 and option-A shortcuts,
// global pooling, flatten, linear, several outputs) and for models/resnet.h's CIFAR ResNet20 and
// a 64x64 torchvision ResNet18, at the build batch and at another batch; plus 1 vs 2 threads and
// the errors.
//
// Tolerance: |engine - interpreter| <= 1e-4 * max(1, max |interpreter output|). Both compute in
// float32 but sum in different orders (the engine with FMA over (kh, kw, ic), the interpreter per
// input channel plane) and the engine folds batch norm into the weights (one more rounding per
// weight): each layer's relative difference is a few ulps times sqrt(K) typically and below
// gamma_K ~ K * 6e-8 = 2.8e-4 (K = 4608) in the worst case, compounding over ~20 layers; measured
// differences are ~1e-6 relative. A wrong tap, index or fusion changes outputs by O(1).

#include "engine/fp32_engine.h"

#include <pthreadpool.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "models/resnet.h"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/prepare.h"
#include "quant/graph/graph.h"
#include "quant/graph/interpreter.h"

namespace qlab {
namespace {

constexpr uint32_t kBaseSeed = 20261204;

Tensor RandomTensor(Shape shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f,
                    Layout layout = Layout::kRowMajor) {
  Tensor t = Tensor::Create(DType::kFloat32, std::move(shape), layout).value();
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// Builds seeded random ResNet-like graphs node by node (names unique by a counter).
class NetBuilder {
 public:
  explicit NetBuilder(uint32_t seed) : rng_(seed) {}

  Graph& graph() { return graph_; }
  std::mt19937& rng() { return rng_; }

  NodeId Input(int64_t batch, int64_t c, int64_t h, int64_t w) {
    return graph_.AddInput("x", {batch, c, h, w}).value();
  }
  NodeId Conv(NodeId x, int64_t out_c, int64_t kernel, int64_t stride, int64_t pad, bool bias) {
    const int64_t in_c = graph_.node(x).shape[1];
    const float bound = std::sqrt(6.0f / static_cast<float>(in_c * kernel * kernel));
    std::vector<NodeId> inputs = {
        x, Param(RandomTensor({out_c, in_c, kernel, kernel}, rng_, -bound, bound))};
    if (bias) inputs.push_back(Param(RandomTensor({out_c}, rng_, -0.5f, 0.5f)));
    Conv2dAttrs a;
    a.stride = {stride, stride};
    a.padding = {pad, pad};
    return Node(OpKind::kConv2d, inputs, a);
  }
  NodeId BatchNorm(NodeId x) {
    const int64_t c = graph_.node(x).shape[1];
    return Node(OpKind::kBatchNorm,
                {x, Param(RandomTensor({c}, rng_, 0.5f, 1.5f)),
                 Param(RandomTensor({c}, rng_, -0.5f, 0.5f)),
                 Param(RandomTensor({c}, rng_, -0.5f, 0.5f)),
                 Param(RandomTensor({c}, rng_, 0.5f, 2.0f))},
                BatchNormAttrs{});
  }
  NodeId Relu(NodeId x) { return Node(OpKind::kRelu, {x}); }
  NodeId Add(NodeId a, NodeId b) { return Node(OpKind::kAdd, {a, b}); }
  NodeId Pool(OpKind op, NodeId x, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
    Pool2dAttrs a;
    a.kernel = {kernel, kernel};
    a.stride = {stride, stride};
    a.padding = {pad, pad};
    a.ceil_mode = ceil_mode;
    a.count_include_pad = (rng_() % 2) == 0;
    return Node(op, {x}, a);
  }
  NodeId Node(OpKind op, std::vector<NodeId> inputs, NodeAttrs attrs = {}) {
    return graph_.AddNode(op, "n" + std::to_string(counter_++), std::move(inputs), attrs)
        .value();
  }
  NodeId Param(Tensor t) {
    return graph_.AddParameter("p" + std::to_string(counter_++), std::move(t)).value();
  }

  // A He et al. basic block: conv-bn-relu-conv-bn + shortcut, add, relu. shortcut: 0 identity
  // (stride 1, same width), 1 conv 1x1 + bn, 2 option A (slice ::2 + zero channel padding).
  NodeId BasicBlock(NodeId x, int64_t out_c, int64_t stride, int shortcut) {
    const int64_t in_c = graph_.node(x).shape[1];
    NodeId y = Relu(BatchNorm(Conv(x, out_c, 3, stride, 1, false)));
    y = BatchNorm(Conv(y, out_c, 3, 1, 1, false));
    NodeId s = x;
    if (shortcut == 1) {
      s = BatchNorm(Conv(x, out_c, 1, stride, 0, false));
    } else if (shortcut == 2) {
      const Shape& shape = graph_.node(x).shape;
      StridedSliceAttrs slice;
      slice.begin = {0, 0, 0, 0};
      constexpr int64_t kAll = std::numeric_limits<int64_t>::max();  // clamped, like Python
      slice.end = {kAll, shape[1], kAll, shape[3]};
      slice.step = {1, 1, stride, stride};
      s = Node(OpKind::kStridedSlice, {x}, slice);
      ChannelPadAttrs pad;
      pad.before = (out_c - in_c) / 2;
      pad.after = out_c - in_c - pad.before;
      s = Node(OpKind::kChannelPad, {s}, pad);
    }
    return Relu(Add(y, s));
  }

 private:
  Graph graph_;
  std::mt19937 rng_;
  int counter_ = 0;
};

// A random ResNet-like network; `variant` picks the stem and the extras.
Graph RandomNet(uint32_t seed, int variant) {
  NetBuilder b(seed);
  std::mt19937& rng = b.rng();
  const int64_t batch = 2, size = 9 + static_cast<int64_t>(rng() % 6);
  NodeId x = b.Input(batch, 3, size, size + static_cast<int64_t>(rng() % 3));
  const int64_t width = 8 + static_cast<int64_t>(rng() % 12);
  if (variant % 2 == 0) {  // ImageNet-like stem: 7x7/2 conv, bn, relu, 3x3/2 max pool
    x = b.Relu(b.BatchNorm(b.Conv(x, width, 7, 2, 3, false)));
    x = b.Pool(OpKind::kMaxPool2d, x, 3, 2, 1, variant % 4 == 2);
  } else {  // CIFAR-like stem with a conv bias
    x = b.Relu(b.BatchNorm(b.Conv(x, width, 3, 1, 1, true)));
  }
  x = b.BasicBlock(x, width, 1, 0);
  x = b.BasicBlock(x, 2 * width, 2, 1 + variant % 2);
  NodeId side = kNoNode;
  if (variant % 3 == 0) {
    // An unfolded batch norm (after a pool, no conv before it) and an extra output.
    x = b.Pool(OpKind::kAvgPool2d, x, 2, 1, 1, false);
    x = b.Relu(b.BatchNorm(x));
    side = x;
  }
  x = b.Node(OpKind::kAdaptiveAvgPool2d, {x}, AdaptiveAvgPool2dAttrs{});
  x = b.Node(OpKind::kFlatten, {x}, FlattenAttrs{});
  const int64_t classes = 10;
  const int64_t features = b.graph().node(x).shape[1];
  x = b.Node(OpKind::kLinear,
             {x, b.Param(RandomTensor({classes, features}, rng, -0.3f, 0.3f)),
              b.Param(RandomTensor({classes}, rng))});
  std::vector<NodeId> outputs = {x};
  if (side != kNoNode) outputs.push_back(side);
  EXPECT_TRUE(b.graph().SetOutputs(outputs).ok());
  return std::move(b.graph());
}

// Engine vs interpreter on `graph` at `batch`, every output within the tolerance above.
void ExpectMatchesInterpreter(const Graph& graph, int64_t batch, int threads, uint32_t seed) {
  absl::StatusOr<Fp32Engine> engine = Fp32Engine::Create(graph, threads);
  ASSERT_TRUE(engine.ok()) << engine.status();
  Shape shape = graph.node(graph.inputs()[0]).shape;
  shape[0] = batch;
  std::mt19937 rng(seed);
  const Tensor input = RandomTensor(shape, rng, -1.0f, 1.0f, Layout::kNCHW);
  absl::StatusOr<std::vector<Tensor>> actual = engine->RunAll(input);
  ASSERT_TRUE(actual.ok()) << actual.status();
  absl::StatusOr<RunResult> expected = RunGraph(graph, {input});
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_EQ(actual->size(), expected->outputs.size());
  for (size_t o = 0; o < actual->size(); ++o) {
    const Tensor& a = (*actual)[o];
    const Tensor& e = expected->outputs[o];
    ASSERT_EQ(a.shape(), e.shape()) << "output " << o;
    float scale = 1.0f;
    for (int64_t i = 0; i < e.numel(); ++i) scale = std::max(scale, std::fabs(e.data<float>()[i]));
    const float tolerance = 1e-4f * scale;
    for (int64_t i = 0; i < e.numel(); ++i) {
      ASSERT_LE(std::fabs(a.data<float>()[i] - e.data<float>()[i]), tolerance)
          << "output " << o << " element " << i << " batch " << batch << " threads " << threads
          << " seed " << seed;
    }
  }
}

TEST(Fp32EngineTest, RandomResNetLikeGraphsMatchInterpreter) {
  for (int variant = 0; variant < 12; ++variant) {
    const uint32_t seed = kBaseSeed + static_cast<uint32_t>(variant);
    const Graph graph = RandomNet(seed, variant);
    SCOPED_TRACE(graph.Dump());
    ExpectMatchesInterpreter(graph, 2, 1, seed);
    ExpectMatchesInterpreter(graph, 3, 2, seed + 1000);  // another batch, two threads
  }
}

TEST(Fp32EngineTest, FusesBatchNormReluAndResidualAdds) {
  const Graph graph = RandomNet(kBaseSeed, 1);  // CIFAR stem, 2 blocks, no extras
  absl::StatusOr<Fp32Engine> engine = Fp32Engine::Create(graph, 1);
  ASSERT_TRUE(engine.ok()) << engine.status();
  // stem conv(+bn+relu); block 1: conv, conv(+add+relu); block 2: conv, shortcut (slice, pad)
  // then conv(+add+relu); global pool; linear (the flatten of a 1x1 map is an alias).
  EXPECT_EQ(engine->num_steps(), 9);
}

TEST(Fp32EngineTest, CifarResNet20MatchesInterpreter) {
  ResNetOptions options;
  options.batch = 2;
  options.seed = 7;
  absl::StatusOr<Graph> graph = BuildResNet(ModelByName("resnet20").value(), options);
  ASSERT_TRUE(graph.ok()) << graph.status();
  ExpectMatchesInterpreter(*graph, 2, 2, kBaseSeed + 50);
  ExpectMatchesInterpreter(*graph, 5, 1, kBaseSeed + 51);
}

TEST(Fp32EngineTest, TorchvisionResNet18At64MatchesInterpreter) {
  ResNetOptions options;
  options.batch = 1;
  options.image_size = 64;
  options.seed = 3;
  absl::StatusOr<Graph> graph = BuildResNet(ModelByName("resnet18").value(), options);
  ASSERT_TRUE(graph.ok()) << graph.status();
  ExpectMatchesInterpreter(*graph, 1, 2, kBaseSeed + 60);
}

// convert's Q/DQ reference model runs on the engine (weights folded, quantize -> dequantize
// pairs as fake-quantize steps) and agrees with the interpreter running the same graph.
TEST(Fp32EngineTest, ConvertedResNet20MatchesInterpreter) {
  ResNetOptions options;
  options.batch = 4;
  options.seed = 11;
  Graph model = BuildResNet(ModelByName("resnet20").value(), options).value();
  ASSERT_TRUE(FoldBatchNorm(model).ok());
  auto quantizer = BackendQuantizer::Create(Backend::kXnnpack, "minmax").value();
  PreparedModel prepared = PrepareWith(model, *quantizer).value();
  std::mt19937 rng(kBaseSeed + 70);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(prepared.Calibrate({RandomTensor({4, 3, 32, 32}, rng)}).ok());
  }
  const Graph converted = Convert(prepared).value();
  const int fc_slot = prepared.SlotOf(EdgeOrNode::Output(model.FindNode("linear").value())).value();
  const float logit_step = prepared.SlotQParams(fc_slot).value().scales[0];
  absl::StatusOr<Fp32Engine> engine = Fp32Engine::Create(converted, 2);
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (int trial = 0; trial < 3; ++trial) {
    const Tensor x = RandomTensor({4, 3, 32, 32}, rng);
    const Tensor expected = RunGraph(converted, {x}).value().outputs[0];
    const Tensor actual = engine->Run(x).value();
    ASSERT_EQ(actual.shape(), expected.shape());
    // The engine sums each conv in another order than the interpreter, so a value lying within
    // float rounding of a quantization boundary can land one step apart; such a flip moves the
    // logits by a fraction of a step per layer. Allow two logit steps; a wrong scale, zero point
    // or fold is off by far more. Most logits must agree exactly (no flip on their path).
    int64_t exact = 0;
    for (int64_t i = 0; i < expected.numel(); ++i) {
      const float diff = std::fabs(actual.data<float>()[i] - expected.data<float>()[i]);
      EXPECT_LE(diff, 2.0f * logit_step) << "logit " << i;
      exact += diff == 0.0f;
    }
    EXPECT_GE(exact, expected.numel() / 2);
  }
}

// Threads split every kernel by output tiles without changing any summation order.
TEST(Fp32EngineTest, TwoThreadsBitIdenticalToOne) {
  const Graph graph = RandomNet(kBaseSeed + 70, 0);
  std::mt19937 rng(kBaseSeed + 71);
  Shape shape = graph.node(graph.inputs()[0]).shape;
  const Tensor input = RandomTensor(shape, rng, -1.0f, 1.0f, Layout::kNCHW);
  Fp32Engine one = Fp32Engine::Create(graph, 1).value();
  Fp32Engine two = Fp32Engine::Create(graph, 2).value();
  const Tensor a = one.Run(input).value(), b = two.Run(input).value();
  ASSERT_EQ(a.numel(), b.numel());
  EXPECT_EQ(0, std::memcmp(a.data<float>(), b.data<float>(), a.nbytes()));
}

TEST(Fp32EngineTest, UnsupportedOpNamesTheNode) {
  NetBuilder b(kBaseSeed);
  NodeId x = b.Input(1, 4, 5, 5);
  Conv2dAttrs grouped;
  grouped.groups = 2;
  const NodeId conv =
      b.graph()
          .AddNode(OpKind::kConv2d, "grouped_conv",
                   {x, b.Param(RandomTensor({4, 2, 3, 3}, b.rng()))}, grouped)
          .value();
  ASSERT_TRUE(b.graph().SetOutputs({conv}).ok());
  const absl::StatusOr<Fp32Engine> engine = Fp32Engine::Create(b.graph(), 1);
  ASSERT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(engine.status().message().find("grouped_conv"), std::string::npos)
      << engine.status();
}

TEST(Fp32EngineTest, WrongInputShapeIsInvalidArgument) {
  const Graph graph = RandomNet(kBaseSeed, 1);
  Fp32Engine engine = Fp32Engine::Create(graph, 1).value();
  std::mt19937 rng(1);
  Shape shape = graph.node(graph.inputs()[0]).shape;
  shape[1] = 4;
  EXPECT_EQ(engine.Run(RandomTensor(shape, rng)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Fp32Engine::Create(graph, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab
