// cpu_info: which Highway targets this qlab build compiled, which this CPU supports, and which
// one qlab's kernels actually dispatch to. The first thing to run when a benchmark looks off
// (a kernel that silently fell back to SSE4 or SCALAR looks like a slow kernel), and the check
// that the AVX-512 VNNI target (AVX3_DL, requested by HWY_WANT_AVX3_DL in .bazelrc) is both built
// and chosen on this machine. Also says whether the int8 GEMMs use AMX tiles (kernels/qgemm).
//
//   bazel run //tools:cpu_info
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "hwy/highway.h"
#include "hwy/targets.h"
#include "kernels/qgemm/amx_support.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/quantize/quantize.h"

namespace {

// Target names of a HWY_* bit set, best first: Highway gives better targets lower bits.
std::string TargetList(int64_t targets) {
  std::string names;
  for (int64_t rest = targets; rest != 0; rest &= rest - 1) {
    const int64_t target = rest & -rest;  // lowest set bit
    if (!names.empty()) names += " ";
    names += hwy::TargetName(target);
  }
  return names.empty() ? "(none)" : names;
}

std::string TargetList(const std::vector<int64_t>& targets) {
  std::string names;
  for (const int64_t target : targets) {
    if (!names.empty()) names += " ";
    names += hwy::TargetName(target);
  }
  return names.empty() ? "(none)" : names;
}

}  // namespace

int main() {
  // HWY_TARGETS is evaluated in this file, but the copts that decide it (-DHWY_WANT_AVX3_DL, no
  // -march) are global in .bazelrc, so kernels/quantize/quantize.cc compiles the same set.
  const int64_t compiled = HWY_TARGETS;
  const int64_t supported = hwy::SupportedTargets();
  const std::vector<int64_t> usable = hwy::SupportedAndGeneratedTargets();
  const char* chosen = qlab::kernels::QuantizeKernelsTargetName();

  std::printf("compiled into this binary: %s\n", TargetList(compiled).c_str());
  std::printf("baseline (static) target:  %s\n", hwy::TargetName(HWY_STATIC_TARGET));
  std::printf("supported by this CPU:     %s\n", TargetList(supported).c_str());
  std::printf("compiled and supported:    %s\n", TargetList(usable).c_str());
  std::printf("qlab kernels dispatch to:  %s\n", chosen);

  const bool vnni_compiled = (compiled & HWY_AVX3_DL) != 0;
  const bool vnni_supported = (supported & HWY_AVX3_DL) != 0;
  const bool vnni_chosen = std::strcmp(chosen, hwy::TargetName(HWY_AVX3_DL)) == 0;
  std::printf("AVX3_DL (AVX-512 VNNI):    %s, %s, %s\n",
              vnni_compiled ? "compiled" : "NOT compiled (build without -DHWY_WANT_AVX3_DL?)",
              vnni_supported ? "supported by this CPU" : "not supported by this CPU",
              vnni_chosen ? "chosen" : "NOT chosen");
  std::printf("AMX-INT8 tiles:            %s; int8 GEMMs run %s\n",
              qlab::kernels::AmxAvailable() ? "available (permission granted)" : "not available",
              qlab::kernels::QGemmKernelsName());
  return 0;
}
