// Graph: builders and shape inference for every op (and their error messages), rewiring,
// removal, cycles, topological order, copies and Dump(). The arithmetic of the ops is tested
// against PyTorch in interpreter_test.cc; the output-size rules are checked here by hand.
#include "quant/graph/graph.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/tensor.h"
#include "gtest/gtest.h"

namespace qlab {
namespace {

// Debian's GoogleTest ships without gmock's matchers: a predicate for EXPECT_PRED2, which prints
// both strings on failure.
bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Tensor Zeros(Shape shape, DType dtype = DType::kFloat32) {
  return *Tensor::Create(dtype, std::move(shape));
}

QuantParams PerTensor(DType dtype, float scale, int32_t zero_point) {
  QuantParams p;
  p.dtype = dtype;
  if (dtype == DType::kUInt8) p.quant_min = 0, p.quant_max = 255;
  p.scales = {scale};
  p.zero_points = {zero_point};
  return p;
}

// Builds on a small graph and returns the shape inferred for each added node.
class GraphBuilder {
 public:
  NodeId Input(const std::string& name, Shape shape) { return *g.AddInput(name, shape); }
  NodeId Param(const std::string& name, Shape shape) {
    return *g.AddParameter(name, Zeros(std::move(shape)));
  }
  NodeId Op(OpKind op, const std::string& name, std::vector<NodeId> in, NodeAttrs attrs = {}) {
    absl::StatusOr<NodeId> id = g.AddNode(op, name, std::move(in), std::move(attrs));
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : kNoNode;
  }
  Shape ShapeOf(NodeId id) const { return g.node(id).shape; }
  Graph g;
};

TEST(GraphTest, InfersShapesOfEveryOp) {
  GraphBuilder b;
  const NodeId x = b.Input("x", {2, 3, 11, 9});
  // conv: (11 + 2 - 3) / 2 + 1 = 6, (9 + 2 - 3) / 2 + 1 = 5.
  Conv2dAttrs conv_attrs;
  conv_attrs.stride = {2, 2};
  conv_attrs.padding = {1, 1};
  const NodeId conv =
      b.Op(OpKind::kConv2d, "conv", {x, b.Param("w", {8, 3, 3, 3}), b.Param("b", {8})}, conv_attrs);
  EXPECT_EQ(b.ShapeOf(conv), Shape({2, 8, 6, 5}));
  // Dilation 2 widens a 3x3 kernel to 5x5: (6 - 5) + 1 = 2, (5 - 5) + 1 = 1. Groups 4: [8, 2, ..].
  Conv2dAttrs dilated;
  dilated.dilation = {2, 2};
  dilated.groups = 4;
  const NodeId conv2 = b.Op(OpKind::kConv2d, "conv2", {conv, b.Param("w2", {4, 2, 3, 3})}, dilated);
  EXPECT_EQ(b.ShapeOf(conv2), Shape({2, 4, 2, 1}));
  const NodeId bn =
      b.Op(OpKind::kBatchNorm, "bn",
           {conv, b.Param("g", {8}), b.Param("be", {8}), b.Param("m", {8}), b.Param("v", {8})});
  EXPECT_EQ(b.ShapeOf(bn), Shape({2, 8, 6, 5}));
  const NodeId relu = b.Op(OpKind::kRelu, "relu", {bn});
  EXPECT_EQ(b.ShapeOf(relu), Shape({2, 8, 6, 5}));
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kAdd, "add", {relu, bn})), Shape({2, 8, 6, 5}));
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kSigmoid, "sig", {relu})), Shape({2, 8, 6, 5}));
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kIdentity, "id", {relu})), Shape({2, 8, 6, 5}));

  // Pools: floor mode (6 + 2 - 3) / 2 + 1 = 3, (5 + 2 - 3) / 2 + 1 = 3.
  Pool2dAttrs pool;
  pool.kernel = {3, 3};
  pool.padding = {1, 1};
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kMaxPool2d, "max", {relu}, pool)), Shape({2, 8, 3, 3}));
  // Ceil mode, kernel 2 stride 2 no padding: ceil((6 - 2) / 2) + 1 = 3, ceil((5 - 2) / 2) + 1 = 3.
  Pool2dAttrs ceil_pool;
  ceil_pool.ceil_mode = true;
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kAvgPool2d, "avg", {relu}, ceil_pool)), Shape({2, 8, 3, 3}));
  // Ceil mode with padding 1: ceil((size + 2 - 2) / 2) + 1 = 4 for both sizes. The 4th window
  // starts at padded offset (4 - 1) * 2 = 6: inside input-plus-left-padding for 6 (6 < 6 + 1),
  // kept; for 5 it starts in the right padding (6 >= 5 + 1), dropped: 3. (PyTorch agrees.)
  ceil_pool.padding = {1, 1};
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kMaxPool2d, "max_ceil", {relu}, ceil_pool)),
            Shape({2, 8, 4, 3}));

  AdaptiveAvgPool2dAttrs adaptive;
  adaptive.output_size = {4, 2};
  const NodeId ap = b.Op(OpKind::kAdaptiveAvgPool2d, "ap", {relu}, adaptive);
  EXPECT_EQ(b.ShapeOf(ap), Shape({2, 8, 4, 2}));
  const NodeId flat = b.Op(OpKind::kFlatten, "flat", {ap});
  EXPECT_EQ(b.ShapeOf(flat), Shape({2, 64}));
  FlattenAttrs from2;
  from2.start_dim = -2;
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kFlatten, "flat2", {ap}, from2)), Shape({2, 8, 8}));
  const NodeId fc = b.Op(OpKind::kLinear, "fc", {flat, b.Param("fc.w", {10, 64})});
  EXPECT_EQ(b.ShapeOf(fc), Shape({2, 10}));
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kCat, "cat", {relu, bn, relu})), Shape({2, 24, 6, 5}));

  StridedSliceAttrs slice;
  slice.begin = {0, 0, 0, 1};
  slice.end = {1000, 1000, 1000, 1000};  // clamped like Python
  slice.step = {1, 1, 2, 2};
  const NodeId sl = b.Op(OpKind::kStridedSlice, "slice", {relu}, slice);
  EXPECT_EQ(b.ShapeOf(sl), Shape({2, 8, 3, 2}));  // rows 0,2,4; columns 1,3
  ChannelPadAttrs pad;
  pad.before = 4;
  pad.after = 3;
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kChannelPad, "pad", {sl}, pad)), Shape({2, 15, 3, 2}));

  ObserverAttrs slot;
  slot.slot = 0;
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kObserver, "obs", {relu}, slot)), Shape({2, 8, 6, 5}));
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kFakeQuantize, "fq", {relu}, slot)), Shape({2, 8, 6, 5}));
  QuantizeAttrs q;
  q.params = PerTensor(DType::kUInt8, 0.1f, 3);
  const NodeId quant = b.Op(OpKind::kQuantize, "q", {relu}, q);
  EXPECT_EQ(b.g.node(quant).dtype, DType::kUInt8);
  const NodeId dq = b.Op(OpKind::kDequantize, "dq", {quant}, q);
  EXPECT_EQ(b.g.node(dq).dtype, DType::kFloat32);
  EXPECT_EQ(b.ShapeOf(dq), Shape({2, 8, 6, 5}));
  // Parameters may hold any dtype: an int8 weight dequantized per channel.
  const NodeId wq = *b.g.AddParameter("wq", Zeros({8, 3, 3, 3}, DType::kInt8));
  QuantizeAttrs per_channel;
  per_channel.params.qscheme = QScheme::kPerChannelSymmetric;
  per_channel.params.axis = 0;
  per_channel.params.scales.assign(8, 0.5f);
  per_channel.params.zero_points.assign(8, 0);
  EXPECT_EQ(b.ShapeOf(b.Op(OpKind::kDequantize, "wdq", {wq}, per_channel)), Shape({8, 3, 3, 3}));
  // A dynamic quantize/dequantize pair.
  QuantizeAttrs dynamic;
  dynamic.dynamic = true;
  dynamic.params.scales.clear();
  dynamic.params.zero_points.clear();
  const NodeId dyn_q = b.Op(OpKind::kQuantize, "dyn_q", {fc}, dynamic);
  EXPECT_EQ(b.g.node(dyn_q).dtype, DType::kInt8);
  b.Op(OpKind::kDequantize, "dyn_dq", {dyn_q}, dynamic);
}

// Adds `op` and returns the error it must produce.
absl::Status AddError(Graph& g, OpKind op, const std::string& name, std::vector<NodeId> in,
                      NodeAttrs attrs = {}) {
  absl::StatusOr<NodeId> id = g.AddNode(op, name, std::move(in), std::move(attrs));
  EXPECT_FALSE(id.ok()) << name << " was accepted:\n" << g.Dump();
  return id.ok() ? absl::OkStatus() : id.status();
}

TEST(GraphTest, RejectsBadNodesNamingNodeAndValue) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 64, 8, 8});
  const NodeId w32 = *g.AddParameter("w32", Zeros({16, 32, 3, 3}));

  absl::Status s = AddError(g, OpKind::kConv2d, "layer1.0.conv1", {x, w32});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("conv2d \"layer1.0.conv1\": weight has 32 input channels per group, "
                           "input has 64"));

  Conv2dAttrs groups3;
  groups3.groups = 3;
  s = AddError(g, OpKind::kConv2d, "grouped", {x, w32}, groups3);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("conv2d \"grouped\": groups 3 does not divide the input's 64 channels"));

  Conv2dAttrs negative_stride;
  negative_stride.stride = {1, -2};
  s = AddError(g, OpKind::kConv2d, "strided", {x, *g.AddParameter("w64", Zeros({8, 64, 3, 3}))},
               negative_stride);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("stride [1,-2] must be > 0"));

  // A 9x9 kernel does not fit an 8x8 input without padding.
  s = AddError(g, OpKind::kConv2d, "big_kernel", {x, *g.AddParameter("w9", Zeros({8, 64, 9, 9}))});
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("does not fit the padded input"));

  s = AddError(g, OpKind::kConv2d, "bad_bias",
               {x, g.FindNode("w64").value(), *g.AddParameter("b7", Zeros({7}))});
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("bias must be [8], got [7]"));

  s = AddError(g, OpKind::kRelu, "dangling", {99});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("relu \"dangling\": input 0 (node id 99)"));

  ASSERT_TRUE(g.AddNode(OpKind::kRelu, "relu", {x}).ok());
  s = AddError(g, OpKind::kSigmoid, "relu", {x});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("\"relu\""));
  EXPECT_EQ(g.AddInput("relu", {1, 2}).status().code(), absl::StatusCode::kAlreadyExists);

  s = AddError(g, OpKind::kAdd, "add1", {x});
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("takes 2 inputs, got 1"));
  s = AddError(g, OpKind::kAdd, "add2", {x, *g.AddInput("y", {1, 64, 8, 7})});
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("input shapes differ: [1,64,8,8] and [1,64,8,7]"));
  s = AddError(g, OpKind::kRelu, "wrong_attrs", {x}, Conv2dAttrs{});
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("attributes of the wrong kind"));
  EXPECT_EQ(g.AddNode(OpKind::kInput, "in2", {}).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Pools: PyTorch allows padding of at most half the kernel.
  Pool2dAttrs wide_pad;
  wide_pad.kernel = {3, 3};
  wide_pad.padding = {2, 1};
  s = AddError(g, OpKind::kMaxPool2d, "pool", {x}, wide_pad);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("max_pool2d \"pool\": padding [2,1] must be at most half the kernel"));
  Pool2dAttrs huge;
  huge.kernel = {9, 9};
  s = AddError(g, OpKind::kAvgPool2d, "huge", {x}, huge);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("larger than the padded input"));
  AdaptiveAvgPool2dAttrs zero_out;
  zero_out.output_size = {0, 1};
  s = AddError(g, OpKind::kAdaptiveAvgPool2d, "ap", {x}, zero_out);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("output_size [0,1] must be > 0"));

  // Batch norm statistics must match the channels; linear features must match.
  const NodeId s8 = *g.AddParameter("s8", Zeros({8}));
  s = AddError(g, OpKind::kBatchNorm, "bn", {x, s8, s8, s8, s8});
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("batch_norm \"bn\": weight must be [64], got [8]"));
  const NodeId flat = *g.AddNode(OpKind::kFlatten, "flat", {x});
  s = AddError(g, OpKind::kLinear, "fc", {flat, *g.AddParameter("fcw", Zeros({10, 100}))});
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("linear \"fc\": weight has 100 input features, input has 4096"));
  s = AddError(g, OpKind::kLinear, "fc4d", {x, g.FindNode("fcw").value()});
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("input must have rank 2"));

  FlattenAttrs batch_axis;
  batch_axis.start_dim = 0;
  s = AddError(g, OpKind::kFlatten, "flat0", {x}, batch_axis);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("start_dim 0 must name a non-batch"));
  CatAttrs cat3;
  cat3.axis = 3;
  s = AddError(g, OpKind::kCat, "cat", {x, g.FindNode("y").value()}, CatAttrs{});
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("input 1 float32[1,64,8,7] does not match"));
  EXPECT_TRUE(g.AddNode(OpKind::kCat, "cat_w", {x, g.FindNode("y").value()}, cat3).ok());

  StridedSliceAttrs empty_slice;
  empty_slice.begin = {0, 0, 8, 0};
  empty_slice.end = {1, 64, 9, 8};
  empty_slice.step = {1, 1, 1, 1};
  s = AddError(g, OpKind::kStridedSlice, "slice", {x}, empty_slice);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("axis 2 slice 8:9:1"));
  empty_slice.step = {1, 1};
  s = AddError(g, OpKind::kStridedSlice, "slice_rank", {x}, empty_slice);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("one entry per axis"));
  ChannelPadAttrs negative_pad;
  negative_pad.before = -1;
  s = AddError(g, OpKind::kChannelPad, "cpad", {x}, negative_pad);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("before -1 and after 0 must be >= 0"));

  // Quantization ops: dtypes and parameters.
  s = AddError(g, OpKind::kObserver, "obs_no_slot", {x});
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("observer slot -1 must be >= 0"));
  QuantizeAttrs q;
  q.params = PerTensor(DType::kInt8, 0.5f, 0);
  const NodeId quant = *g.AddNode(OpKind::kQuantize, "q", {x}, q);
  s = AddError(g, OpKind::kRelu, "relu_on_int8", {quant});
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("input must be float32, got int8"));
  s = AddError(g, OpKind::kQuantize, "qq", {quant}, q);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("input must be float32"));
  s = AddError(g, OpKind::kDequantize, "dq_float", {x}, q);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("dequantize \"dq_float\": input must be int8"));
  QuantizeAttrs u8 = q;
  u8.params = PerTensor(DType::kUInt8, 0.5f, 0);
  s = AddError(g, OpKind::kDequantize, "dq_u8", {quant}, u8);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("input must be uint8"));
  QuantizeAttrs bad_scale = q;
  bad_scale.params.scales = {-1.0f};
  s = AddError(g, OpKind::kQuantize, "q_bad", {x}, bad_scale);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("quantize \"q_bad\": "));
  QuantizeAttrs per_channel = q;
  per_channel.params.qscheme = QScheme::kPerChannelAffine;
  per_channel.params.axis = 1;
  per_channel.params.scales.assign(3, 1.0f);
  per_channel.params.zero_points.assign(3, 0);
  s = AddError(g, OpKind::kQuantize, "q_pc", {x}, per_channel);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("3 per-channel parameters for axis 1"));
  QuantizeAttrs dynamic = q;
  dynamic.dynamic = true;
  s = AddError(g, OpKind::kDequantize, "dyn_dq", {quant}, dynamic);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("must read a dynamic quantize"));
}

TEST(GraphTest, EmptyNamesAreMadeUniqueFromTheOp) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  EXPECT_EQ(g.node(*g.AddNode(OpKind::kRelu, "", {x})).name, "relu");
  EXPECT_EQ(g.node(*g.AddNode(OpKind::kRelu, "", {x})).name, "relu_1");
  EXPECT_EQ(g.UniqueName("relu"), "relu_2");
  EXPECT_EQ(g.UniqueName("free"), "free");
  EXPECT_EQ(*g.FindNode("relu_1"), 2);
  EXPECT_EQ(g.FindNode("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(GraphTest, UsersAreDistinctAndInCreationOrder) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  const NodeId twice = *g.AddNode(OpKind::kAdd, "twice", {x, x});
  const NodeId r = *g.AddNode(OpKind::kRelu, "r", {twice});
  const NodeId s = *g.AddNode(OpKind::kSigmoid, "s", {x});
  EXPECT_EQ(g.Users(x), std::vector<NodeId>({twice, s}));
  EXPECT_EQ(g.Users(twice), std::vector<NodeId>({r}));
  EXPECT_TRUE(g.Users(r).empty());
}

TEST(GraphTest, ReplaceAllUsesWithInsertsAnObserver) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  const NodeId r = *g.AddNode(OpKind::kRelu, "r", {x});
  const NodeId s = *g.AddNode(OpKind::kAdd, "s", {r, r});
  ASSERT_TRUE(g.SetOutputs({r, s}).ok());
  ObserverAttrs slot;
  slot.slot = 0;
  const NodeId obs = *g.AddNode(OpKind::kObserver, "obs", {r}, slot);
  ASSERT_TRUE(g.ReplaceAllUsesWith(r, obs).ok());
  EXPECT_EQ(g.node(obs).inputs, std::vector<NodeId>({r}));  // not rewired onto itself
  EXPECT_EQ(g.node(s).inputs, std::vector<NodeId>({obs, obs}));
  EXPECT_EQ(g.outputs(), std::vector<NodeId>({obs, s}));
  EXPECT_EQ(g.Users(r), std::vector<NodeId>({obs}));
  EXPECT_EQ(g.ReplaceAllUsesWith(r, 42).code(), absl::StatusCode::kNotFound);
}

TEST(GraphTest, RemoveNodeRefusesUsedNodesAndKeepsIdsStable) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  const NodeId a = *g.AddNode(OpKind::kRelu, "a", {x});
  const NodeId b = *g.AddNode(OpKind::kSigmoid, "b", {a});
  const NodeId c = *g.AddNode(OpKind::kIdentity, "c", {x});
  ASSERT_TRUE(g.SetOutputs({b}).ok());

  absl::Status s = g.RemoveNode(a);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("sigmoid \"b\" reads it"));
  s = g.RemoveNode(b);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_PRED2(Contains, std::string(s.message()), std::string("\"b\": it is a graph output"));
  EXPECT_EQ(g.RemoveNode(77).code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(g.RemoveNode(c).ok());
  EXPECT_FALSE(g.Contains(c));
  EXPECT_EQ(g.RemoveNode(c).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(g.FindNode("c").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(g.node_ids(), std::vector<NodeId>({x, a, b}));
  EXPECT_EQ(g.num_nodes(), 3);
  // A new node gets a fresh id; the name is free again.
  EXPECT_EQ(*g.AddNode(OpKind::kIdentity, "c", {x}), 4);
}

TEST(GraphTest, RemoveDeadNodesKeepsInputsAndLiveNodes) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  const NodeId unused_input = *g.AddInput("unused", {1, 4});
  const NodeId a = *g.AddNode(OpKind::kRelu, "a", {x});
  const NodeId dead1 = *g.AddNode(OpKind::kSigmoid, "dead1", {a});
  *g.AddNode(OpKind::kIdentity, "dead2", {dead1});
  *g.AddParameter("dead_param", Zeros({3}));
  ASSERT_TRUE(g.SetOutputs({a}).ok());
  EXPECT_EQ(g.RemoveDeadNodes(), 3);
  EXPECT_EQ(g.node_ids(), std::vector<NodeId>({x, unused_input, a}));
  EXPECT_EQ(g.RemoveDeadNodes(), 0);
}

TEST(GraphTest, TopologicalOrderBreaksTiesByCreation) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  const NodeId r1 = *g.AddNode(OpKind::kRelu, "r1", {x});
  const NodeId r2 = *g.AddNode(OpKind::kRelu, "r2", {x});
  const NodeId late_input = *g.AddInput("y", {1, 4});
  const NodeId sum = *g.AddNode(OpKind::kAdd, "sum", {r1, late_input});
  EXPECT_EQ(*g.TopologicalOrder(), std::vector<NodeId>({x, r1, r2, late_input, sum}));
  // After rewiring r1 to read r2, r2 must come first even though it was created later.
  ASSERT_TRUE(g.ReplaceInput(r1, 0, r2).ok());
  EXPECT_EQ(*g.TopologicalOrder(), std::vector<NodeId>({x, r2, r1, late_input, sum}));
  EXPECT_EQ(g.ReplaceInput(r1, 1, r2).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(g.ReplaceInput(r1, 0, 99).code(), absl::StatusCode::kNotFound);
}

TEST(GraphTest, CycleIsReportedNamingANodeOnIt) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  // `downstream` is created first so that it is the first node Kahn's algorithm leaves over;
  // it only reads the cycle, and the error must name a node on the cycle instead.
  const NodeId downstream = *g.AddNode(OpKind::kRelu, "downstream", {x});
  const NodeId a = *g.AddNode(OpKind::kRelu, "cycle_a", {x});
  const NodeId b = *g.AddNode(OpKind::kSigmoid, "cycle_b", {a});
  ASSERT_TRUE(g.ReplaceInput(downstream, 0, b).ok());
  ASSERT_TRUE(g.ReplaceInput(a, 0, b).ok());  // a -> b -> a
  ASSERT_TRUE(g.SetOutputs({downstream}).ok());

  for (const absl::Status& s : {g.TopologicalOrder().status(), g.InferShapes()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    const std::string message(s.message());
    EXPECT_PRED2(Contains, message, std::string("cycle"));
    EXPECT_TRUE(message.find("\"cycle_a\"") != std::string::npos ||
                message.find("\"cycle_b\"") != std::string::npos)
        << message;
    EXPECT_EQ(message.find("downstream"), std::string::npos) << message;
  }
  // Dump still prints something useful.
  EXPECT_PRED2(Contains, g.Dump(), std::string("# the graph has a cycle"));
}

TEST(GraphTest, InferShapesCatchesABadRewiring) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 3, 8, 8});
  const NodeId x5 = *g.AddInput("x5", {1, 5, 8, 8});
  const NodeId conv =
      *g.AddNode(OpKind::kConv2d, "conv", {x, *g.AddParameter("w", Zeros({4, 3, 1, 1}))});
  const NodeId relu = *g.AddNode(OpKind::kRelu, "relu", {conv});
  ASSERT_TRUE(g.InferShapes().ok());
  ASSERT_TRUE(g.ReplaceInput(conv, 0, x5).ok());
  const absl::Status s = g.InferShapes();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_PRED2(Contains, std::string(s.message()),
               std::string("conv2d \"conv\": weight has 3 input channels"));
  // Re-pointing the conv to a 3-channel input of another size re-infers downstream shapes.
  const NodeId big = *g.AddInput("big", {1, 3, 16, 16});
  ASSERT_TRUE(g.ReplaceInput(conv, 0, big).ok());
  ASSERT_TRUE(g.InferShapes().ok());
  EXPECT_EQ(g.node(relu).shape, Shape({1, 4, 16, 16}));
}

TEST(GraphTest, CopiesAreIndependentButShareParameters) {
  Graph original;
  const NodeId x = *original.AddInput("x", {1, 3, 8, 8});
  const NodeId w = *original.AddParameter("w", Zeros({4, 3, 3, 3}));
  const NodeId conv = *original.AddNode(OpKind::kConv2d, "conv", {x, w});
  const NodeId relu = *original.AddNode(OpKind::kRelu, "relu", {conv});
  ASSERT_TRUE(original.SetOutputs({relu}).ok());
  const std::string before = original.Dump();

  Graph copy = original;
  EXPECT_EQ(copy.Dump(), before);
  EXPECT_TRUE(copy.node(w).value.SharesStorageWith(original.node(w).value));
  Conv2dAttrs padded;
  padded.padding = {1, 1};
  copy.mutable_node(conv).attrs = padded;
  ASSERT_TRUE(copy.InferShapes().ok());
  ObserverAttrs slot;
  slot.slot = 1;
  const NodeId obs = *copy.AddNode(OpKind::kObserver, "obs", {relu}, slot);
  ASSERT_TRUE(copy.ReplaceAllUsesWith(relu, obs).ok());
  ASSERT_TRUE(copy.mutable_node(conv).inputs.size() == 2);
  copy.mutable_node(conv).name = "conv";  // unchanged
  EXPECT_EQ(copy.node(relu).shape, Shape({1, 4, 8, 8}));

  EXPECT_EQ(original.Dump(), before);
  EXPECT_FALSE(original.Contains(obs));
  EXPECT_EQ(original.node(relu).shape, Shape({1, 4, 6, 6}));
  EXPECT_EQ(original.outputs(), std::vector<NodeId>({relu}));

  Graph assigned;
  assigned = copy;
  EXPECT_EQ(assigned.Dump(), copy.Dump());
  EXPECT_EQ(*assigned.FindNode("obs"), obs);
}

TEST(GraphTest, DumpPrintsOneLinePerNodeInTopologicalOrder) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 3, 8, 8});
  QuantizeAttrs weight_q;
  weight_q.params.qscheme = QScheme::kPerChannelSymmetric;
  weight_q.params.axis = 0;
  weight_q.params.scales = {0.5f, 0.25f, 0.125f, 1.5f, 2.0f};
  weight_q.params.zero_points = {0, 0, 0, 0, 0};
  const NodeId wq = *g.AddParameter("conv1.weight_q", Zeros({5, 3, 3, 3}, DType::kInt8));
  const NodeId w = *g.AddNode(OpKind::kDequantize, "conv1.weight", {wq}, weight_q);
  Conv2dAttrs conv_attrs;
  conv_attrs.padding = {1, 1};
  const NodeId conv = *g.AddNode(OpKind::kConv2d, "conv1", {x, w}, conv_attrs);
  const NodeId relu = *g.AddNode(OpKind::kRelu, "relu", {conv});
  Pool2dAttrs pool;
  pool.ceil_mode = true;
  const NodeId avg = *g.AddNode(OpKind::kAvgPool2d, "pool", {relu}, pool);
  QuantizeAttrs act_q;
  act_q.params = PerTensor(DType::kUInt8, 0.5f, 3);
  const NodeId q = *g.AddNode(OpKind::kQuantize, "pool_q", {avg}, act_q);
  const NodeId dq = *g.AddNode(OpKind::kDequantize, "pool_dq", {q}, act_q);
  ObserverAttrs slot;
  slot.slot = 2;
  const NodeId obs = *g.AddNode(OpKind::kObserver, "obs", {dq}, slot);
  ASSERT_TRUE(g.SetOutputs({obs, relu}).ok());

  EXPECT_EQ(g.Dump(),
            "%x : float32[1,3,8,8] = input()\n"
            "%conv1.weight_q : int8[5,3,3,3] = parameter()\n"
            "%conv1.weight : float32[5,3,3,3] = dequantize(%conv1.weight_q, dtype=int8, "
            "range=[-128,127], qscheme=per_channel_symmetric, axis=0, "
            "scale=[0.5,0.25,0.125,1.5,...], zero_point=[0,0,0,0,...])\n"
            "%conv1 : float32[1,5,8,8] = conv2d(%x, %conv1.weight, stride=[1,1], "
            "padding=[1,1], dilation=[1,1], groups=1)\n"
            "%relu : float32[1,5,8,8] = relu(%conv1)\n"
            "%pool : float32[1,5,4,4] = avg_pool2d(%relu, kernel=[2,2], stride=[2,2], "
            "padding=[0,0], ceil_mode=true, count_include_pad=true)\n"
            "%pool_q : uint8[1,5,4,4] = quantize(%pool, dtype=uint8, range=[0,255], "
            "qscheme=per_tensor_affine, scale=0.5, zero_point=3)\n"
            "%pool_dq : float32[1,5,4,4] = dequantize(%pool_q, dtype=uint8, range=[0,255], "
            "qscheme=per_tensor_affine, scale=0.5, zero_point=3)\n"
            "%obs : float32[1,5,4,4] = observer(%pool_dq, slot=2)\n"
            "return (%obs, %relu)\n");
  (void)x;
}

TEST(GraphTest, SetOutputsValidates) {
  Graph g;
  const NodeId x = *g.AddInput("x", {1, 4});
  EXPECT_EQ(g.SetOutputs({}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g.SetOutputs({x, 5}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(g.SetOutputs({x, x}).ok());
  EXPECT_EQ(g.inputs(), std::vector<NodeId>({x}));
  EXPECT_EQ(g.AddInput("scalar", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g.AddInput("negative", {1, -3}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab
