// A graph pooling node's attributes as kernels/fp32's pooling geometry, for both engines.
//
// The output size is the graph's (quant/graph shape inference, including ceil_mode), not
// recomputed here, so the engines and the interpreter agree on every window.
#ifndef QLAB_ENGINE_POOL_GEOMETRY_H_
#define QLAB_ENGINE_POOL_GEOMETRY_H_

#include <cstdint>

#include "kernels/fp32/fp32_pool.h"
#include "quant/graph/graph.h"

namespace qlab {

// Input in_h x in_w x channels, output out_h x out_w (per image; batch filled at run time).
inline kernels::Fp32PoolGeometry Fp32PoolGeometryOf(const Pool2dAttrs& a, int64_t in_h,
                                                    int64_t in_w, int64_t channels,
                                                    int64_t out_h, int64_t out_w) {
  kernels::Fp32PoolGeometry g;
  g.in_h = in_h;
  g.in_w = in_w;
  g.channels = channels;
  g.kernel_h = a.kernel[0];
  g.kernel_w = a.kernel[1];
  g.stride_h = a.stride[0];
  g.stride_w = a.stride[1];
  g.pad_h = a.padding[0];
  g.pad_w = a.padding[1];
  g.out_h = out_h;
  g.out_w = out_w;
  g.count_include_pad = a.count_include_pad;
  return g;
}

}  // namespace qlab

#endif  // QLAB_ENGINE_POOL_GEOMETRY_H_
