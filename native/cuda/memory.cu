// Streaming kernels: fill, axpy, affine. Grid-stride loops over 64-bit indices. Products and
// sums use the _rn intrinsics, so no fused multiply-add changes the rounding and the results
// equal the CPU backend's bit for bit.
#include <cuda_runtime.h>

#include <cstring>

#include "memory.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void fill_kernel(float* x, int64_t n, float v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = v;
}

// x and y may alias (y += alpha * y)
__global__ void axpy_kernel(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i]));
}

// x and y may be the same buffer (in-place affine), so no __restrict__
__global__ void affine_kernel(int64_t n, const float* x, float scale, float shift, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fadd_rn(__fmul_rn(scale, x[i]), shift);
}

}  // namespace

void fill(float* x, size_t n, float v) {
  if (!n) return;
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if (bits == 0) {  // +0.0f: every byte zero
    check_cuda(cudaMemsetAsync(x, 0, n * sizeof(float), stream()), "fill");
    return;
  }
  const int64_t m = static_cast<int64_t>(n);
  launch("fill", fill_kernel, grid_for(m, kThreads), kThreads, 0, x, m, v);
}

void axpy(size_t n, float alpha, const float* x, float* y) {
  const int64_t m = static_cast<int64_t>(n);
  launch("axpy", axpy_kernel, grid_for(m, kThreads), kThreads, 0, m, alpha, x, y);
}

void affine(size_t n, const float* x, float scale, float shift, float* y) {
  const int64_t m = static_cast<int64_t>(n);
  launch("affine", affine_kernel, grid_for(m, kThreads), kThreads, 0, m, x, scale, shift, y);
}

}  // namespace c3::cuda
