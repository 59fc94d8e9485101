// QLAB_VECTOR_CLONES: compile a function of element loops for several x86-64 levels and pick one
// when the program loads (GCC's target_clones): x86-64-v4 (AVX-512), x86-64-v3 (AVX2, FMA) and
// the baseline. The training ops' per-element passes (batch norm, conv-bn scaling, STE, ReLU,
// SGD) are plain C++ loops, vectorized by the compiler; built for the baseline alone (and -O2)
// they ran at most 4 floats wide (SSE2), and not vectorized at all where a loop also added up
// per-channel sums: ~21 % of a QAT ResNet18 step's samples, ~11 % with the clones and the
// merged passes (train/README.md).
//
// The clones give the same bits as the baseline code: the loops vectorize across elements or
// channels (never reassociating a sum: GCC does not without -ffast-math), and the build passes
// -ffp-contract=off, so no clone fuses a multiply and an add the baseline rounds twice.
// Functions using it take __restrict pointers so that the compiler needs no overlap checks.
//
// Not under ThreadSanitizer: GCC instruments the clones' ifunc resolver, which the dynamic loader
// runs before the TSan runtime exists. A target defining QLAB_TRAIN_OPS_BASELINE_ONLY builds the
// baseline code only, so that tests can check it on a machine that has AVX-512.
#ifndef QLAB_TRAIN_OPS_VECTOR_CLONES_H_
#define QLAB_TRAIN_OPS_VECTOR_CLONES_H_

#if defined(__x86_64__) && !defined(QLAB_TRAIN_OPS_BASELINE_ONLY) && !defined(__SANITIZE_THREAD__)
#define QLAB_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QLAB_VECTOR_CLONES
#endif

#endif  // QLAB_TRAIN_OPS_VECTOR_CLONES_H_
