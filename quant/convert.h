// convert: from a calibrated (or trained) PreparedModel to the Q/DQ reference model.
//
// Every observer or fake-quantize node becomes quantize -> dequantize with its slot's parameters
// (observed slots: ChooseQParams over the observer's range; fixed slots: their values; derived
// slots: their function over the source slots' parameters). Parameters are quantized here, once:
// a float weight parameter feeding an observer becomes an int8 parameter feeding a dequantize,
// and a bias edge with a derived spec becomes an int32 parameter (round half to even of
// bias / (act_scale x weight_scale)) feeding a dequantize. The result is a plain Graph the
// interpreter runs (the reference numbers) and lowering maps to integer kernels.
#ifndef QLAB_QUANT_CONVERT_H_
#define QLAB_QUANT_CONVERT_H_

#include "absl/status/statusor.h"
#include "quant/graph/graph.h"
#include "quant/prepare.h"

namespace qlab {

// FailedPrecondition naming the slot if an observed activation slot has seen no data (weight
// slots fed only by parameters are observed here if calibration never ran them).
absl::StatusOr<Graph> Convert(const PreparedModel& prepared);

}  // namespace qlab

#endif  // QLAB_QUANT_CONVERT_H_
