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
// Arithmetic (Int8EngineOptions; defaults chosen by measurement, experiments/README.md "Targets
// (issue 7)"): every requantization repeats the reference's own float steps on the same values.
// A conv/linear's output stage computes the layer's float output, float(acc) * (x_s * w_s) +
// bias (x86's float bias stays float: kernels/qgemm's kFloatBias stage), then quantizes it as
// kernels/quantize and PyTorch do, nearbyint(v * (1.0f / y_s)) + y_zp; the add and the global
// average pool dequantize, add or average in float in the reference's order, and quantize, bit
// for bit. The reference's convolutions sum in double (Fp32Accumulation::kDouble, as
// experiments/ptq evaluates it), so what remains is the rounding of its dequantized float
// operands: a fraction of an output per million lands on the other side of a rounding boundary
// (//engine:int8_agreement isolates each layer's own differences), and such a one-step
// difference carries downstream. Top-1 predictions agree with fake quantization on 99.9 % or
// more of the CIFAR-10 test images (the PTQ records measure it; experiments/README.md).
#ifndef QLAB_ENGINE_INT8_ENGINE_H_
#define QLAB_ENGINE_INT8_ENGINE_H_

#include <cstdint>
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

// How the engine rounds where the fake-quant reference computes in float. The defaults follow
// the reference's arithmetic (issue 7: identical top-1 predictions on >= 99.9 % of images); the
// other forms are the classic fused ones, as ONNX Runtime's quantized models compute them.
struct Int8EngineOptions {
  // A conv/linear bias kept in float by the quantizer (x86, FBGEMM style).
  enum class FloatBias : uint8_t {
    kFloat,           // y = (float(acc) * x_s * w_s + bias) * (1 / y_s): the reference's order
    kRoundedToInt32,  // int32 nearbyint(bias / (x_s * w_s)), then one multiplier
                      // x_s * w_s / y_s (ONNX Runtime's optimizer rounds the same way)
  };
  FloatBias float_bias = FloatBias::kFloat;
  // A conv/linear whose bias is int32 at scale x_s * w_s (xnnpack, tensorrt), or that has none.
  enum class Int32Bias : uint8_t {
    kOneMultiplier,  // float(acc + bias) * (x_s * w_s / y_s)
    kTwoStep,        // float(acc + bias) * (x_s * w_s), then * (1 / y_s)
    kDequantized,    // (float(acc) * (x_s * w_s) + float(bias) * b_s) * (1 / y_s): the reference
                     // adds the dequantized bias to its float convolution
  };
  Int32Bias int32_bias = Int32Bias::kTwoStep;
  // Residual add: kReference computes (float(a - a_zp) * a_s + float(b - b_zp) * b_s) * (1 / y_s),
  // the reference's own operations on the same integers (bit for bit); kPerInputMultipliers
  // (float(a - a_zp) * (a_s / y_s) + float(b - b_zp) * (b_s / y_s)).
  enum class Add : uint8_t { kReference, kPerInputMultipliers };
  Add add = Add::kReference;
  // Global average pool: kReference dequantizes, sums in float pixel by pixel, divides by the
  // pixel count and quantizes (* (1 / y_s)), as the reference (bit for bit); kInteger sums the
  // integers exactly and requantizes once by x_s / (y_s * H * W).
  enum class GlobalAverage : uint8_t { kReference, kInteger };
  GlobalAverage global_average = GlobalAverage::kReference;
};

class Int8Engine {
 public:
  // `converted` is convert's output (quant/convert.h) with batch norm folded before annotation.
  // InvalidArgument naming the node for graphs it cannot run; Unimplemented for float layers.
  static absl::StatusOr<Int8Engine> Create(const Graph& converted, int threads);
  static absl::StatusOr<Int8Engine> Create(const Graph& converted, int threads,
                                           const Int8EngineOptions& options);

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
