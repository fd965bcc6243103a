// Row-wise kernels: one warp per row (8 rows per block), reductions along the row in double
// with a fixed shuffle tree, as the CPU does them in double. Where the CPU's double expressions
// have the shape a*b + c, _rn intrinsics keep the compiler from fusing them.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "reduce.cuh"
#include "rows.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kRowsPerBlock = 8;
constexpr int kThreads = 32 * kRowsPerBlock;

unsigned row_blocks(int64_t N) {
  return static_cast<unsigned>(std::min<int64_t>((N + kRowsPerBlock - 1) / kRowsPerBlock, 65535 * 8));
}

#define C3_FOR_ROWS(N)                                                                       \
  const int lane = threadIdx.x & 31;                                                         \
  for (int64_t r = blockIdx.x * int64_t(kRowsPerBlock) + (threadIdx.x >> 5); r < (N);        \
       r += int64_t(gridDim.x) * kRowsPerBlock)

__global__ void l2norm_forward_kernel(int64_t N, int64_t D, const float* __restrict__ x, float eps,
                                      float* __restrict__ y, float* __restrict__ norms) {
  C3_FOR_ROWS(N) {
    const float* xr = x + r * D;
    double ss = 0.0;
    for (int64_t j = lane; j < D; j += 32) ss += static_cast<double>(xr[j]) * xr[j];
    const double norm = sqrt(warp_sum(ss));
    const double inv = 1.0 / fmax(norm, static_cast<double>(eps));
    for (int64_t j = lane; j < D; j += 32) y[r * D + j] = static_cast<float>(xr[j] * inv);
    if (lane == 0) norms[r] = static_cast<float>(norm);
  }
}

__global__ void l2norm_backward_kernel(int64_t N, int64_t D, const float* __restrict__ dy, const float* __restrict__ x,
                                       const float* __restrict__ norms, float eps, float* __restrict__ dx) {
  C3_FOR_ROWS(N) {
    const float* xr = x + r * D;
    const float* gr = dy + r * D;
    const double norm = norms[r];
    if (norm > eps) {
      double dot = 0.0;
      for (int64_t j = lane; j < D; j += 32) dot += static_cast<double>(xr[j]) * gr[j];
      dot = warp_sum(dot);
      const double inv = 1.0 / norm, k = dot * inv * inv * inv;
      for (int64_t j = lane; j < D; j += 32)
        dx[r * D + j] = static_cast<float>(__dsub_rn(__dmul_rn(gr[j], inv), __dmul_rn(xr[j], k)));
    } else {
      const double inv = 1.0 / eps;
      for (int64_t j = lane; j < D; j += 32) dx[r * D + j] = static_cast<float>(gr[j] * inv);
    }
  }
}

__device__ __forceinline__ float row_max(const float* xr, int64_t D, int lane) {
  float m = -INFINITY;
  for (int64_t j = lane; j < D; j += 32) m = fmaxf(m, xr[j]);
  return warp_max(m);
}

__device__ __forceinline__ double row_sum_exp(const float* xr, int64_t D, float m, int lane) {
  double s = 0.0;
  for (int64_t j = lane; j < D; j += 32) s += exp(static_cast<double>(xr[j] - m));
  return warp_sum(s);
}

__global__ void softmax_forward_kernel(int64_t N, int64_t D, const float* __restrict__ x, bool log_,
                                       float* __restrict__ y) {
  C3_FOR_ROWS(N) {
    const float* xr = x + r * D;
    const float m = row_max(xr, D, lane);
    const double s = row_sum_exp(xr, D, m, lane);
    if (log_) {
      const double ls = log(s);
      for (int64_t j = lane; j < D; j += 32) y[r * D + j] = static_cast<float>((xr[j] - m) - ls);
    } else {
      const double inv = 1.0 / s;
      for (int64_t j = lane; j < D; j += 32) y[r * D + j] = static_cast<float>(exp(static_cast<double>(xr[j] - m)) * inv);
    }
  }
}

__global__ void softmax_backward_kernel(int64_t N, int64_t D, const float* __restrict__ dy,
                                        const float* __restrict__ y, bool log_, float* __restrict__ dx) {
  C3_FOR_ROWS(N) {
    const float* gr = dy + r * D;
    const float* yr = y + r * D;
    double s = 0.0;
    if (log_) {
      for (int64_t j = lane; j < D; j += 32) s += gr[j];
      s = warp_sum(s);
      for (int64_t j = lane; j < D; j += 32)
        dx[r * D + j] = static_cast<float>(__dsub_rn(gr[j], __dmul_rn(exp(static_cast<double>(yr[j])), s)));
    } else {
      for (int64_t j = lane; j < D; j += 32) s += static_cast<double>(gr[j]) * yr[j];
      s = warp_sum(s);
      for (int64_t j = lane; j < D; j += 32) dx[r * D + j] = static_cast<float>(yr[j] * (gr[j] - s));
    }
  }
}

__global__ void xent_forward_kernel(int64_t N, int64_t D, const float* __restrict__ logits,
                                    const int32_t* __restrict__ targets, double* __restrict__ row_loss,
                                    float* __restrict__ probs) {
  C3_FOR_ROWS(N) {
    const float* xr = logits + r * D;
    const float m = row_max(xr, D, lane);
    const double s = row_sum_exp(xr, D, m, lane);
    const double inv = 1.0 / s;
    for (int64_t j = lane; j < D; j += 32)
      probs[r * D + j] = static_cast<float>(exp(static_cast<double>(xr[j] - m)) * inv);
    if (lane == 0) row_loss[r] = log(s) - static_cast<double>(xr[targets[r]] - m);
  }
}

// dlogits = (probs - onehot(target)) * dloss / N
__global__ void xent_backward_kernel(int64_t n, int64_t N, int64_t D, const float* __restrict__ probs,
                                     const int32_t* __restrict__ targets, const float* __restrict__ dloss,
                                     float* __restrict__ dlogits) {
  const float g = dloss[0] / static_cast<float>(N);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, j = i - r * D;
    const float p = probs[i];
    dlogits[i] = j == targets[r] ? (p - 1.0f) * g : p * g;
  }
}

__global__ void mean_kernel(const double* __restrict__ v, int64_t n, float* __restrict__ out) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) out[0] = static_cast<float>(s / static_cast<double>(n));
}

}  // namespace

void l2norm_forward(int64_t N, int64_t D, const float* x, float eps, float* y, float* norms) {
  launch("normalize", l2norm_forward_kernel, row_blocks(N), kThreads, 0, N, D, x, eps, y, norms);
}

void l2norm_backward(int64_t N, int64_t D, const float* dy, const float* x, const float* norms, float eps, float* dx) {
  launch("normalize_backward", l2norm_backward_kernel, row_blocks(N), kThreads, 0, N, D, dy, x, norms, eps, dx);
}

void softmax_forward(int64_t N, int64_t D, const float* x, bool log, float* y) {
  launch("softmax", softmax_forward_kernel, row_blocks(N), kThreads, 0, N, D, x, log, y);
}

void softmax_backward(int64_t N, int64_t D, const float* dy, const float* y, bool log, float* dx) {
  launch("softmax_backward", softmax_backward_kernel, row_blocks(N), kThreads, 0, N, D, dy, y, log, dx);
}

void mean_to_scalar(const double* values, int64_t n, float* out, const char* op) {
  launch(op, mean_kernel, 1, 1024, 0, values, n, out);
}

void cross_entropy_forward(int64_t N, int64_t D, const float* logits, const int32_t* targets, float* loss,
                           float* probs) {
  if (N <= 0) return;
  Scratch row_loss(sizeof(double) * static_cast<size_t>(N));
  launch("cross_entropy", xent_forward_kernel, row_blocks(N), kThreads, 0, N, D, logits, targets,
         row_loss.as<double>(), probs);
  mean_to_scalar(row_loss.as<double>(), N, loss, "cross_entropy");
}

void cross_entropy_backward(int64_t N, int64_t D, const float* probs, const int32_t* targets, const float* dloss,
                            float* dlogits) {
  const int64_t n = N * D;
  launch("cross_entropy_backward", xent_backward_kernel, grid_for(n, 256), 256, 0, n, N, D, probs, targets, dloss,
         dlogits);
}

}  // namespace c3::cuda
