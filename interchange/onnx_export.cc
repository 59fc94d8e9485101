// ONNX export (see onnx_export.h): one pass over the graph in topological order, each qlab node
// becoming one ONNX node (two for a restricted-range quantize), with the constants ONNX wants as
// inputs (scales, zero points, slice bounds, pads) added as initializers named after the node.
#include "interchange/onnx_export.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "onnx/onnx_pb.h"

namespace qlab {
namespace {

constexpr int64_t kOpsetVersion = 13;
constexpr int64_t kIrVersion = 7;  // the IR version that goes with opset 13

int32_t OnnxElementType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return onnx::TensorProto::FLOAT;
    case DType::kInt8:
      return onnx::TensorProto::INT8;
    case DType::kUInt8:
      return onnx::TensorProto::UINT8;
    case DType::kInt32:
      return onnx::TensorProto::INT32;
  }
  return onnx::TensorProto::UNDEFINED;
}

// The full range of an integer dtype (what QuantizeLinear saturates to).
void FullRange(DType dtype, int64_t& lo, int64_t& hi) {
  switch (dtype) {
    case DType::kInt8:
      lo = -128, hi = 127;
      return;
    case DType::kUInt8:
      lo = 0, hi = 255;
      return;
    default:
      lo = INT32_MIN, hi = INT32_MAX;
      return;
  }
}

// Builds the GraphProto. Owns the set of value names so that the initializers it invents
// ("conv1.q.scale") never collide with a node's name.
class Exporter {
 public:
  Exporter(const Graph& graph, const ExportOptions& options, onnx::GraphProto& out)
      : graph_(graph), options_(options), out_(out) {
    for (NodeId id : graph_.node_ids()) used_.insert(graph_.node(id).name);
  }

  absl::Status Run() {
    if (graph_.outputs().empty()) {
      return absl::InvalidArgumentError("ONNX export: the graph has no outputs");
    }
    QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, graph_.TopologicalOrder());
    out_.set_name(options_.model_name);
    for (NodeId id : order) QLAB_RETURN_IF_ERROR(ExportNode(graph_.node(id)));
    for (NodeId id : graph_.outputs()) {
      const Node& n = graph_.node(id);
      FillValueInfo(n.name, n.dtype, n.shape, out_.add_output());
    }
    return absl::OkStatus();
  }

 private:
  std::string FreshName(absl::string_view base) {
    std::string name(base);
    for (int i = 1; used_.contains(name); ++i) name = absl::StrCat(base, "_", i);
    used_.insert(name);
    return name;
  }

  void FillValueInfo(const std::string& name, DType dtype, const Shape& shape,
                     onnx::ValueInfoProto* info) const {
    info->set_name(name);
    onnx::TypeProto_Tensor* t = info->mutable_type()->mutable_tensor_type();
    t->set_elem_type(OnnxElementType(dtype));
    onnx::TensorShapeProto* s = t->mutable_shape();
    for (size_t i = 0; i < shape.size(); ++i) {
      // Dimension 0 is the batch: every qlab op keeps batch entries apart (graph.h).
      if (i == 0 && options_.dynamic_batch) {
        s->add_dim()->set_dim_param("N");
      } else {
        s->add_dim()->set_dim_value(shape[i]);
      }
    }
  }

  // An initializer under a fresh name derived from `base`.
  std::string AddInitializer(absl::string_view base, int32_t elem_type,
                             const std::vector<int64_t>& dims, const void* data, size_t bytes) {
    const std::string name = FreshName(base);
    AddTensor(name, elem_type, dims, data, bytes);
    return name;
  }

  // An initializer under `name` (already reserved), from raw little-endian bytes (x86-64 is
  // little-endian, as ONNX's raw_data).
  void AddTensor(const std::string& name, int32_t elem_type, const std::vector<int64_t>& dims,
                 const void* data, size_t bytes) {
    onnx::TensorProto* t = out_.add_initializer();
    t->set_name(name);
    t->set_data_type(elem_type);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(data, bytes);
  }

  std::string AddInt64s(absl::string_view base, const std::vector<int64_t>& values) {
    return AddInitializer(base, onnx::TensorProto::INT64, {static_cast<int64_t>(values.size())},
                          values.data(), values.size() * sizeof(int64_t));
  }

  // Scale (float) and zero point (the quantized dtype) of a quantize / dequantize: scalars for
  // per-tensor parameters, 1-D [C] for per-channel ones (ONNX's rule for the `axis` attribute).
  absl::Status AddQParams(const Node& n, const QuantParams& p, std::string& scale,
                          std::string& zero_point) {
    if (p.scales.empty() || p.scales.size() != p.zero_points.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ONNX export: node '", n.name, "' has ", p.scales.size(), " scales and ",
          p.zero_points.size(), " zero points"));
    }
    const bool per_channel = IsPerChannel(p.qscheme);
    if (!per_channel && p.scales.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("ONNX export: node '", n.name,
                                                     "' is per tensor with ", p.scales.size(),
                                                     " scales"));
    }
    std::vector<int64_t> dims;
    if (per_channel) dims.push_back(static_cast<int64_t>(p.scales.size()));
    scale = AddInitializer(absl::StrCat(n.name, ".scale"), onnx::TensorProto::FLOAT, dims,
                           p.scales.data(), p.scales.size() * sizeof(float));
    const size_t c = p.zero_points.size();
    switch (p.dtype) {
      case DType::kInt8: {
        std::vector<int8_t> zp(p.zero_points.begin(), p.zero_points.end());
        zero_point = AddInitializer(absl::StrCat(n.name, ".zero_point"), onnx::TensorProto::INT8,
                                    dims, zp.data(), c);
        break;
      }
      case DType::kUInt8: {
        std::vector<uint8_t> zp(p.zero_points.begin(), p.zero_points.end());
        zero_point = AddInitializer(absl::StrCat(n.name, ".zero_point"), onnx::TensorProto::UINT8,
                                    dims, zp.data(), c);
        break;
      }
      case DType::kInt32:
        // DequantizeLinear-13 takes int32 input only with zero point 0 (a bias).
        for (int32_t z : p.zero_points) {
          if (z != 0) {
            return absl::InvalidArgumentError(
                absl::StrCat("ONNX export: node '", n.name, "' is int32 with zero point ", z,
                             " (ONNX DequantizeLinear needs 0 for int32)"));
          }
        }
        zero_point = AddInitializer(absl::StrCat(n.name, ".zero_point"), onnx::TensorProto::INT32,
                                    dims, p.zero_points.data(), c * sizeof(int32_t));
        break;
      case DType::kFloat32:
        return absl::InvalidArgumentError(
            absl::StrCat("ONNX export: node '", n.name, "' quantizes to float32"));
    }
    return absl::OkStatus();
  }

  onnx::NodeProto* AddOnnxNode(const Node& n, const char* op_type, const std::string& output) {
    onnx::NodeProto* node = out_.add_node();
    node->set_name(output);
    node->set_op_type(op_type);
    for (NodeId in : n.inputs) node->add_input(graph_.node(in).name);
    node->add_output(output);
    return node;
  }

  static void SetInts(onnx::NodeProto* node, const char* name, std::vector<int64_t> values) {
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : values) a->add_ints(v);
  }
  static void SetInt(onnx::NodeProto* node, const char* name, int64_t value) {
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }
  static void SetFloat(onnx::NodeProto* node, const char* name, float value) {
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(value);
  }

  absl::Status Unsupported(const Node& n, absl::string_view why) const {
    return absl::InvalidArgumentError(absl::StrCat("ONNX export: node '", n.name, "' (",
                                                   OpKindName(n.op), ") ", why));
  }

  absl::Status ExportParameter(const Node& n) {
    const Tensor& v = n.value;
    if (v.layout() == Layout::kNHWC || v.layout() == Layout::kOHWI) {
      return Unsupported(n, absl::StrCat("is stored ", LayoutName(v.layout()),
                                         "; ONNX initializers here are NCHW / OIHW"));
    }
    std::vector<int64_t> dims(v.shape().begin(), v.shape().end());
    AddTensor(n.name, OnnxElementType(v.dtype()), dims, v.raw_data(), v.nbytes());
    return absl::OkStatus();
  }

  absl::Status ExportQuantize(const Node& n) {
    const QuantizeAttrs& a = n.attr<QuantizeAttrs>();
    if (a.dynamic) return Unsupported(n, "is dynamic (choose_qparams per run): not exported");
    const QuantParams& p = a.params;
    if (p.dtype != DType::kInt8 && p.dtype != DType::kUInt8) {
      return Unsupported(n, absl::StrCat("quantizes to ", DTypeName(p.dtype),
                                         "; QuantizeLinear-13 produces int8 or uint8"));
    }
    std::string scale, zero_point;
    QLAB_RETURN_IF_ERROR(AddQParams(n, p, scale, zero_point));
    int64_t lo, hi;
    FullRange(p.dtype, lo, hi);
    const bool restricted = p.quant_min > lo || p.quant_max < hi;
    const bool clip = restricted && options_.clip_restricted_ranges;
    // With a Clip, the QuantizeLinear writes an intermediate and the Clip the node's value.
    const std::string q_out = clip ? FreshName(absl::StrCat(n.name, ".full_range")) : n.name;
    onnx::NodeProto* q = AddOnnxNode(n, "QuantizeLinear", q_out);
    q->add_input(scale);
    q->add_input(zero_point);
    if (IsPerChannel(p.qscheme)) SetInt(q, "axis", p.axis);
    if (!clip) return absl::OkStatus();
    // Clip's bounds are scalars of its input's type: one byte each (int8 or uint8; the range
    // was validated against the dtype when the parameters were made).
    const char lo_byte = static_cast<char>(p.quant_min), hi_byte = static_cast<char>(p.quant_max);
    const std::string lo_name = AddInitializer(absl::StrCat(n.name, ".quant_min"),
                                               OnnxElementType(p.dtype), {}, &lo_byte, 1);
    const std::string hi_name = AddInitializer(absl::StrCat(n.name, ".quant_max"),
                                               OnnxElementType(p.dtype), {}, &hi_byte, 1);
    onnx::NodeProto* c = out_.add_node();
    c->set_name(n.name);
    c->set_op_type("Clip");
    c->add_input(q_out);
    c->add_input(lo_name);
    c->add_input(hi_name);
    c->add_output(n.name);
    return absl::OkStatus();
  }

  absl::Status ExportDequantize(const Node& n) {
    const QuantizeAttrs& a = n.attr<QuantizeAttrs>();
    if (a.dynamic) return Unsupported(n, "is dynamic (choose_qparams per run): not exported");
    std::string scale, zero_point;
    QLAB_RETURN_IF_ERROR(AddQParams(n, a.params, scale, zero_point));
    onnx::NodeProto* dq = AddOnnxNode(n, "DequantizeLinear", n.name);
    dq->add_input(scale);
    dq->add_input(zero_point);
    if (IsPerChannel(a.params.qscheme)) SetInt(dq, "axis", a.params.axis);
    return absl::OkStatus();
  }

  absl::Status ExportPool(const Node& n, const char* op_type) {
    const Pool2dAttrs& a = n.attr<Pool2dAttrs>();
    onnx::NodeProto* node = AddOnnxNode(n, op_type, n.name);
    SetInts(node, "kernel_shape", {a.kernel[0], a.kernel[1]});
    SetInts(node, "strides", {a.stride[0], a.stride[1]});
    SetInts(node, "pads", {a.padding[0], a.padding[1], a.padding[0], a.padding[1]});
    SetInt(node, "ceil_mode", a.ceil_mode ? 1 : 0);
    if (n.op == OpKind::kAvgPool2d) SetInt(node, "count_include_pad", a.count_include_pad ? 1 : 0);
    return absl::OkStatus();
  }

  absl::Status ExportNode(const Node& n) {
    switch (n.op) {
      case OpKind::kInput:
        FillValueInfo(n.name, n.dtype, n.shape, out_.add_input());
        return absl::OkStatus();
      case OpKind::kParameter:
        return ExportParameter(n);
      case OpKind::kConv2d: {
        const Conv2dAttrs& a = n.attr<Conv2dAttrs>();
        const Shape& w = graph_.node(n.inputs[1]).shape;  // OIHW
        onnx::NodeProto* node = AddOnnxNode(n, "Conv", n.name);
        SetInts(node, "kernel_shape", {w[2], w[3]});
        SetInts(node, "strides", {a.stride[0], a.stride[1]});
        SetInts(node, "pads", {a.padding[0], a.padding[1], a.padding[0], a.padding[1]});
        SetInts(node, "dilations", {a.dilation[0], a.dilation[1]});
        SetInt(node, "group", a.groups);
        return absl::OkStatus();
      }
      case OpKind::kLinear: {
        // y = x W^T + b with W [out, in]: Gemm's transB.
        onnx::NodeProto* node = AddOnnxNode(n, "Gemm", n.name);
        SetInt(node, "transB", 1);
        return absl::OkStatus();
      }
      case OpKind::kBatchNorm: {
        onnx::NodeProto* node = AddOnnxNode(n, "BatchNormalization", n.name);
        SetFloat(node, "epsilon", n.attr<BatchNormAttrs>().eps);
        return absl::OkStatus();
      }
      case OpKind::kRelu:
        AddOnnxNode(n, "Relu", n.name);
        return absl::OkStatus();
      case OpKind::kAdd:
        AddOnnxNode(n, "Add", n.name);
        return absl::OkStatus();
      case OpKind::kSigmoid:
        AddOnnxNode(n, "Sigmoid", n.name);
        return absl::OkStatus();
      case OpKind::kIdentity:
        AddOnnxNode(n, "Identity", n.name);
        return absl::OkStatus();
      case OpKind::kMaxPool2d:
        return ExportPool(n, "MaxPool");
      case OpKind::kAvgPool2d:
        return ExportPool(n, "AveragePool");
      case OpKind::kAdaptiveAvgPool2d: {
        const AdaptiveAvgPool2dAttrs& a = n.attr<AdaptiveAvgPool2dAttrs>();
        if (a.output_size[0] != 1 || a.output_size[1] != 1) {
          return Unsupported(n, absl::StrCat("has output size [", a.output_size[0], ",",
                                             a.output_size[1], "]; only 1x1 (GlobalAveragePool)"));
        }
        AddOnnxNode(n, "GlobalAveragePool", n.name);
        return absl::OkStatus();
      }
      case OpKind::kFlatten: {
        // ONNX Flatten always gives rank 2; PyTorch's flatten(start_dim) does only for 1.
        const int64_t start = n.attr<FlattenAttrs>().start_dim;
        if (start != 1) {
          return Unsupported(n, absl::StrCat("has start_dim ", start, "; only 1 maps to Flatten"));
        }
        SetInt(AddOnnxNode(n, "Flatten", n.name), "axis", 1);
        return absl::OkStatus();
      }
      case OpKind::kCat:
        SetInt(AddOnnxNode(n, "Concat", n.name), "axis", n.attr<CatAttrs>().axis);
        return absl::OkStatus();
      case OpKind::kStridedSlice: {
        // ONNX Slice clamps `ends` to the dimension, like Python slicing and qlab.
        const StridedSliceAttrs& a = n.attr<StridedSliceAttrs>();
        std::vector<int64_t> axes(a.begin.size());
        for (size_t i = 0; i < axes.size(); ++i) axes[i] = static_cast<int64_t>(i);
        const std::string starts = AddInt64s(absl::StrCat(n.name, ".starts"), a.begin);
        const std::string ends = AddInt64s(absl::StrCat(n.name, ".ends"), a.end);
        const std::string axes_name = AddInt64s(absl::StrCat(n.name, ".axes"), axes);
        const std::string steps = AddInt64s(absl::StrCat(n.name, ".steps"), a.step);
        onnx::NodeProto* node = AddOnnxNode(n, "Slice", n.name);
        for (const std::string* s : {&starts, &ends, &axes_name, &steps}) node->add_input(*s);
        return absl::OkStatus();
      }
      case OpKind::kChannelPad: {
        const ChannelPadAttrs& a = n.attr<ChannelPadAttrs>();
        const size_t rank = graph_.node(n.inputs[0]).shape.size();
        // ONNX pads: all axes' begins, then all axes' ends; only axis 1 (channels) is padded.
        std::vector<int64_t> pads(2 * rank, 0);
        pads[1] = a.before;
        pads[rank + 1] = a.after;
        const std::string pads_name = AddInt64s(absl::StrCat(n.name, ".pads"), pads);
        const float zero = 0.0f;
        const std::string value = AddInitializer(absl::StrCat(n.name, ".value"),
                                                 onnx::TensorProto::FLOAT, {}, &zero, sizeof(zero));
        onnx::NodeProto* node = AddOnnxNode(n, "Pad", n.name);
        node->add_input(pads_name);
        node->add_input(value);
        return absl::OkStatus();
      }
      case OpKind::kQuantize:
        return ExportQuantize(n);
      case OpKind::kDequantize:
        return ExportDequantize(n);
      case OpKind::kObserver:
      case OpKind::kFakeQuantize:
        return Unsupported(n, "belongs to a prepared graph: Convert it first");
    }
    return Unsupported(n, "has no ONNX mapping");
  }

  const Graph& graph_;
  const ExportOptions& options_;
  onnx::GraphProto& out_;
  absl::flat_hash_set<std::string> used_;
};

}  // namespace

absl::StatusOr<std::string> ExportOnnx(const Graph& graph, const ExportOptions& options) {
  onnx::ModelProto model;
  model.set_ir_version(kIrVersion);
  model.set_producer_name("qlab");
  if (!options.doc_string.empty()) model.set_doc_string(options.doc_string);
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpsetVersion);
  Exporter exporter(graph, options, *model.mutable_graph());
  QLAB_RETURN_IF_ERROR(exporter.Run());
  std::string bytes;
  if (!model.SerializeToString(&bytes)) {
    // Protobuf refuses messages over 2 GiB; a CNN's weights are far below that.
    return absl::ResourceExhaustedError("ONNX export: the model does not serialize (over 2 GiB?)");
  }
  return bytes;
}

absl::Status ExportOnnxFile(const Graph& graph, const ExportOptions& options,
                            const std::string& path) {
  if (access(path.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError(absl::StrCat("ONNX export: ", path, " exists"));
  }
  QLAB_ASSIGN_OR_RETURN(const std::string bytes, ExportOnnx(graph, options));
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("ONNX export: cannot create a file next to ", path, ": ", strerror(errno)));
  }
  fchmod(fd, 0644);  // mkstemp's 0600 would hide the model from other users of the folder
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t w = write(fd, bytes.data() + written, bytes.size() - written);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    written += static_cast<size_t>(w);
  }
  const bool ok = written == bytes.size() && fsync(fd) == 0;
  close(fd);
  if (!ok) {
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("ONNX export: writing ", tmp, " failed"));
  }
  // link() fails with EEXIST instead of replacing (rename would overwrite a file created since
  // the check above); the temporary name then goes away.
  const int linked = link(tmp.c_str(), path.c_str());
  const int link_errno = errno;
  unlink(tmp.c_str());
  if (linked != 0) {
    if (link_errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat("ONNX export: ", path, " exists"));
    }
    return absl::InternalError(
        absl::StrCat("ONNX export: cannot create ", path, ": ", strerror(link_errno)));
  }
  return absl::OkStatus();
}

}  // namespace qlab
