// Quantization kernels: the element-wise hot loops of every quantization flow in qlab.
//
// This is the kernel layer (in XNNPACK's terms, microkernels): raw pointers, no validation, no
// allocation, no Highway types. Callers validate once (quant/quantize_tensor.h does it for
// Tensors); the kernels assume what each comment states. Each entry point dispatches at run time
// to the best Highway target the CPU supports (AVX3_DL, AVX3, AVX2, SSE4, ..., SCALAR); the
// scalar oracle every target must match lives in quantize_ref.h.
//
// Arithmetic (PyTorch's, so that observers and fake-quant agree with it bit for bit):
//   quantize      q = clamp(nearbyint(x * inv_scale) + zero_point, quant_min, quant_max),
//                 inv_scale = 1.0f / scale computed in float, rounding half to even.
//   dequantize    x = float(q - zero_point) * scale.
//   fake-quantize y = float(quantize(x) - zero_point) * scale, and the straight-through mask
//                 m = quant_min <= nearbyint(x * inv_scale) + zero_point <= quant_max.
// Every step is a single IEEE-754 operation, so SIMD and scalar results are identical, floats
// included: tests demand exact equality everywhere.
//
// Non-finite inputs: +Inf saturates to quant_max, -Inf to quant_min, and NaN quantizes to the
// zero point (i.e. to 0.0), with a straight-through mask of 0 for all three. Observers reject
// NaN before it gets here (see MinMax's nan_count).
#ifndef QLAB_KERNELS_QUANTIZE_QUANTIZE_H_
#define QLAB_KERNELS_QUANTIZE_QUANTIZE_H_

#include <cstddef>
#include <cstdint>

namespace qlab::kernels {

// A dense tensor viewed around its channel axis as [outer, channels, inner], row-major.
// NCHW with the channel axis 1: {N, C, H*W}. NHWC with axis 3: {N*H*W, C, 1}.
// Weights OIHW with axis 0: {1, O, I*H*W}. Per-tensor parameters are {1, 1, n}.
struct ChannelDims {
  size_t outer = 1;
  size_t channels = 1;
  size_t inner = 1;
  size_t size() const { return outer * channels * inner; }
};

// Affine quantization parameters of one tensor. Preconditions (checked by callers): scale is
// finite and > 0; quant_min <= quant_max, both representable in the output type; |zero_point|
// <= 2^24 so that float(zero_point) is exact.
struct AffineParams {
  float scale;
  int32_t zero_point;
  int32_t quant_min;
  int32_t quant_max;
};

// Per-channel affine parameters: scales[c] and zero_points[c] for c in [0, channels).
struct PerChannelAffineParams {
  const float* scales;
  const int32_t* zero_points;
  int32_t quant_min;
  int32_t quant_max;
};

// ---------------------------------------------------------------------------------------------
// Quantize float32 -> int8 / uint8.
void Quantize(const float* x, size_t n, const AffineParams& params, int8_t* y);
void Quantize(const float* x, size_t n, const AffineParams& params, uint8_t* y);
void QuantizePerChannel(const float* x, const ChannelDims& dims,
                        const PerChannelAffineParams& params, int8_t* y);
void QuantizePerChannel(const float* x, const ChannelDims& dims,
                        const PerChannelAffineParams& params, uint8_t* y);

// ---------------------------------------------------------------------------------------------
// Dequantize int8 / uint8 / int32 -> float32 (quant_min/quant_max are not used).
// For int32, q - zero_point must not overflow int32.
void Dequantize(const int8_t* q, size_t n, float scale, int32_t zero_point, float* y);
void Dequantize(const uint8_t* q, size_t n, float scale, int32_t zero_point, float* y);
void Dequantize(const int32_t* q, size_t n, float scale, int32_t zero_point, float* y);
void DequantizePerChannel(const int8_t* q, const ChannelDims& dims, const float* scales,
                          const int32_t* zero_points, float* y);
void DequantizePerChannel(const uint8_t* q, const ChannelDims& dims, const float* scales,
                          const int32_t* zero_points, float* y);
void DequantizePerChannel(const int32_t* q, const ChannelDims& dims, const float* scales,
                          const int32_t* zero_points, float* y);

// ---------------------------------------------------------------------------------------------
// Fake-quantize (quantize + dequantize in one pass, float32 in and out), writing the
// straight-through estimator's mask (1 where the gradient passes, 0 where x was clipped or not
// finite) when `mask` is non-null. The range may be any integer range within [-2^24, 2^24]
// (2-, 4-, 8- or 16-bit, signed or unsigned), so every intermediate is exact in float.
void FakeQuantize(const float* x, size_t n, const AffineParams& params, float* y,
                  uint8_t* mask);
void FakeQuantizePerChannel(const float* x, const ChannelDims& dims,
                            const PerChannelAffineParams& params, float* y, uint8_t* mask);

// ---------------------------------------------------------------------------------------------
// Requantize int32 accumulators -> int8 / uint8: the output stage of integer GEMM/conv.
//
// Float multiplier form (XNNPACK's "fp32" requantization):
//   q = clamp(nearbyint(float(acc) * multiplier) + zero_point, quant_min, quant_max)
// Fixed-point form (XNNPACK's "rndnu"): with 64-bit product p = acc * multiplier,
//   q = clamp(((p + 2^(shift-1)) >> shift) + zero_point, quant_min, quant_max)
// i.e. round to nearest, ties toward +infinity; real multiplier = multiplier * 2^-shift.
// See quant/qparams.h QuantizeMultiplier() for turning a real multiplier into this form.
struct RequantizeOutput {
  int32_t zero_point;
  int32_t quant_min;
  int32_t quant_max;
};

// multipliers[c]: one per channel of `dims` (dims.channels == 1 for per-tensor).
void Requantize(const int32_t* acc, const ChannelDims& dims, const float* multipliers,
                const RequantizeOutput& output, int8_t* y);
void Requantize(const int32_t* acc, const ChannelDims& dims, const float* multipliers,
                const RequantizeOutput& output, uint8_t* y);
// multipliers[c] in [2^30, 2^31), shifts[c] in [31, 62] (real multipliers in [2^-32, 1)).
void RequantizeFixedPoint(const int32_t* acc, const ChannelDims& dims,
                          const int32_t* multipliers, const int32_t* shifts,
                          const RequantizeOutput& output, int8_t* y);
void RequantizeFixedPoint(const int32_t* acc, const ChannelDims& dims,
                          const int32_t* multipliers, const int32_t* shifts,
                          const RequantizeOutput& output, uint8_t* y);

// ---------------------------------------------------------------------------------------------
// Min/max reduction: the observers' hot loop. NaNs are skipped and counted; infinities count as
// values. For n == 0 (or all-NaN input) min = +Inf and max = -Inf.
struct MinMaxResult {
  float min;
  float max;
  size_t nan_count;
};
MinMaxResult MinMax(const float* x, size_t n);
// mins[c] / maxs[c] over all elements of channel c; returns the number of NaNs skipped.
size_t MinMaxPerChannel(const float* x, const ChannelDims& dims, float* mins, float* maxs);

// Name of the Highway target these kernels dispatch to on this CPU (e.g. "AVX3_DL").
const char* QuantizeKernelsTargetName();

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QUANTIZE_QUANTIZE_H_
