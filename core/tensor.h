// Tensor: qlab's dense n-dimensional array, the currency between models, observers and kernels.
//
// A Tensor is a typed, shaped, contiguous row-major view of reference-counted storage. Storage
// from Create is 64-byte aligned (one AVX-512 vector, one cache line); storage wrapped by
// WrapExternal (e.g. a numpy array's buffer) is only aligned to its element size, and nothing in
// qlab relies on more for correctness (kernels load tensor data with unaligned loads; 64-byte
// alignment only saves split cache lines). Copying a Tensor is cheap and shares the storage, like
// a PyTorch tensor or a std::shared_ptr; Slice and Reshape are views too. The only operation that
// copies elements is Clone(): there are no hidden copies.
//
//   QLAB_ASSIGN_OR_RETURN(Tensor batch, Tensor::Create(DType::kFloat32, {8, 3, 32, 32},
//                                                      Layout::kNCHW));
//   float* pixels = batch.data<float>();                 // 8*3*32*32 zeros
//   QLAB_ASSIGN_OR_RETURN(Tensor first_two, batch.Slice(0, 2));  // shares batch's memory
#ifndef QLAB_CORE_TENSOR_H_
#define QLAB_CORE_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/check.h"
#include "core/dtype.h"

namespace qlab {

using Shape = absl::InlinedVector<int64_t, 4>;

// "[1,3,224,224]".
std::string ShapeString(const Shape& shape);

// Upper bound on one tensor's storage. Sizes come from files other people made (weights, images,
// observer state); a header claiming 2^60 bytes must be an error, not an allocation attempt.
inline constexpr int64_t kMaxTensorBytes = int64_t{1} << 34;  // 16 GiB
inline constexpr int kMaxRank = 8;
inline constexpr size_t kTensorAlignment = 64;

// Checks that `shape` is a valid shape for `dtype` and `layout`: rank in [0, kMaxRank] (exactly 4
// for the named layouts), no negative dimension, total bytes within kMaxTensorBytes (no overflow).
// Returns the element count.
absl::StatusOr<int64_t> CheckedNumElements(DType dtype, const Shape& shape, Layout layout);

class Tensor {
 public:
  // An empty float32 tensor of shape [0] with no storage.
  Tensor();

  // A new zero-filled tensor. InvalidArgument for a bad shape, ResourceExhausted when too large.
  static absl::StatusOr<Tensor> Create(DType dtype, Shape shape,
                                       Layout layout = Layout::kRowMajor);

  DType dtype() const { return dtype_; }
  Layout layout() const { return layout_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  // Size of `axis`; negative axes count from the end. QLAB_CHECKs the axis is in range.
  int64_t dim(int axis) const;
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DTypeSize(dtype_); }

  // Typed element access. Asking for the wrong element type is a bug in the caller (the dtype is
  // always known where data is touched), hence a CHECK rather than a Status.
  template <typename T>
  T* data() {
    QLAB_CHECK_MSG(DTypeOf<T>() == dtype_, "Tensor::data<T>() with T not the tensor's dtype");
    return static_cast<T*>(raw_data());
  }
  template <typename T>
  const T* data() const {
    QLAB_CHECK_MSG(DTypeOf<T>() == dtype_, "Tensor::data<T>() with T not the tensor's dtype");
    return static_cast<const T*>(raw_data());
  }
  void* raw_data() { return storage_ ? storage_.get() + offset_bytes_ : nullptr; }
  const void* raw_data() const { return storage_ ? storage_.get() + offset_bytes_ : nullptr; }

  // A tensor over memory qlab does not own, without copying it: `data` holds the shape's elements
  // contiguously (row-major) and stays valid, unchanged by others, as long as `keep_alive` is
  // held. Every Tensor sharing this storage (copies, Slice, Reshape) holds `keep_alive`; it is
  // released with the last of them. `keep_alive` may be null when the caller guarantees the
  // memory outlives every such Tensor. InvalidArgument for a bad shape (as Create), a null
  // `data` with a non-empty shape, or `data` not aligned to the element size. Used by the Python
  // module to run on numpy arrays in place:
  //   auto owner = std::make_shared<std::vector<float>>(12);
  //   QLAB_ASSIGN_OR_RETURN(Tensor t, Tensor::WrapExternal(DType::kFloat32, {3, 4},
  //                                                        Layout::kRowMajor, owner->data(),
  //                                                        owner));
  static absl::StatusOr<Tensor> WrapExternal(DType dtype, Shape shape, Layout layout, void* data,
                                             std::shared_ptr<void> keep_alive);

  // Rows [begin, end) along axis 0, sharing this tensor's storage (e.g. a sub-batch).
  absl::StatusOr<Tensor> Slice(int64_t begin, int64_t end) const;
  // The same elements seen with another shape and layout (same element count), sharing storage.
  absl::StatusOr<Tensor> Reshape(Shape shape, Layout layout = Layout::kRowMajor) const;
  // A deep copy with its own storage.
  Tensor Clone() const;

  bool SharesStorageWith(const Tensor& other) const {
    return storage_ != nullptr && storage_ == other.storage_;
  }

  // "float32[8,3,32,32] NCHW".
  std::string DebugString() const;

 private:
  Tensor(DType dtype, Shape shape, Layout layout, int64_t numel, std::shared_ptr<uint8_t> storage,
         size_t offset_bytes);

  DType dtype_;
  Layout layout_;
  Shape shape_;
  int64_t numel_;
  std::shared_ptr<uint8_t> storage_;
  size_t offset_bytes_;
};

}  // namespace qlab

#endif  // QLAB_CORE_TENSOR_H_
