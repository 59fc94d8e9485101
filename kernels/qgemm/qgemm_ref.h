// Scalar reference implementations (oracles) of kernels/qgemm/qgemm.h.
//
// Plain triple loops on the unpacked weights, written straight from the definition
// C[m][n] = sum_k (A[m][k] - a_zp) * B[k][n], accumulated in int64 so that the oracle itself
// cannot overflow, whatever the caller passes. They share nothing with the kernels (no packing,
// no column sums, no +128 trick), so agreement means the kernels' algebra is right too. Every
// Highway target must reproduce them exactly (tests); the benchmarks report the kernels' speed
// relative to them.
#ifndef QLAB_KERNELS_QGEMM_QGEMM_REF_H_
#define QLAB_KERNELS_QGEMM_QGEMM_REF_H_

#include <cstddef>
#include <cstdint>

namespace qlab::kernels {

// qgemm_{u8,s8}s8s32_ref: A is M x K (stride lda), B is K x N (stride ldb), C is M x N (stride
// ldc). TA is uint8_t or int8_t.
template <typename TA>
void QGemmXS8S32Ref(const TA* a, size_t m, size_t k, size_t lda, int32_t a_zero_point,
                    const int8_t* b, size_t n, size_t ldb, int32_t* c, size_t ldc) {
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      int64_t sum = 0;
      for (size_t p = 0; p < k; ++p) {
        sum += (static_cast<int64_t>(a[i * lda + p]) - a_zero_point) * b[p * ldb + j];
      }
      c[i * ldc + j] = static_cast<int32_t>(sum);
    }
  }
}

inline void QGemmU8S8S32Ref(const uint8_t* a, size_t m, size_t k, size_t lda,
                            int32_t a_zero_point, const int8_t* b, size_t n, size_t ldb,
                            int32_t* c, size_t ldc) {
  QGemmXS8S32Ref(a, m, k, lda, a_zero_point, b, n, ldb, c, ldc);
}

inline void QGemmS8S8S32Ref(const int8_t* a, size_t m, size_t k, size_t lda,
                            int32_t a_zero_point, const int8_t* b, size_t n, size_t ldb,
                            int32_t* c, size_t ldc) {
  QGemmXS8S32Ref(a, m, k, lda, a_zero_point, b, n, ldb, c, ldc);
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QGEMM_QGEMM_REF_H_
