// cpu_info: which Highway targets this qlab binary was compiled for, which this CPU supports,
// and which one qlab's kernels dispatch to. First thing to run when a benchmark looks off, and
// the proof that the AVX-512 VNNI target (AVX3_DL) is built and chosen on this machine.
//
//   bazel run //tools:cpu_info
#include <cstdint>
#include <cstdio>
#include <string>

#include "hwy/highway.h"
#include "hwy/targets.h"
#include "kernels/quantize/quantize.h"

namespace {

std::string TargetList(int64_t targets) {
  std::string names;
  for (int64_t rest = targets; rest != 0; rest &= rest - 1) {
    const int64_t target = rest & -rest;  // lowest set bit: the best target first
    if (!names.empty()) names += " ";
    names += hwy::TargetName(target);
  }
  return names.empty() ? "(none)" : names;
}

}  // namespace

int main() {
  const int64_t compiled = HWY_TARGETS;
  const int64_t supported = hwy::SupportedTargets();
  std::printf("compiled:             %s\n", TargetList(compiled).c_str());
  std::printf("supported by the CPU: %s\n", TargetList(supported).c_str());
  std::printf("usable (both):        %s\n", TargetList(compiled & supported).c_str());
  const char* chosen = qlab::kernels::QuantizeKernelsTargetName();
  std::printf("qlab kernels run on:  %s\n", chosen);
  const bool vnni_compiled = (compiled & HWY_AVX3_DL) != 0;
  const bool vnni_supported = (supported & HWY_AVX3_DL) != 0;
  std::printf("AVX-512 VNNI (AVX3_DL): %s, %s, %s\n",
              vnni_compiled ? "compiled" : "NOT compiled (define HWY_WANT_AVX3_DL)",
              vnni_supported ? "supported" : "not supported by this CPU",
              std::string(chosen) == hwy::TargetName(HWY_AVX3_DL) ? "chosen" : "not chosen");
  return 0;
}
