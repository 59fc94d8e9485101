// ONNX export: a qlab Graph (FP32, or converted to the Q/DQ reference form) as an ONNX model.
//
// This is the exit from qlab to deployment runtimes (ONNX Runtime, TensorRT): a converted graph
// (quant/convert.h) becomes the standard "QDQ" ONNX form, each quantize / dequantize node a
// QuantizeLinear / DequantizeLinear with its scale and zero point as initializers, int8 / uint8
// weights and int32 biases as integer initializers behind a DequantizeLinear (per channel with
// `axis`). A runtime then fuses the DQ -> op -> Q patterns into its own integer kernels, exactly as
// it does for models quantized by PyTorch or onnxruntime.quantization.
//
// The model is opset 13 (ai.onnx), IR version 7. Op mapping (NCHW, as qlab and ONNX both are):
//   conv2d -> Conv              linear -> Gemm(transB=1)     batch_norm -> BatchNormalization
//   relu, add, sigmoid, identity -> Relu, Add, Sigmoid, Identity
//   max_pool2d / avg_pool2d -> MaxPool / AveragePool   adaptive_avg_pool2d(1x1) -> GlobalAveragePool
//   flatten(start_dim=1) -> Flatten(axis=1)   cat -> Concat
//   strided_slice -> Slice (starts/ends/axes/steps as int64 initializers)
//   channel_pad -> Pad (pads on axis 1 only, constant 0)
//   quantize -> QuantizeLinear (int8/uint8)  dequantize -> DequantizeLinear (int8/uint8/int32)
//   parameter -> initializer     input -> graph input (batch dimension symbolic, "N")
// Anything else (observer and fake-quantize nodes of a prepared graph, dynamic quantization,
// quantize to int32, a non-global adaptive pool, flatten from another dim) is InvalidArgument
// naming the node: export a converted graph, not a prepared one.
//
// Restricted ranges. ONNX QuantizeLinear rounds half to even and saturates to the *full* range
// of its output type, as qlab does to [quant_min, quant_max]. The two agree whenever that range
// is the type's full range (xnnpack and x86 activations). A restricted range (TensorRT's int8
// [-127,127] activations) has no QuantizeLinear attribute; with `clip_restricted_ranges` (the
// default) the exporter follows the QuantizeLinear by an integer Clip to [quant_min, quant_max],
// which is exact but which a runtime may not fuse (it then runs that tensor's consumers in float,
// correctly but slower). Without it the Clip is left out: values that stay inside the range (all
// of them, when the scale came from calibration on the same data) are unchanged, outliers
// saturate one step further out than in qlab. Weights are not affected: they are stored already
// quantized, so their range is whatever convert produced.
//
//   QLAB_ASSIGN_OR_RETURN(std::string bytes, ExportOnnx(converted, {}));
//   QLAB_RETURN_IF_ERROR(ExportOnnxFile(converted, {}, "/tmp/resnet20_xnnpack.onnx"));
#ifndef QLAB_INTERCHANGE_ONNX_EXPORT_H_
#define QLAB_INTERCHANGE_ONNX_EXPORT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/graph/graph.h"

namespace qlab {

struct ExportOptions {
  std::string model_name = "qlab";  // GraphProto.name
  std::string doc_string;           // ModelProto.doc_string (e.g. the PTQ config)
  // The batch dimension of inputs and outputs as the symbolic dimension "N" (any batch at run
  // time, as qlab's interpreter allows); false records the graph's build batch.
  bool dynamic_batch = true;
  // Restricted quantization ranges: see the header comment.
  bool clip_restricted_ranges = true;
};

// The serialized onnx::ModelProto. InvalidArgument naming the node for an op or attribute ONNX
// opset 13 cannot express; InvalidArgument for a graph without outputs or with a cycle.
absl::StatusOr<std::string> ExportOnnx(const Graph& graph, const ExportOptions& options);

// ExportOnnx written to `path` atomically (a temporary file in the same folder, then a rename
// that refuses to replace anything): AlreadyExists if `path` exists, never a half-written file.
absl::Status ExportOnnxFile(const Graph& graph, const ExportOptions& options,
                            const std::string& path);

}  // namespace qlab

#endif  // QLAB_INTERCHANGE_ONNX_EXPORT_H_
