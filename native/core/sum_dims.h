// The dims of a broadcast sum (x reduced to y), simplified for its kernels on either backend.
#pragma once
#include <cstdint>

#include "backend.h"

namespace c3 {

// One dim of x: its size, its stride in x and its stride in y (0 where the sum reduces it).
struct SumDim {
  int64_t n, xs, ys;
};

// idx: x's shape with y's strides in x's space (0 where reduced). Writes x's dims outermost first,
// without the size-1 ones and with each dim merged into the one outside it where both strides
// continue it (a dim reduced or kept as a whole with its neighbour); returns how many it wrote
// (<= kMaxDims).
inline int sum_dims(const BroadcastIndex& idx, SumDim* dims) {
  int nd = 0;
  int64_t xstride[kMaxDims];
  for (int64_t d = idx.ndim - 1, s = 1; d >= 0; --d) xstride[d] = s, s *= idx.shape[d];
  for (int d = 0; d < idx.ndim; ++d) {
    const int64_t n = idx.shape[d], ys = idx.stride_a[d];
    if (n == 1) continue;
    if (nd > 0 && dims[nd - 1].ys == ys * n && dims[nd - 1].xs == xstride[d] * n) {
      dims[nd - 1].n *= n, dims[nd - 1].xs = xstride[d], dims[nd - 1].ys = ys;
      continue;
    }
    dims[nd++] = {n, xstride[d], ys};
  }
  return nd;
}

}  // namespace c3
