// Element types and memory layouts of qlab tensors.
//
// qlab stores float32 activations and weights, int8/uint8 quantized values (4-bit and 2-bit
// values live in an int8 container with a narrower quant range), and int32 accumulators and
// biases. Layouts are always stated, never guessed: NCHW is PyTorch's order, NHWC the order the
// integer kernels run in, OIHW/OHWI the matching weight orders.
#ifndef QLAB_CORE_DTYPE_H_
#define QLAB_CORE_DTYPE_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace qlab {

enum class DType : uint8_t { kFloat32, kInt8, kUInt8, kInt32 };

// Bytes per element.
constexpr size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kInt8:
    case DType::kUInt8:
      return 1;
  }
  return 0;
}

// "float32", "int8", "uint8", "int32".
absl::string_view DTypeName(DType dtype);

// The DType of a C++ element type: DTypeOf<float>() == DType::kFloat32.
template <typename T>
constexpr DType DTypeOf();
template <>
constexpr DType DTypeOf<float>() { return DType::kFloat32; }
template <>
constexpr DType DTypeOf<int8_t>() { return DType::kInt8; }
template <>
constexpr DType DTypeOf<uint8_t>() { return DType::kUInt8; }
template <>
constexpr DType DTypeOf<int32_t>() { return DType::kInt32; }

// The meaning of a tensor's dimensions. kRowMajor: no named dimensions (vectors, matrices,
// flattened features). The others are rank-4 and name their axes in memory order.
enum class Layout : uint8_t { kRowMajor, kNCHW, kNHWC, kOIHW, kOHWI };

absl::string_view LayoutName(Layout layout);

// Rank a layout requires (0: any rank).
constexpr int LayoutRank(Layout layout) { return layout == Layout::kRowMajor ? 0 : 4; }

// The channel axis of a layout: C for activations, O (output channels) for weights; -1 for
// kRowMajor, whose channel axis the caller must state.
constexpr int ChannelAxis(Layout layout) {
  switch (layout) {
    case Layout::kNCHW:
      return 1;
    case Layout::kNHWC:
      return 3;
    case Layout::kOIHW:
    case Layout::kOHWI:
      return 0;
    case Layout::kRowMajor:
      return -1;
  }
  return -1;
}

}  // namespace qlab

#endif  // QLAB_CORE_DTYPE_H_
