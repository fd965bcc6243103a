// Deterministic warp and block reductions: fixed butterfly trees, so the same inputs give the
// same bits on every run (no atomic sums). arrives_last lets a grid's last block finish a
// reduction over all blocks' partials in one launch; it reads them in a fixed order too.
#pragma once
#include <cuda_runtime.h>

#include <cmath>

#include "hd.cuh"

namespace c3::cuda {

__device__ __forceinline__ double warp_sum(double v) {
C3_UNROLL
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;  // the same value in every lane (addition commutes bitwise)
}

__device__ __forceinline__ double warp_max(double v) {
C3_UNROLL
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
C3_UNROLL
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
// scratch: 32 doubles of shared memory; consecutive calls may reuse it.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // a previous call's readers are done with scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? scratch[lane] : 0.0);
}

__device__ __forceinline__ double block_max(double v, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_max(lane < warps ? scratch[lane] : -INFINITY);
}

// Called by every thread of every block once the block's partials are written; true in the
// last block of the grid to get here, which may then read all blocks' partials (with __ldcg:
// through L2, where the other blocks' fenced writes are). Each writer fences its own writes
// before the block counts itself in; the last block resets the counter (runtime.cuh
// block_arrivals) to 0 for the next kernel on the stream.
__device__ __forceinline__ bool arrives_last(unsigned* arrivals) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned blocks = gridDim.x * gridDim.y * gridDim.z;
    last = atomicAdd(arrivals, 1u) == blocks - 1;
    if (last) *arrivals = 0;  // every other block has counted itself in
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

}  // namespace c3::cuda
