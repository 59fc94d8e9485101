// RunGraph against PyTorch 1.13 (Debian's python3-torch run by /usr/bin/python3), plus the
// interpreter's own behaviour: observer / fake-quantize handlers, quantize and dequantize, input
// validation and kept values.
//
// Every conformance case is a small qlab Graph with seeded random parameters and inputs. It is
// serialized node by node (torch_ops.py evaluates the same nodes with F.conv2d, F.max_pool2d,
// F.batch_norm(training=False), ...) and both outputs are compared. All cases go to Python in
// one process, because importing torch takes about a second.
//
// Tolerances. Ops that do no arithmetic (relu, max_pool2d, flatten, cat, slicing, padding,
// identity) or a single correctly rounded one (add) must match bit for bit. Ops that sum K terms
// in float32 (conv2d: K = C/groups * kh * kw, linear: K = in_features, the average pools: K =
// window area) are compared with
//     |qlab - torch| <= kRelativeTolerance * sqrt(K) * max|torch output|,  kRelativeTolerance 1e-5.
// PyTorch (oneDNN / its vectorized kernels) adds the same products in another order, and each of
// the K roundings is at most 2^-24 (6e-8) of a partial sum; partial sums stay within a few times
// the output scale here (inputs in [-1, 1], weights scaled by 1/sqrt(K)), and rounding errors of
// random sign grow like sqrt(K), so the expected difference is ~6e-8 * sqrt(K) * scale. 1e-5 is
// ~150 times that (headroom for the worst cases and for the few-ulp differences of exp in
// sigmoid and of PyTorch's float32 batch-norm coefficients, K = 1), while any indexing mistake
// (a wrong tap, window or channel) changes outputs by O(scale / sqrt(K)) and still fails by
// orders of magnitude. Observed on this machine: at most 3.3 ulps of the output scale (K = 36),
// conv/linear/avg-pool cases often bit-identical.
#include "quant/graph/interpreter.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/tensor.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "quant/graph/graph.h"
#include "quant/qparams.h"
#include "quant/quantize_tensor.h"

namespace qlab {
namespace {

constexpr double kRelativeTolerance = 1e-5;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Tensor Random(std::mt19937& rng, Shape shape, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = *Tensor::Create(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

nlohmann::json TensorJson(const Tensor& t) {
  return {{"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
          {"data", std::vector<float>(t.data<float>(), t.data<float>() + t.numel())}};
}

std::vector<int64_t> Vec(const std::array<int64_t, 2>& a) { return {a[0], a[1]}; }

nlohmann::json AttrsJson(const Node& node) {
  switch (node.op) {
    case OpKind::kConv2d: {
      const auto& a = node.attr<Conv2dAttrs>();
      return {{"stride", Vec(a.stride)},
              {"padding", Vec(a.padding)},
              {"dilation", Vec(a.dilation)},
              {"groups", a.groups}};
    }
    case OpKind::kBatchNorm:
      return {{"eps", node.attr<BatchNormAttrs>().eps}};
    case OpKind::kMaxPool2d:
    case OpKind::kAvgPool2d: {
      const auto& a = node.attr<Pool2dAttrs>();
      return {{"kernel", Vec(a.kernel)},
              {"stride", Vec(a.stride)},
              {"padding", Vec(a.padding)},
              {"ceil_mode", a.ceil_mode},
              {"count_include_pad", a.count_include_pad}};
    }
    case OpKind::kAdaptiveAvgPool2d:
      return {{"output_size", Vec(node.attr<AdaptiveAvgPool2dAttrs>().output_size)}};
    case OpKind::kFlatten:
      return {{"start_dim", node.attr<FlattenAttrs>().start_dim}};
    case OpKind::kCat:
      return {{"axis", node.attr<CatAttrs>().axis}};
    case OpKind::kStridedSlice: {
      const auto& a = node.attr<StridedSliceAttrs>();
      return {{"begin", a.begin}, {"end", a.end}, {"step", a.step}};
    }
    case OpKind::kChannelPad: {
      const auto& a = node.attr<ChannelPadAttrs>();
      return {{"before", a.before}, {"after", a.after}};
    }
    default:
      return nlohmann::json::object();
  }
}

// One conformance case: a graph, the tensors it runs on, and the accumulation length K of its
// longest float32 sum (0: no summation, exact match required).
struct OpCase {
  std::string name;
  Graph graph;
  std::vector<Tensor> inputs;
  int64_t accumulation = 0;
};

nlohmann::json CaseJson(const OpCase& c) {
  nlohmann::json nodes = nlohmann::json::array();
  const std::vector<NodeId> order = *c.graph.TopologicalOrder();
  for (NodeId id : order) {
    const Node& node = c.graph.node(id);
    nlohmann::json j = {{"name", node.name}, {"op", std::string(OpKindName(node.op))}};
    std::vector<std::string> inputs;
    for (NodeId in : node.inputs) inputs.push_back(c.graph.node(in).name);
    j["inputs"] = inputs;
    j["attrs"] = AttrsJson(node);
    if (node.op == OpKind::kParameter) j["value"] = TensorJson(node.value);
    nodes.push_back(j);
  }
  nlohmann::json inputs = nlohmann::json::object();
  const std::vector<NodeId> input_ids = c.graph.inputs();
  for (size_t i = 0; i < input_ids.size(); ++i) {
    inputs[c.graph.node(input_ids[i]).name] = TensorJson(c.inputs[i]);
  }
  std::vector<std::string> outputs;
  for (NodeId id : c.graph.outputs()) outputs.push_back(c.graph.node(id).name);
  return {{"nodes", nodes}, {"inputs", inputs}, {"outputs", outputs}};
}

// Builds the cases with one seeded generator (replayable: the seed is fixed).
class CaseBuilder {
 public:
  explicit CaseBuilder(uint32_t seed) : rng_(seed) {}

  // A new case with one float input of `shape` (built with that batch).
  OpCase& Begin(const std::string& name, Shape shape) {
    cases_.push_back(OpCase{name, Graph(), {}, 0});
    OpCase& c = cases_.back();
    c.inputs.push_back(Random(rng_, shape));
    x_ = *c.graph.AddInput("x", shape);
    return c;
  }
  NodeId x() const { return x_; }
  NodeId Param(const std::string& name, Shape shape, float scale = 1.0f) {
    return *cases_.back().graph.AddParameter(name, Random(rng_, shape, -scale, scale));
  }
  NodeId PositiveParam(const std::string& name, Shape shape) {
    return *cases_.back().graph.AddParameter(name, Random(rng_, shape, 0.1f, 2.0f));
  }
  NodeId Op(OpKind op, std::vector<NodeId> in, NodeAttrs attrs = {}) {
    absl::StatusOr<NodeId> id = cases_.back().graph.AddNode(op, "", std::move(in), attrs);
    EXPECT_TRUE(id.ok()) << cases_.back().name << ": " << id.status();
    return *id;
  }
  // Finishes the current case with `out` as its output.
  void End(NodeId out, int64_t accumulation) {
    OpCase& c = cases_.back();
    EXPECT_TRUE(c.graph.SetOutputs({out}).ok());
    c.accumulation = accumulation;
  }
  std::mt19937& rng() { return rng_; }
  std::vector<OpCase> Take() { return std::move(cases_); }

 private:
  std::mt19937 rng_;
  std::vector<OpCase> cases_;
  NodeId x_ = kNoNode;
};

Conv2dAttrs Conv(std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                 std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  Conv2dAttrs a;
  a.stride = stride;
  a.padding = padding;
  a.dilation = dilation;
  a.groups = groups;
  return a;
}

Pool2dAttrs Pool(std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                 std::array<int64_t, 2> padding, bool ceil_mode, bool count_include_pad = true) {
  Pool2dAttrs a;
  a.kernel = kernel;
  a.stride = stride;
  a.padding = padding;
  a.ceil_mode = ceil_mode;
  a.count_include_pad = count_include_pad;
  return a;
}

void AddConvCases(CaseBuilder& b) {
  struct ConvShape {
    const char* name;
    Shape x;
    Shape w;
    Conv2dAttrs attrs;
    bool bias;
  };
  const ConvShape shapes[] = {
      {"conv_plain", {2, 3, 7, 9}, {5, 3, 3, 3}, Conv({1, 1}, {0, 0}), true},
      {"conv_stride2_pad1_odd", {2, 4, 11, 10}, {6, 4, 3, 3}, Conv({2, 2}, {1, 1}), true},
      {"conv_dilated_rect", {1, 3, 9, 8}, {4, 3, 3, 2}, Conv({1, 2}, {2, 1}, {2, 3}), false},
      {"conv_groups2", {2, 4, 8, 7}, {6, 2, 3, 3}, Conv({2, 2}, {1, 1}, {1, 1}, 2), true},
      {"conv_depthwise", {1, 6, 9, 9}, {6, 1, 3, 3}, Conv({1, 1}, {1, 1}, {1, 1}, 6), false},
      {"conv_1x1_stride2", {2, 8, 9, 9}, {4, 8, 1, 1}, Conv({2, 2}, {0, 0}), true},
      {"conv_7x7_stride2_pad3", {1, 3, 13, 11}, {4, 3, 7, 7}, Conv({2, 2}, {3, 3}), true},
  };
  for (const ConvShape& s : shapes) {
    b.Begin(s.name, s.x);
    const int64_t k = s.w[1] * s.w[2] * s.w[3];
    const float scale = 1.0f / std::sqrt(static_cast<float>(k));
    std::vector<NodeId> in = {b.x(), b.Param("w", s.w, scale)};
    if (s.bias) in.push_back(b.Param("b", {s.w[0]}));
    b.End(b.Op(OpKind::kConv2d, in, s.attrs), k);
  }
}

void AddLinearAndBatchNormCases(CaseBuilder& b) {
  b.Begin("linear_bias", {3, 17});
  b.End(b.Op(OpKind::kLinear, {b.x(), b.Param("w", {5, 17}, 0.25f), b.Param("b", {5})}), 17);
  b.Begin("linear_no_bias", {2, 64});
  b.End(b.Op(OpKind::kLinear, {b.x(), b.Param("w", {10, 64}, 0.125f)}), 64);

  for (const float eps : {1e-5f, 1e-3f}) {
    b.Begin(absl::StrCat("batch_norm_4d_eps", eps), {2, 5, 4, 3});
    BatchNormAttrs a;
    a.eps = eps;
    b.End(b.Op(OpKind::kBatchNorm,
               {b.x(), b.Param("g", {5}), b.Param("be", {5}), b.Param("m", {5}),
                b.PositiveParam("v", {5})},
               a),
          1);
  }
  b.Begin("batch_norm_2d", {3, 7});
  b.End(b.Op(OpKind::kBatchNorm, {b.x(), b.Param("g", {7}), b.Param("be", {7}), b.Param("m", {7}),
                                  b.PositiveParam("v", {7})}),
        1);
}

void AddElementwiseCases(CaseBuilder& b) {
  b.Begin("relu", {2, 3, 5, 4});
  b.End(b.Op(OpKind::kRelu, {b.x()}), 0);
  b.Begin("sigmoid", {2, 3, 5, 4});
  b.End(b.Op(OpKind::kSigmoid, {b.x()}), 1);
  b.Begin("identity", {2, 3, 5, 4});
  b.End(b.Op(OpKind::kIdentity, {b.x()}), 0);
  b.Begin("add", {2, 3, 5, 4});
  b.End(b.Op(OpKind::kAdd, {b.x(), b.Param("other", {2, 3, 5, 4})}), 0);
}

void AddPoolCases(CaseBuilder& b) {
  struct PoolCase {
    const char* name;
    Shape x;
    Pool2dAttrs attrs;
  };
  const PoolCase cases[] = {
      {"k3_s2_p1", {2, 3, 9, 7}, Pool({3, 3}, {2, 2}, {1, 1}, false)},
      {"k2_s2_ceil_odd", {1, 2, 7, 5}, Pool({2, 2}, {2, 2}, {0, 0}, true)},
      {"k3_s2_p1_ceil", {1, 2, 8, 6}, Pool({3, 3}, {2, 2}, {1, 1}, true)},
      {"k2_s2_p1_ceil_drops_last", {1, 2, 6, 5}, Pool({2, 2}, {2, 2}, {1, 1}, true)},
      {"k3x2_s1x2_p1x0", {2, 2, 6, 7}, Pool({3, 2}, {1, 2}, {1, 0}, false)},
      {"k3_s3_p1_ceil_exclude_pad", {1, 3, 10, 8}, Pool({3, 3}, {3, 3}, {1, 1}, true, false)},
      {"k3_s2_p1_exclude_pad", {2, 3, 9, 7}, Pool({3, 3}, {2, 2}, {1, 1}, false, false)},
  };
  for (const PoolCase& c : cases) {
    b.Begin(absl::StrCat("max_pool2d_", c.name), c.x);
    b.End(b.Op(OpKind::kMaxPool2d, {b.x()}, c.attrs), 0);
    b.Begin(absl::StrCat("avg_pool2d_", c.name), c.x);
    b.End(b.Op(OpKind::kAvgPool2d, {b.x()}, c.attrs), c.attrs.kernel[0] * c.attrs.kernel[1]);
  }
  struct AdaptiveCase {
    const char* name;
    Shape x;
    std::array<int64_t, 2> out;
  };
  const AdaptiveCase adaptive[] = {
      {"global", {2, 4, 7, 5}, {1, 1}},
      {"3x2_of_7x5", {1, 3, 7, 5}, {3, 2}},
      {"4x3_of_6x6", {1, 2, 6, 6}, {4, 3}},
      {"upsampling_5x5_of_3x4", {1, 1, 3, 4}, {5, 5}},
  };
  for (const AdaptiveCase& c : adaptive) {
    b.Begin(absl::StrCat("adaptive_avg_pool2d_", c.name), c.x);
    AdaptiveAvgPool2dAttrs a;
    a.output_size = c.out;
    // Longest window: ceil(in / out) + 1 rows/columns at most.
    const int64_t k = (c.x[2] / c.out[0] + 2) * (c.x[3] / c.out[1] + 2);
    b.End(b.Op(OpKind::kAdaptiveAvgPool2d, {b.x()}, a), k);
  }
}

void AddShapeOpCases(CaseBuilder& b) {
  b.Begin("flatten", {2, 3, 5, 4});
  b.End(b.Op(OpKind::kFlatten, {b.x()}), 0);
  FlattenAttrs from2;
  from2.start_dim = 2;
  b.Begin("flatten_from_2", {2, 3, 5, 4});
  b.End(b.Op(OpKind::kFlatten, {b.x()}, from2), 0);

  b.Begin("cat_channels", {2, 3, 5, 4});
  b.End(b.Op(OpKind::kCat, {b.x(), b.Param("a", {2, 2, 5, 4}), b.x(), b.Param("c", {2, 1, 5, 4})}),
        0);
  CatAttrs width;
  width.axis = -1;
  b.Begin("cat_width", {2, 3, 5, 4});
  b.End(b.Op(OpKind::kCat, {b.x(), b.Param("a", {2, 3, 5, 3})}, width), 0);

  StridedSliceAttrs slice;
  slice.begin = {0, 1, 1, 0};
  slice.end = {100, 4, 100, 7};
  slice.step = {1, 2, 2, 3};
  b.Begin("strided_slice", {2, 5, 9, 8});
  b.End(b.Op(OpKind::kStridedSlice, {b.x()}, slice), 0);

  // ResNet's option-A shortcut: x[:, :, ::2, ::2] then F.pad of planes/4 zero channels on each
  // side (16 -> 32 channels in the CIFAR ResNets; 4 -> 8 here), on an odd spatial size.
  StridedSliceAttrs subsample;
  subsample.begin = {0, 0, 0, 0};
  subsample.end = {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max(),
                   std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max()};
  subsample.step = {1, 1, 2, 2};
  ChannelPadAttrs pad;
  pad.before = 2;
  pad.after = 2;
  b.Begin("option_a_shortcut", {2, 4, 9, 9});
  b.End(b.Op(OpKind::kChannelPad, {b.Op(OpKind::kStridedSlice, {b.x()}, subsample)}, pad), 0);
  ChannelPadAttrs uneven;
  uneven.before = 0;
  uneven.after = 3;
  b.Begin("channel_pad_after_only", {1, 2, 3, 3});
  b.End(b.Op(OpKind::kChannelPad, {b.x()}, uneven), 0);
}

// A residual block with an option-A shortcut and a classifier head, built for batch 2 and run
// on batch 3: shapes must be re-derived from the run's inputs.
void AddBlockCase(CaseBuilder& b) {
  OpCase& c = b.Begin("residual_block_batch3_built_with_batch2", {2, 4, 9, 9});
  c.inputs[0] = Random(b.rng(), {3, 4, 9, 9});
  const auto bn = [&](NodeId in, int64_t channels) {
    return b.Op(OpKind::kBatchNorm, {in, b.Param("", {channels}), b.Param("", {channels}),
                                     b.Param("", {channels}), b.PositiveParam("", {channels})});
  };
  const float scale1 = 1.0f / 6.0f, scale2 = 1.0f / std::sqrt(72.0f);
  NodeId y =
      b.Op(OpKind::kConv2d, {b.x(), b.Param("w1", {8, 4, 3, 3}, scale1)}, Conv({2, 2}, {1, 1}));
  y = b.Op(OpKind::kRelu, {bn(y, 8)});
  y = bn(b.Op(OpKind::kConv2d, {y, b.Param("w2", {8, 8, 3, 3}, scale2)}, Conv({1, 1}, {1, 1})), 8);
  StridedSliceAttrs subsample;
  subsample.begin = {0, 0, 0, 0};
  subsample.end = {1000, 1000, 1000, 1000};
  subsample.step = {1, 1, 2, 2};
  ChannelPadAttrs pad;
  pad.before = 2;
  pad.after = 2;
  const NodeId shortcut =
      b.Op(OpKind::kChannelPad, {b.Op(OpKind::kStridedSlice, {b.x()}, subsample)}, pad);
  y = b.Op(OpKind::kRelu, {b.Op(OpKind::kAdd, {y, shortcut})});
  y = b.Op(OpKind::kFlatten, {b.Op(OpKind::kAdaptiveAvgPool2d, {y})});
  b.End(b.Op(OpKind::kLinear, {y, b.Param("fc", {10, 8}, 0.35f), b.Param("fcb", {10})}), 72);
}

std::vector<OpCase> MakeCases() {
  CaseBuilder b(20240611);
  AddConvCases(b);
  AddLinearAndBatchNormCases(b);
  AddElementwiseCases(b);
  AddPoolCases(b);
  AddShapeOpCases(b);
  AddBlockCase(b);
  return b.Take();
}

TEST(InterpreterConformanceTest, EveryOpMatchesPyTorch) {
  const std::vector<OpCase> cases = MakeCases();
  nlohmann::json request = nlohmann::json::array();
  for (const OpCase& c : cases) request.push_back(CaseJson(c));
  const std::string dir =
      std::getenv("TEST_TMPDIR") != nullptr ? std::getenv("TEST_TMPDIR") : "/tmp";
  const std::string in_path = dir + "/graph_ops_cases.json";
  const std::string out_path = dir + "/graph_ops_torch.json";
  std::ofstream(in_path) << request.dump();
  const std::string command =
      "/usr/bin/python3 quant/graph/torch_ops.py " + in_path + " " + out_path;
  ASSERT_EQ(std::system(command.c_str()), 0)
      << command << " failed: is python3-torch installed (tools/setup.sh)?";
  nlohmann::json torch_results;
  std::ifstream(out_path) >> torch_results;
  ASSERT_EQ(torch_results.size(), cases.size());

  for (size_t i = 0; i < cases.size(); ++i) {
    const OpCase& c = cases[i];
    SCOPED_TRACE(c.name + "\n" + c.graph.Dump());
    absl::StatusOr<RunResult> ours = RunGraph(c.graph, c.inputs);
    ASSERT_TRUE(ours.ok()) << ours.status();
    const nlohmann::json& expected = torch_results[i][0];
    const Tensor& got = ours->outputs[0];
    ASSERT_EQ(std::vector<int64_t>(got.shape().begin(), got.shape().end()),
              expected["shape"].get<std::vector<int64_t>>());
    const std::vector<float> want = expected["data"].get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(want.size()), got.numel());
    double scale = 0.0;
    for (float v : want) scale = std::max(scale, std::abs(static_cast<double>(v)));
    // See the file comment: zero for exact ops, sqrt(K)-scaled for float32 sums.
    const double tolerance =
        kRelativeTolerance * std::sqrt(static_cast<double>(c.accumulation)) * scale;
    int reported = 0;
    for (int64_t e = 0; e < got.numel(); ++e) {
      const double diff = std::abs(static_cast<double>(got.data<float>()[e]) - want[e]);
      if (diff > tolerance && ++reported <= 5) {
        ADD_FAILURE() << "element " << e << ": qlab " << got.data<float>()[e] << ", PyTorch "
                      << want[e] << ", difference " << diff << " > tolerance " << tolerance
                      << " (K = " << c.accumulation << ", scale " << scale << ")";
      }
    }
  }
}

// --- Interpreter behaviour --------------------------------------------------------------------

class RecordingHandler : public QuantOpHandler {
 public:
  absl::Status Observe(const Node& node, const Tensor& x) override {
    observed.push_back(node.name);
    observed_tensors.push_back(x);
    return absl::OkStatus();
  }
  absl::StatusOr<Tensor> FakeQuantize(const Node& node, const Tensor& x) override {
    fake_quantized.push_back(node.name);
    QuantParams p;
    p.scales = {0.25f};
    p.zero_points = {0};
    QLAB_ASSIGN_OR_RETURN(FakeQuantized fq, FakeQuantizeTensor(x, p, false));
    return fq.values;
  }
  std::vector<std::string> observed;
  std::vector<Tensor> observed_tensors;
  std::vector<std::string> fake_quantized;
};

ObserverAttrs Slot(int32_t slot) {
  ObserverAttrs a;
  a.slot = slot;
  return a;
}

std::vector<float> Values(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

TEST(InterpreterTest, ObserverPassesItsInputThrough) {
  std::mt19937 rng(7);
  Graph g;
  const NodeId x = *g.AddInput("x", {2, 3, 4, 4});
  const NodeId relu = *g.AddNode(OpKind::kRelu, "relu", {x});
  const NodeId obs = *g.AddNode(OpKind::kObserver, "obs", {relu}, Slot(0));
  const NodeId sig = *g.AddNode(OpKind::kSigmoid, "sig", {obs});
  ASSERT_TRUE(g.SetOutputs({sig}).ok());
  const Tensor input = Random(rng, {2, 3, 4, 4});

  RecordingHandler handler;
  RunOptions options;
  options.quant_ops = &handler;
  options.keep = {relu, obs};
  const RunResult observed = *RunGraph(g, {input}, options);
  EXPECT_EQ(handler.observed, std::vector<std::string>({"obs"}));
  ASSERT_EQ(handler.observed_tensors.size(), 1u);
  // The handler saw relu's output itself, and the observer's output is that same tensor.
  EXPECT_TRUE(handler.observed_tensors[0].SharesStorageWith(observed.kept.at(relu)));
  EXPECT_TRUE(observed.kept.at(obs).SharesStorageWith(observed.kept.at(relu)));
  for (float v : Values(observed.kept.at(relu))) EXPECT_GE(v, 0.0f);

  // Without a handler the observer is a plain pass-through: same result bit for bit.
  const RunResult plain = *RunGraph(g, {input});
  EXPECT_EQ(Values(plain.outputs[0]), Values(observed.outputs[0]));
  EXPECT_TRUE(plain.kept.empty());
}

TEST(InterpreterTest, FakeQuantizeNeedsAHandler) {
  std::mt19937 rng(8);
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 2, 3, 3});
  const NodeId fq = *g.AddNode(OpKind::kFakeQuantize, "act_fq", {x}, Slot(3));
  ASSERT_TRUE(g.SetOutputs({fq}).ok());
  const Tensor input = Random(rng, {1, 2, 3, 3}, -3.0f, 3.0f);

  const absl::StatusOr<RunResult> missing = RunGraph(g, {input});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_PRED2(Contains, std::string(missing.status().message()),
               std::string("fake_quantize \"act_fq\": fake-quantize needs a QuantOpHandler"));

  RecordingHandler handler;
  RunOptions options;
  options.quant_ops = &handler;
  const RunResult r = *RunGraph(g, {input}, options);
  EXPECT_EQ(handler.fake_quantized, std::vector<std::string>({"act_fq"}));
  const std::vector<float> in = Values(input), out = Values(r.outputs[0]);
  for (size_t i = 0; i < in.size(); ++i) {
    // Scale 0.25, int8: every output is a multiple of 0.25 within a half step of the input.
    EXPECT_EQ(out[i], std::nearbyint(out[i] * 4.0f) / 4.0f);
    EXPECT_LE(std::abs(out[i] - in[i]), 0.125f);
  }
}

TEST(InterpreterTest, QuantizeDequantizeRoundTrip) {
  std::mt19937 rng(9);
  Graph g;
  const NodeId x = *g.AddInput("x", {2, 3, 5, 5});
  QuantizeAttrs a;
  a.params.dtype = DType::kUInt8;
  a.params.quant_min = 0;
  a.params.quant_max = 255;
  a.params.scales = {1.0f / 128.0f};
  a.params.zero_points = {128};
  const NodeId q = *g.AddNode(OpKind::kQuantize, "q", {x}, a);
  const NodeId dq = *g.AddNode(OpKind::kDequantize, "dq", {q}, a);
  ASSERT_TRUE(g.SetOutputs({dq}).ok());
  const Tensor input = Random(rng, {2, 3, 5, 5}, -0.99f, 0.99f);  // inside the range
  RunOptions options;
  options.keep = {q};
  const RunResult r = *RunGraph(g, {input}, options);
  EXPECT_EQ(r.kept.at(q).dtype(), DType::kUInt8);
  // Quantize then dequantize is fake-quantize, exactly (both are quant_tensor's kernels), and
  // within half a step of the input.
  const FakeQuantized reference = *FakeQuantizeTensor(input, a.params, false);
  EXPECT_EQ(Values(r.outputs[0]), Values(reference.values));
  const std::vector<float> in = Values(input), out = Values(r.outputs[0]);
  for (size_t i = 0; i < in.size(); ++i) EXPECT_LE(std::abs(out[i] - in[i]), 0.5f / 128.0f);
}

TEST(InterpreterTest, PerChannelWeightDequantizeFeedsConv) {
  std::mt19937 rng(10);
  Tensor wq = *Tensor::Create(DType::kInt8, {4, 3, 3, 3});
  std::uniform_int_distribution<int> level(-127, 127);
  for (int64_t i = 0; i < wq.numel(); ++i) wq.data<int8_t>()[i] = static_cast<int8_t>(level(rng));
  QuantizeAttrs a;
  a.params.qscheme = QScheme::kPerChannelSymmetric;
  a.params.axis = 0;
  a.params.scales = {0.01f, 0.02f, 0.005f, 0.03f};
  a.params.zero_points = {0, 0, 0, 0};

  Graph quantized;
  const NodeId x = *quantized.AddInput("x", {1, 3, 6, 6});
  const NodeId w =
      *quantized.AddNode(OpKind::kDequantize, "w", {*quantized.AddParameter("wq", wq)}, a);
  ASSERT_TRUE(quantized.SetOutputs({*quantized.AddNode(OpKind::kConv2d, "conv", {x, w})}).ok());
  Graph dequantized_offline;
  const NodeId x2 = *dequantized_offline.AddInput("x", {1, 3, 6, 6});
  const NodeId w2 = *dequantized_offline.AddParameter("w", *DequantizeTensor(wq, a.params));
  ASSERT_TRUE(dequantized_offline
                  .SetOutputs({*dequantized_offline.AddNode(OpKind::kConv2d, "conv", {x2, w2})})
                  .ok());
  const Tensor input = Random(rng, {1, 3, 6, 6});
  // Same weights, same arithmetic: identical bits.
  EXPECT_EQ(Values(RunGraph(quantized, {input})->outputs[0]),
            Values(RunGraph(dequantized_offline, {input})->outputs[0]));
}

TEST(InterpreterTest, DynamicQuantizationChoosesParametersPerRun) {
  std::mt19937 rng(11);
  Graph g;
  const NodeId x = *g.AddInput("x", {2, 16});
  QuantizeAttrs a;
  a.dynamic = true;
  a.params.dtype = DType::kUInt8;
  a.params.quant_min = 0;
  a.params.quant_max = 255;
  a.params.scales.clear();
  a.params.zero_points.clear();
  const NodeId q = *g.AddNode(OpKind::kQuantize, "q", {x}, a);
  ASSERT_TRUE(g.SetOutputs({*g.AddNode(OpKind::kDequantize, "dq", {q}, a)}).ok());
  for (const float range : {0.5f, 40.0f}) {
    const Tensor input = Random(rng, {3, 16}, -range, range);
    const Range minmax = *TensorMinMax(input);
    const QuantParams chosen = *ChooseQParams(
        minmax.min, minmax.max, QuantTarget{DType::kUInt8, 0, 255, QScheme::kPerTensorAffine});
    const RunResult r = *RunGraph(g, {input});
    EXPECT_EQ(Values(r.outputs[0]), Values(FakeQuantizeTensor(input, chosen, false)->values))
        << "range " << range;
  }
}

TEST(InterpreterTest, RejectsBadInputsNamingThem) {
  Graph g;
  const NodeId x = *g.AddInput("x", {2, 3, 5, 5});
  const NodeId y = *g.AddInput("y", {2, 3, 5, 5});
  const NodeId w = *g.AddParameter("w", *Tensor::Create(DType::kFloat32, {4, 3, 3, 3}));
  const NodeId conv =
      *g.AddNode(OpKind::kConv2d, "conv", {*g.AddNode(OpKind::kAdd, "", {x, y}), w});
  const auto make = [](Shape shape, DType dtype = DType::kFloat32) {
    return *Tensor::Create(dtype, std::move(shape));
  };
  const absl::StatusOr<RunResult> no_outputs =
      RunGraph(g, {make({2, 3, 5, 5}), make({2, 3, 5, 5})});
  EXPECT_EQ(no_outputs.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(g.SetOutputs({conv}).ok());

  const auto expect_error = [&](std::vector<Tensor> inputs, const std::string& part) {
    const absl::StatusOr<RunResult> r = RunGraph(g, inputs);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_PRED2(Contains, std::string(r.status().message()), part);
  };
  expect_error({make({2, 3, 5, 5})}, "the graph takes 2 inputs (\"x\", \"y\"), got 1");
  expect_error({make({2, 4, 5, 5}), make({2, 3, 5, 5})},
               "input \"x\" must be float32[2,3,5,5] (any batch), got float32[2,4,5,5]");
  expect_error({make({2, 3, 5, 5}), make({2, 3, 5, 5}, DType::kInt8)}, "input \"y\" must be");
  expect_error({make({2, 3, 5, 5}), make({2, 3, 25})}, "input \"y\" must be");
  expect_error({make({2, 3, 5, 5}), make({1, 3, 5, 5})},
               "input \"y\" has batch 1, input \"x\" has batch 2");

  // Any common batch runs, also one different from the build batch.
  const absl::StatusOr<RunResult> batch4 = RunGraph(g, {make({4, 3, 5, 5}), make({4, 3, 5, 5})});
  ASSERT_TRUE(batch4.ok()) << batch4.status();
  EXPECT_EQ(batch4->outputs[0].shape(), Shape({4, 4, 3, 3}));

  RunOptions bad_keep;
  bad_keep.keep = {1234};
  EXPECT_EQ(RunGraph(g, {make({2, 3, 5, 5}), make({2, 3, 5, 5})}, bad_keep).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(InterpreterTest, CycleIsAnError) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  const NodeId a = *g.AddNode(OpKind::kRelu, "a", {x});
  const NodeId b = *g.AddNode(OpKind::kRelu, "b", {a});
  ASSERT_TRUE(g.SetOutputs({b}).ok());
  ASSERT_TRUE(g.ReplaceInput(a, 0, b).ok());
  const absl::StatusOr<RunResult> r = RunGraph(g, {*Tensor::Create(DType::kFloat32, {1, 4})});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_PRED2(Contains, std::string(r.status().message()), std::string("cycle"));
}

TEST(InterpreterTest, DuplicateOutputsAndInputsAsOutputs) {
  std::mt19937 rng(12);
  Graph g;
  const NodeId x = *g.AddInput("x", {2, 3});
  const NodeId r = *g.AddNode(OpKind::kRelu, "r", {x});
  ASSERT_TRUE(g.SetOutputs({r, x, r}).ok());
  const Tensor input = Random(rng, {2, 3});
  const RunResult result = *RunGraph(g, {input});
  ASSERT_EQ(result.outputs.size(), 3u);
  EXPECT_TRUE(result.outputs[1].SharesStorageWith(input));
  EXPECT_EQ(Values(result.outputs[0]), Values(result.outputs[2]));
}

}  // namespace
}  // namespace qlab
