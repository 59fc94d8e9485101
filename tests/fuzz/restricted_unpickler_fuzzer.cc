// Fuzz target for models/pth/restricted_unpickler.h: any bytes run through the restricted pickle
// machine. It must stop at STOP, an error, or the end of the bytes; never crash or run away on
// memo references, deep nesting or cyclic containers.
#include "absl/strings/string_view.h"
#include "models/pth/restricted_unpickler.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzRestrictedUnpickler(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)pth::RestrictedUnpickle(bytes, "fuzz/data.pkl");
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzRestrictedUnpickler)
