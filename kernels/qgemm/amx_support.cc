// AMX detection (CPUID, XCR0, Linux's arch_prctl permission) and the on/off switches of
// amx_support.h. Plain C++ with inline assembly for xgetbv, so that this file needs no ISA flags.
#include "kernels/qgemm/amx_support.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace qlab::kernels {
namespace {

#if defined(__x86_64__)
uint64_t ReadXcr0() {
  uint32_t low = 0, high = 0;
  // xgetbv with ECX = 0; written as assembly so that no -mxsave is needed.
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<uint64_t>(high) << 32) | low;
}
#endif

bool DetectAmx() {
#if defined(__x86_64__) && defined(__linux__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  if ((ecx & (1u << 27)) == 0) return false;  // OSXSAVE: xgetbv is usable
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  constexpr unsigned kAmxTile = 1u << 24, kAmxInt8 = 1u << 25;
  if ((edx & kAmxTile) == 0 || (edx & kAmxInt8) == 0) return false;
  constexpr uint64_t kTileStateBits = (uint64_t{1} << 17) | (uint64_t{1} << 18);
  if ((ReadXcr0() & kTileStateBits) != kTileStateBits) return false;
  // Linux keeps XTILEDATA disabled (XFD) until the process asks for it; without the grant the
  // first tile load would kill the process with SIGILL.
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

bool DisabledByEnvironment() {
  const char* value = std::getenv("QLAB_DISABLE_AMX");
  return value != nullptr && value[0] == '1';
}

std::atomic<bool> enabled_for_testing{true};

}  // namespace

bool AmxAvailable() {
  static const bool available = DetectAmx();  // thread-safe one-time initialization
  return available;
}

bool AmxEnabled() {
  static const bool disabled_by_environment = DisabledByEnvironment();
  return AmxAvailable() && !disabled_by_environment &&
         enabled_for_testing.load(std::memory_order_relaxed);
}

void SetAmxEnabledForTesting(bool enabled) {
  enabled_for_testing.store(enabled, std::memory_order_relaxed);
}

}  // namespace qlab::kernels
