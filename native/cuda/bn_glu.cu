// Batch norm's affine then GLU in one elementwise pass (as native/cpu/bn_glu.cc): per channel
// z = fma(x, s, t), s and t rounded once from double products of the statistics, y = z_a *
// sigmoid(z_b); the backward recomputes z and gives its gradient for batchnorm_backward.
#include <cuda_runtime.h>

#include "bn_glu.cuh"
#include "hd.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoid_(float v) { return 1.0f / (1.0f + expf(-v)); }

__global__ void coefficients(int C, const float* gamma, const float* beta, const float* mean, const float* invstd,
                             float2* st) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double g = static_cast<double>(gamma[c]) * invstd[c];
  st[c] = make_float2(static_cast<float>(g), static_cast<float>(beta[c] - static_cast<double>(mean[c]) * g));
}

// element i of the output (N, half, HW): sample nn, channel j; its halves at xa, xa + half * HW
__device__ __forceinline__ int first_half(int i, FastDiv HW, FastDiv half, int hw, int h, int& j) {
  const int plane = HW.div(i), pos = i - plane * hw;
  int nn;
  half.divmod(plane, nn, j);
  return (nn * 2 * h + j) * hw + pos;
}

__global__ void forward_kernel(int n, FastDiv HW, FastDiv half, int hw, int h, const float* __restrict__ x,
                               const float2* __restrict__ st, float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int j;
    const int a = first_half(i, HW, half, hw, h, j), b = a + h * hw;
    const float2 ka = st[j], kb = st[h + j];
    y[i] = fmaf(x[a], ka.x, ka.y) * sigmoid_(fmaf(x[b], kb.x, kb.y));
  }
}

__global__ void backward_kernel(int n, FastDiv HW, FastDiv half, int hw, int h, const float* __restrict__ dy,
                                const float* __restrict__ x, const float2* __restrict__ st, float* __restrict__ dz) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int j;
    const int a = first_half(i, HW, half, hw, h, j), b = a + h * hw;
    const float2 ka = st[j], kb = st[h + j];
    const float za = fmaf(x[a], ka.x, ka.y), s = sigmoid_(fmaf(x[b], kb.x, kb.y)), g = dy[i];
    dz[a] = g * s;
    dz[b] = g * za * s * (1.0f - s);
  }
}

}  // namespace

void bn_glu_forward(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* invstd, float* y) {
  const int64_t n = N * half * HW;
  if (n == 0) return;
  need_int32(2 * n, "cuda batch_norm_glu", "the input");
  Scratch st(sizeof(float2) * static_cast<size_t>(2 * half));
  const int c = static_cast<int>(2 * half);
  launch("batch_norm_glu", coefficients, (c + kThreads - 1) / kThreads, kThreads, 0, c, gamma, beta, mean, invstd,
         st.as<float2>());
  launch("batch_norm_glu", forward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         FastDiv(static_cast<int>(HW)), FastDiv(static_cast<int>(half)), static_cast<int>(HW), static_cast<int>(half), x,
         static_cast<const float2*>(st.as<float2>()), y);
}

void bn_glu_backward(int64_t N, int64_t half, int64_t HW, const float* dy, const float* x, const float* gamma,
                     const float* beta, const float* mean, const float* invstd, float* dz) {
  const int64_t n = N * half * HW;
  if (n == 0) return;
  need_int32(2 * n, "cuda batch_norm_glu_backward", "the input");
  Scratch st(sizeof(float2) * static_cast<size_t>(2 * half));
  const int c = static_cast<int>(2 * half);
  launch("batch_norm_glu_backward", coefficients, (c + kThreads - 1) / kThreads, kThreads, 0, c, gamma, beta, mean,
         invstd, st.as<float2>());
  launch("batch_norm_glu_backward", backward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         FastDiv(static_cast<int>(HW)), FastDiv(static_cast<int>(half)), static_cast<int>(HW), static_cast<int>(half),
         dy, x, static_cast<const float2*>(st.as<float2>()), dz);
}

}  // namespace c3::cuda
