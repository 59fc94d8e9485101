// Branch-free selection for the data-dependent choices of the train/ops kernels (ReLU's
// gradient mask, a max pool's running maximum, LSQ's clipped-or-not): on random data such a
// branch is mispredicted about half the time, which made those loops 3-4x slower. Selecting on
// the bits gives the chosen operand exactly (signed zeros and NaNs included).
#ifndef QLAB_TRAIN_OPS_SELECT_BITS_H_
#define QLAB_TRAIN_OPS_SELECT_BITS_H_

#include <cstdint>
#include <cstring>

namespace qlab::train::internal {

// condition ? if_true : if_false, computed with masks instead of a branch.
inline float SelectBits(bool condition, float if_true, float if_false) {
  uint32_t t, f;
  std::memcpy(&t, &if_true, sizeof(t));
  std::memcpy(&f, &if_false, sizeof(f));
  const uint32_t mask = 0u - static_cast<uint32_t>(condition);
  const uint32_t bits = (t & mask) | (f & ~mask);
  float result;
  std::memcpy(&result, &bits, sizeof(result));
  return result;
}

inline int32_t SelectBits(bool condition, int32_t if_true, int32_t if_false) {
  const uint32_t mask = 0u - static_cast<uint32_t>(condition);
  return static_cast<int32_t>((static_cast<uint32_t>(if_true) & mask) |
                              (static_cast<uint32_t>(if_false) & ~mask));
}

}  // namespace qlab::train::internal

#endif  // QLAB_TRAIN_OPS_SELECT_BITS_H_
