// Batch norm's affine then GLU on the device (backend.h's bn_glu_*): the forward pass in
// bn_glu.cu; the backward, whose gradient at the normalised values feeds batch norm's sums in
// the same pass, in batchnorm.cu. The per-element math both use is here.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "hd.cuh"

namespace c3::cuda {

void bn_glu_forward(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* invstd, float* y);
void bn_glu_batchnorm_backward(int64_t N, int64_t half, int64_t HW, bool training, const float* dy, const float* x,
                               const float* gamma, const float* beta, const float* mean, const float* invstd,
                               float* dz, float* dx, float* dgamma, float* dbeta);

__device__ __forceinline__ float glu_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// channel c's z = fma(x, s, t), (s, t) rounded once from double products of the statistics
// (as native/cpu/bn_glu.cc), computed where it is used: no table to launch a kernel for, and
// the statistics' few loads per element hit the cache
__device__ __forceinline__ float2 bn_glu_coefficients(int c, const float* gamma, const float* beta, const float* mean,
                                                      const float* invstd) {
  const double g = static_cast<double>(gamma[c]) * invstd[c];
  return make_float2(static_cast<float>(g), static_cast<float>(beta[c] - static_cast<double>(mean[c]) * g));
}

}  // namespace c3::cuda
