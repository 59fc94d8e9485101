#include "core/dtype.h"

namespace qlab {

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kInt8:
      return "int8";
    case DType::kUInt8:
      return "uint8";
    case DType::kInt32:
      return "int32";
  }
  return "unknown";
}

absl::string_view LayoutName(Layout layout) {
  switch (layout) {
    case Layout::kRowMajor:
      return "row-major";
    case Layout::kNCHW:
      return "NCHW";
    case Layout::kNHWC:
      return "NHWC";
    case Layout::kOIHW:
      return "OIHW";
    case Layout::kOHWI:
      return "OHWI";
  }
  return "unknown";
}

}  // namespace qlab
