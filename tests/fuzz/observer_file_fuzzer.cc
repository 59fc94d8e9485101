// Fuzz target for observer-state files (calibration/registry.h): LoadObserver on any bytes (a JSON
// state header, a newline, a binary payload, as SaveObserver writes them); an observer that loads
// must then compute quantization parameters and ranges for per-tensor and per-channel int8 without
// crashing, because a restored state is only useful if it can be used.
#include "calibration/registry.h"
#include "quant/qparams.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzObserverFile(const uint8_t* data, size_t size) {
  const std::string path = WriteFuzzFile("observer", data, size);
  auto observer = calibration::LoadObserver(path);
  if (!observer.ok()) return 0;
  const QuantTarget per_tensor{DType::kInt8, -128, 127, QScheme::kPerTensorAffine};
  const QuantTarget per_channel{DType::kInt8, -128, 127, QScheme::kPerChannelAffine};
  for (const QuantTarget& target : {per_tensor, per_channel}) {
    (void)(*observer)->ComputeQParams(target);
    (void)(*observer)->ComputeRanges(target);
  }
  (void)(*observer)->Clone();
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzObserverFile)
