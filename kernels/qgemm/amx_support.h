// Run-time detection and switching of Intel AMX-INT8 for kernels/qgemm.
//
// AMX (Advanced Matrix Extensions: eight 1 KiB tile registers and TDPBUSD, a 16x64 by 64x16
// u8 x s8 -> s32 tile product) needs three things before the first tile instruction: the CPU bits
// (CPUID leaf 7 subleaf 0, EDX bit 24 AMX-TILE and bit 25 AMX-INT8), the OS enabling the tile
// state in XCR0 (bits 17 TILECFG and 18 TILEDATA), and, on Linux >= 5.16, the process's permission
// for the large XTILEDATA state (arch_prctl ARCH_REQ_XCOMP_PERM), which is per process. All three
// are checked once, thread-safely, on first use; if any fails the GEMMs silently keep their
// AVX-512 VNNI / Highway paths.
//
// AMX can also be switched off: by the environment (QLAB_DISABLE_AMX=1, read once) or by tests
// and benchmarks (SetAmxEnabledForTesting), so that both paths run on an AMX machine. Either way
// the results are bit-identical: the AMX path only changes how the int32 sums are formed.
#ifndef QLAB_KERNELS_QGEMM_AMX_SUPPORT_H_
#define QLAB_KERNELS_QGEMM_AMX_SUPPORT_H_

namespace qlab::kernels {

// True iff the CPU has AMX-TILE and AMX-INT8, the OS enables their state and this process was
// granted the tile-data permission. The first call does the detection (and the permission
// request); later calls return the cached answer.
bool AmxAvailable();

// True iff the GEMMs use AMX where it pays: AmxAvailable(), QLAB_DISABLE_AMX is not set to a value
// starting with '1', and SetAmxEnabledForTesting(false) is not in effect.
bool AmxEnabled();

// Turns the AMX path off (false) or back on (true, the default; it still needs AmxAvailable()).
// Process-wide; meant for tests and benchmarks, called while no GEMM runs.
void SetAmxEnabledForTesting(bool enabled);

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QGEMM_AMX_SUPPORT_H_
