// Int8Engine: convert's Q/DQ reference model lowered onto the integer kernels.
//
// The converted graph says, per tensor, "these values are integers with this scale and zero
// point". Lowering executes exactly that on kernels/qconv, kernels/qpool and kernels/quantize,
// NHWC, with activations held as uint8 (an int8 tensor with zero point z is the same numbers as a
// uint8 tensor with zero point z + 128, so one set of u8 x s8 kernels serves every backend):
//
//   DQ(q) -> conv2d/linear(DQ(w int8), DQ(b int32) | float b) [-> relu] -> Q   one int8 conv with
//        its output stage (bias, per-channel multiplier x_scale*w_scale/y_scale, zero point,
//        fused ReLU as the clamp at the zero point)
//   DQ(q) -> conv2d/linear -> (no Q: a float consumer)     int8 conv, dequantized f32 output
//   DQ(a) + DQ(b) [-> relu] -> Q                           int8 add with requantization
//   DQ(q) -> max_pool2d | flatten | strided_slice | channel_pad [-> Q, same params]
//                                                          on the integers, no requantization
//   DQ(q) -> adaptive_avg_pool2d(1x1) -> Q                 int8 global average pool, requantized
//   Q(float value)                                          quantize (the network input)
// Everything else runs in float between a dequantize and a quantize: add, relu, pools, slice,
// pad, flatten on f32 (TensorRT-style graphs keep outputs in float). Each such step is listed in
// report() -- never silent. Convolutions and linears whose input or weights are float (a layer
// left in float) are not lowered yet: Create returns Unimplemented naming the node.
//
// Arithmetic differs from the fake-quant reference only in where rounding happens: the int8
// conv requantizes acc * (x_s * w_s / y_s) in one float multiply where the reference computes
// float(conv(DQ, DQ)) and then divides by y_s; float biases become int32 at scale x_s * w_s; the
// int8 add multiplies each input by s_i / y_s. A value on a rounding boundary therefore lands
// one step apart now and then, and such differences carry downstream: ResNet logits agree with
// fake quantization to within a few steps, and predictions on 99.5-99.95 % of CIFAR-10 images
// (int8_engine_test and the PTQ records measure both).
#ifndef QLAB_ENGINE_INT8_ENGINE_H_
#define QLAB_ENGINE_INT8_ENGINE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "quant/graph/graph.h"

namespace qlab {

struct LoweringReport {
  std::vector<std::string> integer_steps;  // "conv2d %layer1.0.conv1 -> int8 conv (u8 out, relu)"
  std::vector<std::string> float_steps;    // "add %add: float (inputs not both quantized)"
  std::string Summary() const;             // "23 integer steps, 2 float steps: ..."
};

class Int8Engine {
 public:
  // `converted` is convert's output (quant/convert.h) with batch norm folded before annotation.
  // InvalidArgument naming the node for graphs it cannot run; Unimplemented for float layers.
  static absl::StatusOr<Int8Engine> Create(const Graph& converted, int threads);

  Int8Engine(Int8Engine&&) noexcept;
  Int8Engine& operator=(Int8Engine&&) noexcept;
  ~Int8Engine();

  // float32 NCHW input (any batch >= 1) -> the graph's first output as float32 (logits).
  // Not thread-safe: one engine per calling thread.
  absl::StatusOr<Tensor> Run(const Tensor& input);

  // Keep every intermediate value until the next Run (off by default: values are freed after
  // their last reader), so that QuantizedValue can read them.
  void KeepAllValues(bool keep);
  // The dequantized value of a quantize node of the graph after the last Run, by node name
  // (NHWC activations as NCHW float), for per-layer comparisons with the reference.
  // FailedPrecondition when the value was freed (see KeepAllValues).
  absl::StatusOr<Tensor> QuantizedValue(const std::string& quantize_node_name) const;

  const LoweringReport& report() const;

 private:
  struct Impl;
  explicit Int8Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qlab

#endif  // QLAB_ENGINE_INT8_ENGINE_H_
