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
// (batchnorm.cu) the training statistics, then bn_glu_forward; one launch from given moments
void bn_glu_forward_train(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                          float* running_mean, float* running_var, float momentum, float eps, const float* moments,
                          float* y, float* save_mean, float* save_invstd);
void bn_glu_batchnorm_backward(int64_t N, int64_t half, int64_t HW, bool training, const float* dy, const float* x,
                               const float* gamma, const float* beta, const float* mean, const float* invstd,
                               float* dx, float* dgamma, float* dbeta);

__device__ __forceinline__ float glu_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// element i of the output (N, half, HW): sample nn, channel j; its halves at xa, xa + half * HW
__device__ __forceinline__ int glu_first_half(int i, FastDiv HW, FastDiv half, int hw, int h, int& j) {
  const int plane = HW.div(i), pos = i - plane * hw;
  int nn;
  half.divmod(plane, nn, j);
  return (nn * 2 * h + j) * hw + pos;
}

// output element i from channel j's coefficients ka and channel half + j's kb
__device__ __forceinline__ float bn_glu_at(const float* x, int a, int b, float2 ka, float2 kb) {
  return fmaf(x[a], ka.x, ka.y) * glu_sigmoid(fmaf(x[b], kb.x, kb.y));
}

// channel c's z = fma(x, s, t), (s, t) rounded once from double products of the statistics
// (as native/cpu/bn_glu.cc), computed where it is used: no table to launch a kernel for, and
// the statistics' few loads per element hit the cache
__device__ __forceinline__ float2 bn_glu_coefficients(float gamma, float beta, float mean, float invstd) {
  const double g = static_cast<double>(gamma) * invstd;
  return make_float2(static_cast<float>(g), static_cast<float>(beta - static_cast<double>(mean) * g));
}
__device__ __forceinline__ float2 bn_glu_coefficients(int c, const float* gamma, const float* beta, const float* mean,
                                                      const float* invstd) {
  return bn_glu_coefficients(gamma[c], beta[c], mean[c], invstd[c]);
}

}  // namespace c3::cuda
