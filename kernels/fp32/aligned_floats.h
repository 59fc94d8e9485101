// AlignedFloats: an owned, 64-byte aligned float array for packed weights and activation buffers.
//
// The fp32 kernels load whole cache lines (one AVX-512 vector = 64 bytes = one line); a packed
// weight panel or an activation row that starts mid-line costs a split load on every access.
// std::vector<float> only guarantees 16 bytes, and the public kernel headers must not expose
// Highway's allocator, hence this small type: move-only, size fixed at construction, contents
// zero-initialized (padding in packed panels relies on it).
#ifndef QLAB_KERNELS_FP32_ALIGNED_FLOATS_H_
#define QLAB_KERNELS_FP32_ALIGNED_FLOATS_H_

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace qlab::kernels {

class AlignedFloats {
 public:
  static constexpr size_t kAlignment = 64;

  AlignedFloats() = default;
  // `size` zero-initialized floats. Allocation failure is fatal (std::bad_alloc is not used in
  // qlab; callers bound sizes before asking).
  explicit AlignedFloats(size_t size) : size_(size) {
    if (size == 0) return;
    // aligned_alloc wants a multiple of the alignment.
    const size_t bytes = (size * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, bytes);
    if (p == nullptr) std::abort();
    std::memset(p, 0, bytes);
    data_.reset(static_cast<float*>(p));
  }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  size_t size() const { return size_; }
  float& operator[](size_t i) { return data_.get()[i]; }
  const float& operator[](size_t i) const { return data_.get()[i]; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> data_;
  size_t size_ = 0;
};

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_FP32_ALIGNED_FLOATS_H_
