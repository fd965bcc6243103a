// Random fills: each element is a pure function of (key, offset + i), so the launch shape
// cannot change the numbers. The final scale and shift use _rn intrinsics (no fused
// multiply-add), matching the CPU's float arithmetic exactly.
#include "philox.cuh"
#include "random.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void rand_normal_kernel(float* y, int64_t n, uint64_t key, uint64_t offset, float mean, float std) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fadd_rn(mean, __fmul_rn(std, PhiloxD::normal_at(key, offset + static_cast<uint64_t>(i))));
}

__global__ void rand_uniform_kernel(float* y, int64_t n, uint64_t key, uint64_t offset, float lo, float span) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fadd_rn(lo, __fmul_rn(span, PhiloxD::uniform_at(key, offset + static_cast<uint64_t>(i))));
}

}  // namespace

void rand_normal(float* y, size_t n, uint64_t key, uint64_t offset, float mean, float std) {
  const int64_t m = static_cast<int64_t>(n);
  launch("rand_normal", rand_normal_kernel, grid_for(m, kThreads), kThreads, 0, y, m, key, offset, mean, std);
}

void rand_uniform(float* y, size_t n, uint64_t key, uint64_t offset, float lo, float hi) {
  const int64_t m = static_cast<int64_t>(n);
  const float span = hi - lo;  // as the CPU: computed once in float
  launch("rand_uniform", rand_uniform_kernel, grid_for(m, kThreads), kThreads, 0, y, m, key, offset, lo, span);
}

}  // namespace c3::cuda
