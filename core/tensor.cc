#include "core/tensor.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace qlab {

std::string ShapeString(const Shape& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

absl::StatusOr<int64_t> CheckedNumElements(DType dtype, const Shape& shape, Layout layout) {
  if (shape.size() > static_cast<size_t>(kMaxRank)) {
    return absl::InvalidArgumentError(absl::StrCat("shape ", ShapeString(shape), " has rank ",
                                                   shape.size(), ", more than ", kMaxRank));
  }
  const int required_rank = LayoutRank(layout);
  if (required_rank != 0 && static_cast<int>(shape.size()) != required_rank) {
    return absl::InvalidArgumentError(absl::StrCat("layout ", LayoutName(layout), " needs rank ",
                                                   required_rank, ", got shape ",
                                                   ShapeString(shape)));
  }
  const int64_t max_elements = kMaxTensorBytes / static_cast<int64_t>(DTypeSize(dtype));
  int64_t numel = 1;
  for (size_t axis = 0; axis < shape.size(); ++axis) {
    const int64_t d = shape[axis];
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat("shape ", ShapeString(shape),
                                                     " has negative dimension ", d, " at axis ",
                                                     axis));
    }
    // numel * d > max_elements, tested without overflowing.
    if (d != 0 && numel > max_elements / d) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "shape ", ShapeString(shape), " of ", DTypeName(dtype), " exceeds the ",
          kMaxTensorBytes, "-byte limit of one tensor"));
    }
    numel *= d;
  }
  return numel;
}

Tensor::Tensor()
    : dtype_(DType::kFloat32),
      layout_(Layout::kRowMajor),
      shape_({0}),
      numel_(0),
      storage_(nullptr),
      offset_bytes_(0) {}

Tensor::Tensor(DType dtype, Shape shape, Layout layout, int64_t numel,
               std::shared_ptr<uint8_t> storage, size_t offset_bytes)
    : dtype_(dtype),
      layout_(layout),
      shape_(std::move(shape)),
      numel_(numel),
      storage_(std::move(storage)),
      offset_bytes_(offset_bytes) {}

absl::StatusOr<Tensor> Tensor::Create(DType dtype, Shape shape, Layout layout) {
  absl::StatusOr<int64_t> numel = CheckedNumElements(dtype, shape, layout);
  if (!numel.ok()) return numel.status();
  const size_t bytes = static_cast<size_t>(*numel) * DTypeSize(dtype);
  std::shared_ptr<uint8_t> storage;
  if (bytes > 0) {
    // aligned_alloc wants a multiple of the alignment.
    const size_t padded = (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
    auto* memory = static_cast<uint8_t*>(std::aligned_alloc(kTensorAlignment, padded));
    if (memory == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes for tensor ", DTypeName(dtype),
                       ShapeString(shape)));
    }
    std::memset(memory, 0, padded);
    storage.reset(memory, [](uint8_t* p) { std::free(p); });
  }
  return Tensor(dtype, std::move(shape), layout, *numel, std::move(storage), 0);
}

absl::StatusOr<Tensor> Tensor::WrapExternal(DType dtype, Shape shape, Layout layout, void* data,
                                            std::shared_ptr<void> keep_alive) {
  absl::StatusOr<int64_t> numel = CheckedNumElements(dtype, shape, layout);
  if (!numel.ok()) return numel.status();
  if (*numel == 0) return Tensor(dtype, std::move(shape), layout, 0, nullptr, 0);
  if (data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot wrap a null pointer as tensor ",
                                                   DTypeName(dtype), ShapeString(shape)));
  }
  if (reinterpret_cast<uintptr_t>(data) % DTypeSize(dtype) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot wrap ", DTypeName(dtype), ShapeString(shape), " at address ",
                     reinterpret_cast<uintptr_t>(data), ": not aligned to its ", DTypeSize(dtype),
                     "-byte elements"));
  }
  // The aliasing constructor: the storage pointer is `data`, its lifetime that of keep_alive.
  std::shared_ptr<uint8_t> storage(std::move(keep_alive), static_cast<uint8_t*>(data));
  return Tensor(dtype, std::move(shape), layout, *numel, std::move(storage), 0);
}

int64_t Tensor::dim(int axis) const {
  const int r = rank();
  const int resolved = axis < 0 ? axis + r : axis;
  QLAB_CHECK_MSG(resolved >= 0 && resolved < r, "Tensor::dim axis out of range");
  return shape_[resolved];
}

absl::StatusOr<Tensor> Tensor::Slice(int64_t begin, int64_t end) const {
  if (rank() == 0) {
    return absl::InvalidArgumentError("cannot slice a rank-0 tensor");
  }
  if (begin < 0 || end < begin || end > shape_[0]) {
    return absl::OutOfRangeError(absl::StrCat("slice [", begin, ", ", end,
                                              ") outside axis 0 of ", DebugString()));
  }
  Shape shape = shape_;
  shape[0] = end - begin;
  const int64_t row_elements = shape_[0] == 0 ? 0 : numel_ / shape_[0];
  return Tensor(dtype_, std::move(shape), layout_, row_elements * (end - begin), storage_,
                offset_bytes_ + static_cast<size_t>(begin * row_elements) * DTypeSize(dtype_));
}

absl::StatusOr<Tensor> Tensor::Reshape(Shape shape, Layout layout) const {
  absl::StatusOr<int64_t> numel = CheckedNumElements(dtype_, shape, layout);
  if (!numel.ok()) return numel.status();
  if (*numel != numel_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot reshape ", DebugString(), " (",
                                                   numel_, " elements) to ", ShapeString(shape),
                                                   " (", *numel, " elements)"));
  }
  return Tensor(dtype_, std::move(shape), layout, numel_, storage_, offset_bytes_);
}

Tensor Tensor::Clone() const {
  // The shape was validated when this tensor was made, so only allocation can fail.
  absl::StatusOr<Tensor> copy = Create(dtype_, shape_, layout_);
  QLAB_CHECK_MSG(copy.ok(), "out of memory cloning a tensor");
  if (nbytes() > 0) std::memcpy(copy->raw_data(), raw_data(), nbytes());
  return *std::move(copy);
}

std::string Tensor::DebugString() const {
  std::string s = absl::StrCat(DTypeName(dtype_), ShapeString(shape_));
  if (layout_ != Layout::kRowMajor) absl::StrAppend(&s, " ", LayoutName(layout_));
  return s;
}

}  // namespace qlab
