// ONNX import: an ONNX CNN (opset 11..17) as a qlab Graph, so that a model trained and exported
// elsewhere (PyTorch's torch.onnx.export, another toolchain, or qlab's own ExportOnnx) can be
// quantized by qlab's flow (quantizer -> prepare -> calibrate -> convert -> Int8Engine).
//
// Every ONNX value becomes at most one qlab node, named after the value (an ONNX node's output;
// a name already taken gets UniqueName's suffix). Initializers and Constant nodes become
// `parameter` nodes when a float op reads them (integer constants only ever feed attributes:
// Slice bounds, Pad widths, Reshape shapes). Graph inputs that are not initializers become
// `input` nodes (float32; the batch dimension may be symbolic, every other dimension must be a
// number). Op mapping:
//   Conv -> conv2d (symmetric pads; auto_pad NOTSET / VALID / SAME_* when the SAME padding comes
//           out symmetric; group, dilations, strides, optional bias)
//   Gemm -> linear (alpha = beta = 1, transA = 0; transB = 0 transposes the weight initializer;
//           bias [out] or [1, out])
//   MatMul(x, W) [-> Add(b)] -> linear(x, W^T[, b]) (W an initializer; the Add folds when it is
//           the MatMul's only consumer and adds a constant [out] / [1, out])
//   BatchNormalization -> batch_norm (inference form; ONNX momentum m is PyTorch's 1 - m)
//   Relu, Sigmoid, Add (same shapes, no broadcasting) -> relu, sigmoid, add
//   MaxPool / AveragePool -> max_pool2d / avg_pool2d (symmetric pads, no dilation; the output
//           shape must equal ONNX's; an average-pool window hanging over the padded input in
//           ceil mode with count_include_pad is rejected: runtimes disagree on its divisor)
//   GlobalAveragePool -> adaptive_avg_pool2d(1x1)
//   Flatten(axis 1), Reshape to [0 | N, -1 | C*H*W] (batch kept) -> flatten(start_dim 1)
//   Concat (a non-batch axis) -> cat    Slice (constant bounds, steps > 0) -> strided_slice
//   Pad (constant 0): channels only -> channel_pad; H/W only -> folded into the padding of the
//           Conv / AveragePool / MaxPool reading it when that is exact (a MaxPool only when its
//           input is a Relu's or Sigmoid's output, i.e. never negative), else InvalidArgument
//   Identity, Dropout (inference) -> no node (the consumer reads the input)
//   Constant -> a constant (as initializers are); ConstantOfShape, Transpose, Cast, Unsqueeze,
//           Squeeze, and Concat / Reshape / Slice whose inputs are all integer constants are
//           evaluated at import (PyTorch exports F.pad's widths as such a computation)
// Anything qlab's graph cannot express exactly is InvalidArgument naming the ONNX node. All
// unsupported op types are reported in one error, each with the names of its nodes.
//
// Hostile input: the bytes are only ever parsed by protobuf; every size is checked against the
// data actually present before anything is allocated, so truncated or garbage bytes, tensors whose
// data does not match their dims, negative or overflowing dims, external data, unknown dtypes,
// dangling inputs, cycles and duplicate value names are errors, never crashes or huge allocations.
// ParseFromArray failing is DataLoss; everything else InvalidArgument.
//
//   QLAB_ASSIGN_OR_RETURN(Graph model, ImportOnnxFile("/tmp/resnet18.onnx", {}));
//   QLAB_RETURN_IF_ERROR(FoldBatchNorm(model));   // then annotate / prepare as any qlab model
#ifndef QLAB_INTERCHANGE_ONNX_IMPORT_H_
#define QLAB_INTERCHANGE_ONNX_IMPORT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "quant/graph/graph.h"

namespace qlab {

struct ImportOptions {
  // The batch recorded in the graph for a symbolic (or unset) batch dimension of a graph input.
  // qlab runs any batch whatever is recorded; this only fixes the shapes Dump() prints.
  int64_t batch = 1;
  // Upper bound on the elements of one initializer or Constant (float32: 4 bytes each). The data
  // must be present in the file anyway, so this only rejects oversized tensors with a clear
  // message before decoding them.
  int64_t max_tensor_elements = int64_t{1} << 30;
};

// The graph described by a serialized onnx::ModelProto (the byte-level entry point, also for
// fuzzing). DataLoss if the bytes do not parse; InvalidArgument for a model qlab cannot represent
// exactly or that is malformed, naming the node, value or initializer.
absl::StatusOr<Graph> ImportOnnx(absl::string_view serialized_model_proto,
                                 const ImportOptions& options);

// ImportOnnx on the contents of `path`; every error message starts with the path. NotFound if the
// file cannot be opened, InvalidArgument if it is larger than protobuf can parse (2 GiB).
absl::StatusOr<Graph> ImportOnnxFile(const std::string& path, const ImportOptions& options);

}  // namespace qlab

#endif  // QLAB_INTERCHANGE_ONNX_IMPORT_H_
