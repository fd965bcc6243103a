// Batch norm's affine then GLU in one elementwise pass (as native/cpu/bn_glu.cc): per channel
// z = fma(x, s, t), s and t rounded once from double products of the statistics, y = z_a *
// sigmoid(z_b). The training forward from given moments and the backward are batchnorm.cu's
// (bn_glu_forward_train, bn_glu_batchnorm_backward).
#include <cuda_runtime.h>

#include "bn_glu.cuh"
#include "hd.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void forward_kernel(int n, FastDiv HW, FastDiv half, int hw, int h, const float* __restrict__ x,
                               const float* __restrict__ gamma, const float* __restrict__ beta,
                               const float* __restrict__ mean, const float* __restrict__ invstd,
                               float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int j;
    const int a = glu_first_half(i, HW, half, hw, h, j), b = a + h * hw;
    y[i] = bn_glu_at(x, a, b, bn_glu_coefficients(j, gamma, beta, mean, invstd),
                     bn_glu_coefficients(h + j, gamma, beta, mean, invstd));
  }
}

}  // namespace

void bn_glu_forward(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* invstd, float* y) {
  const int64_t n = N * half * HW;
  if (n == 0) return;
  need_int32(2 * n, "cuda batch_norm_glu", "the input");
  launch("batch_norm_glu", forward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         FastDiv(static_cast<int>(HW)), FastDiv(static_cast<int>(half)), static_cast<int>(HW), static_cast<int>(half), x,
         gamma, beta, mean, invstd, y);
}

}  // namespace c3::cuda
