// A launch over a table of tensors (Adam's parameters, sum_into's gradients): entry k owns the
// blocks starts[k] .. starts[k + 1] - 1 and grid-strides over its tensor with them.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace c3::cuda {

// the entry of this block: the last k with starts[k] <= blockIdx.x (a binary search over a few
// cache lines)
__device__ __forceinline__ int table_entry(const int32_t* __restrict__ starts, int count) {
  const int32_t block = static_cast<int32_t>(blockIdx.x);
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (starts[mid] <= block) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

}  // namespace c3::cuda
