// ExportOnnx's protobuf, checked message by message on a converted ResNet20 with placeholder
// weights (the option-A network uses every op the CIFAR models need: conv, relu, add, strided
// slice, channel pad, global pool, flatten, linear), under each backend's Q/DQ conventions; the
// errors (prepared graphs, unmappable attributes) and the no-overwrite file writer. Whether a
// real consumer accepts and runs the model is onnx_resnet_test's job.
#include "interchange/onnx_export.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/resnet.h"
#include "onnx/onnx_pb.h"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/prepare.h"

namespace qlab {
namespace {

Graph FloatResNet20() {
  ResNetOptions options;
  options.batch = 2;
  Graph g = BuildResNet(ModelByName("resnet20").value(), options).value();
  EXPECT_TRUE(FoldBatchNorm(g).ok());
  return g;
}

Tensor RandomImages(uint32_t seed) {
  Tensor t = Tensor::Create(DType::kFloat32, {2, 3, 32, 32}, Layout::kNCHW).value();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);  // normalized CIFAR pixels are ~N(0, 1)
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

PreparedModel Prepared(Backend backend) {
  std::unique_ptr<BackendQuantizer> quantizer = BackendQuantizer::Create(backend).value();
  PreparedModel prepared = PrepareWith(FloatResNet20(), *quantizer).value();
  for (uint32_t seed : {1u, 2u}) EXPECT_TRUE(prepared.Calibrate({RandomImages(seed)}).ok());
  return prepared;
}

Graph Converted(Backend backend) { return Convert(Prepared(backend)).value(); }

onnx::ModelProto Parse(const std::string& bytes) {
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(bytes));
  return model;
}

onnx::ModelProto Export(const Graph& g, const ExportOptions& options = {}) {
  absl::StatusOr<std::string> bytes = ExportOnnx(g, options);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return Parse(bytes.ok() ? *bytes : "");
}

std::map<std::string, int> OpCounts(const onnx::GraphProto& g) {
  std::map<std::string, int> counts;
  for (const onnx::NodeProto& n : g.node()) ++counts[n.op_type()];
  return counts;
}

int CountOps(const Graph& g, OpKind op) {
  int n = 0;
  for (NodeId id : g.node_ids()) n += g.node(id).op == op;
  return n;
}

const onnx::TensorProto* Initializer(const onnx::GraphProto& g, const std::string& name) {
  for (const onnx::TensorProto& t : g.initializer()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

const onnx::AttributeProto* Attribute(const onnx::NodeProto& n, const std::string& name) {
  for (const onnx::AttributeProto& a : n.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

// ONNX requires the node list in topological order with every input defined by a graph input,
// an initializer or an earlier node; names must be unique (SSA).
void ExpectWellFormed(const onnx::GraphProto& g) {
  std::set<std::string> defined;
  for (const onnx::ValueInfoProto& v : g.input()) EXPECT_TRUE(defined.insert(v.name()).second);
  for (const onnx::TensorProto& t : g.initializer()) {
    EXPECT_TRUE(defined.insert(t.name()).second) << "duplicate " << t.name();
  }
  for (const onnx::NodeProto& n : g.node()) {
    for (const std::string& in : n.input()) EXPECT_TRUE(defined.count(in)) << n.name() << " " << in;
    for (const std::string& out : n.output()) EXPECT_TRUE(defined.insert(out).second) << out;
  }
  for (const onnx::ValueInfoProto& v : g.output()) EXPECT_TRUE(defined.count(v.name()));
}

TEST(OnnxExportTest, Fp32ResNet20) {
  const Graph g = FloatResNet20();
  const onnx::ModelProto m = Export(g);
  ASSERT_EQ(m.opset_import_size(), 1);
  EXPECT_EQ(m.opset_import(0).version(), 13);
  ExpectWellFormed(m.graph());
  const std::map<std::string, int> ops = OpCounts(m.graph());
  EXPECT_EQ(ops.at("Conv"), CountOps(g, OpKind::kConv2d));
  EXPECT_EQ(ops.at("Relu"), CountOps(g, OpKind::kRelu));
  EXPECT_EQ(ops.at("Add"), CountOps(g, OpKind::kAdd));
  EXPECT_EQ(ops.at("Slice"), CountOps(g, OpKind::kStridedSlice));
  EXPECT_EQ(ops.at("Pad"), CountOps(g, OpKind::kChannelPad));
  EXPECT_EQ(ops.at("AveragePool"), 1);  // akamaster's avg_pool2d over the whole 8x8 map
  EXPECT_EQ(ops.at("Flatten"), 1);
  EXPECT_EQ(ops.at("Gemm"), 1);
  EXPECT_EQ(ops.count("QuantizeLinear"), 0u);
  // One initializer per parameter, plus starts/ends/axes/steps per slice and pads/value per pad.
  EXPECT_EQ(m.graph().initializer_size(), CountOps(g, OpKind::kParameter) +
                                              4 * CountOps(g, OpKind::kStridedSlice) +
                                              2 * CountOps(g, OpKind::kChannelPad));
  ASSERT_EQ(m.graph().input_size(), 1);
  const onnx::TensorShapeProto& in = m.graph().input(0).type().tensor_type().shape();
  ASSERT_EQ(in.dim_size(), 4);
  EXPECT_EQ(in.dim(0).dim_param(), "N");
  EXPECT_EQ(in.dim(1).dim_value(), 3);
  // Values are copied bit for bit: the first conv's weight.
  const Node& w = g.node(g.FindNode("conv1.weight_folded").value());
  const onnx::TensorProto* t = Initializer(m.graph(), "conv1.weight_folded");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(t->raw_data(), std::string(static_cast<const char*>(w.value.raw_data()),
                                       w.value.nbytes()));
  // Gemm computes x W^T as linear does; Conv gets OIHW's kernel size and group.
  for (const onnx::NodeProto& n : m.graph().node()) {
    if (n.op_type() == "Gemm") {
      EXPECT_EQ(Attribute(n, "transB")->i(), 1);
    }
    if (n.op_type() == "Conv") {
      EXPECT_EQ(Attribute(n, "kernel_shape")->ints_size(), 2);
    }
  }
}

TEST(OnnxExportTest, XnnpackQdq) {
  const Graph g = Converted(Backend::kXnnpack);
  const onnx::ModelProto m = Export(g);
  ExpectWellFormed(m.graph());
  const std::map<std::string, int> ops = OpCounts(m.graph());
  EXPECT_EQ(ops.at("QuantizeLinear"), CountOps(g, OpKind::kQuantize));
  EXPECT_EQ(ops.at("DequantizeLinear"), CountOps(g, OpKind::kDequantize));
  EXPECT_EQ(ops.count("Clip"), 0u);  // int8 [-128,127] activations: QuantizeLinear's own range
  // Weights: int8 initializers, per-channel DequantizeLinear on axis 0 with [C] scales.
  const onnx::TensorProto* w = Initializer(m.graph(), "conv1.weight_folded.q");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->data_type(), onnx::TensorProto::INT8);
  const onnx::TensorProto* b = Initializer(m.graph(), "conv1.bias_folded.q");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->data_type(), onnx::TensorProto::INT32);
  int weight_dqs = 0;
  for (const onnx::NodeProto& n : m.graph().node()) {
    if (n.op_type() != "DequantizeLinear" || n.input(0) != "conv1.weight_folded.q") continue;
    ++weight_dqs;
    ASSERT_NE(Attribute(n, "axis"), nullptr);
    EXPECT_EQ(Attribute(n, "axis")->i(), 0);
    const onnx::TensorProto* scale = Initializer(m.graph(), n.input(1));
    ASSERT_NE(scale, nullptr);
    ASSERT_EQ(scale->dims_size(), 1);
    EXPECT_EQ(scale->dims(0), 16);  // conv1 has 16 output channels
    EXPECT_EQ(Initializer(m.graph(), n.input(2))->data_type(), onnx::TensorProto::INT8);
  }
  EXPECT_EQ(weight_dqs, 1);
  // Activations: scalar scale and zero point (per tensor, no axis).
  for (const onnx::NodeProto& n : m.graph().node()) {
    if (n.op_type() != "QuantizeLinear") continue;
    EXPECT_EQ(Attribute(n, "axis"), nullptr) << n.name();
    EXPECT_EQ(Initializer(m.graph(), n.input(1))->dims_size(), 0) << n.name();
    EXPECT_EQ(Initializer(m.graph(), n.input(2))->data_type(), onnx::TensorProto::INT8);
  }
}

TEST(OnnxExportTest, X86UsesUint8Activations) {
  const onnx::ModelProto m = Export(Converted(Backend::kX86));
  ExpectWellFormed(m.graph());
  int quantizes = 0;
  for (const onnx::NodeProto& n : m.graph().node()) {
    if (n.op_type() != "QuantizeLinear") continue;
    ++quantizes;
    EXPECT_EQ(Initializer(m.graph(), n.input(2))->data_type(), onnx::TensorProto::UINT8);
  }
  EXPECT_GT(quantizes, 0);
  EXPECT_EQ(OpCounts(m.graph()).count("Clip"), 0u);  // uint8 [0,255]: the full range
}

TEST(OnnxExportTest, RestrictedRangeBecomesAnIntegerClip) {
  const Graph g = Converted(Backend::kTensorRT);  // int8 [-127,127] activations
  const onnx::ModelProto clipped = Export(g);
  ExpectWellFormed(clipped.graph());
  EXPECT_EQ(OpCounts(clipped.graph()).at("Clip"), CountOps(g, OpKind::kQuantize));
  for (const onnx::NodeProto& n : clipped.graph().node()) {
    if (n.op_type() != "Clip") continue;
    const onnx::TensorProto* lo = Initializer(clipped.graph(), n.input(1));
    ASSERT_NE(lo, nullptr);
    EXPECT_EQ(lo->data_type(), onnx::TensorProto::INT8);
    EXPECT_EQ(static_cast<int8_t>(lo->raw_data()[0]), -127);
  }
  ExportOptions options;
  options.clip_restricted_ranges = false;
  const onnx::ModelProto plain = Export(g, options);
  ExpectWellFormed(plain.graph());
  EXPECT_EQ(OpCounts(plain.graph()).count("Clip"), 0u);
}

TEST(OnnxExportTest, PreparedGraphIsRefusedNamingTheNode) {
  const PreparedModel prepared = Prepared(Backend::kXnnpack);
  const absl::StatusOr<std::string> bytes = ExportOnnx(prepared.graph(), {});
  ASSERT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bytes.status().message().find("observer"), std::string::npos) << bytes.status();
  EXPECT_NE(bytes.status().message().find("Convert"), std::string::npos) << bytes.status();
}

TEST(OnnxExportTest, UnmappableAttributesAreRefused) {
  Graph g;
  const NodeId x = g.AddInput("x", {1, 4, 8, 8}).value();
  AdaptiveAvgPool2dAttrs pool;
  pool.output_size = {2, 2};
  const NodeId p = g.AddNode(OpKind::kAdaptiveAvgPool2d, "pool2x2", {x}, pool).value();
  EXPECT_EQ(ExportOnnx(g, {}).status().code(), absl::StatusCode::kInvalidArgument);  // no output
  ASSERT_TRUE(g.SetOutputs({p}).ok());
  const absl::Status status = ExportOnnx(g, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("pool2x2"), std::string::npos) << status;
}

TEST(OnnxExportTest, FileIsWrittenOnceAndNeverOverwritten) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp != nullptr ? tmp : "/tmp";
  const std::string path = dir + "/resnet20.onnx";
  unlink(path.c_str());
  const Graph g = FloatResNet20();
  ASSERT_TRUE(ExportOnnxFile(g, {}, path).ok());
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  EXPECT_EQ(bytes.str(), ExportOnnx(g, {}).value());
  ExportOptions other;
  other.model_name = "other";
  EXPECT_EQ(ExportOnnxFile(g, other, path).code(), absl::StatusCode::kAlreadyExists);
  std::ifstream again(path, std::ios::binary);
  std::stringstream after;
  after << again.rdbuf();
  EXPECT_EQ(after.str(), bytes.str());
}

}  // namespace
}  // namespace qlab
