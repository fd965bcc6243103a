// Batch normalisation over (N, C, HW). Per-channel statistics in two levels: partial sums in double
// over slices of the batch (a block per (channel, slice) when HW is large, a thread per (channel,
// slice) when it is small so that (N, C) inputs are read along C), then the grid's last block
// (arrives_last) merges each channel's slices in a fixed order, in the same launch. The forward
// sums are shifted by the channel's first value (sum of x - K and of (x - K)^2), which keeps the
// one-pass variance accurate when the mean is large against the spread. A final elementwise pass
// applies the per-channel affine map; its float arithmetic (and the per-channel double arithmetic)
// uses _rn intrinsics in the CPU's order, so no fused multiply-add moves the rounding.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "batchnorm.cuh"
#include "bn_glu.cuh"
#include "hd.cuh"
#include "reduce.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWideHW = 32;  // from this plane size on, a block reduces one channel slice
constexpr int64_t kPerChannelBackward = 16384;  // values a channel up to which its backward is one block

struct Plan {
  bool wide;
  int slices;
};

Plan plan(int N, int C, int HW) {
  Plan p;
  p.wide = HW >= kWideHW;
  const int64_t target = p.wide ? 4 * int64_t(sm_count()) : int64_t(sm_count()) * 2 * kThreads;
  // a slice is C blocks (wide) or C threads (narrow)
  int64_t slices = (target + C - 1) / C;
  // each slice keeps at least ~1K values (wide) or 16 (narrow) to sum
  const int64_t min_values = p.wide ? 1024 : 16;
  slices = std::min<int64_t>(slices, std::max<int64_t>(1, static_cast<int64_t>(N) * HW / min_values));
  p.slices = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(slices, N)));
  return p;
}

// The gradient at the normalised values: dy, or (y not null) dy through a LeakyReLU after the
// batch norm, from its output y (the same rounding as pointwise.cu's LeakyReLU backward)
struct GradIn {
  const float* dy;
  const float* y;
  float slope;
  __device__ __forceinline__ float at(int64_t i) const {
    const float g = dy[i];
    return !y || y[i] > 0.0f ? g : __fmul_rn(slope, g);
  }
};

// MODE 0: (x - ref, (x - ref)^2) with ref = x[c, first]; MODE 1: (g, g (x - ref)) with ref = mean
template <int MODE>
__device__ __forceinline__ void accumulate(const float* x, const GradIn& grad, int64_t off, double ref, double& s1,
                                           double& s2) {
  if (MODE == 0) {
    const double d = static_cast<double>(x[off]) - ref;
    s1 += d;
    s2 += d * d;
  } else {
    const double g = grad.at(off);
    s1 += g;
    s2 += g * (static_cast<double>(x[off]) - ref);
  }
}

template <int MODE>
__device__ __forceinline__ double channel_ref(const float* x, const float* mean, int c, int HW) {
  return MODE == 0 ? static_cast<double>(x[static_cast<int64_t>(c) * HW]) : static_cast<double>(mean[c]);
}

__device__ __forceinline__ void slice_range(int N, int slices, int slice, int& n0, int& n1) {
  n0 = static_cast<int>(static_cast<int64_t>(N) * slice / slices);
  n1 = static_cast<int>(static_cast<int64_t>(N) * (slice + 1) / slices);
}

// Block (c, slice) of a wide grid (C, slices) sums channel c over its batch slice; in a narrow
// grid (ceil(C / threads), slices) each thread sums one channel. Every thread of the block
// calls this (the wide sums are block reductions).
template <bool WIDE, int MODE>
__device__ __forceinline__ void channel_partials(int N, int C, int HW, int slices, const float* __restrict__ x,
                                                 const GradIn& grad, const float* __restrict__ mean, double2* part) {
  __shared__ double scratch[32];
  const int c = WIDE ? blockIdx.x : blockIdx.x * blockDim.x + threadIdx.x, slice = blockIdx.y;
  if (!WIDE && c >= C) return;  // past the last channel: nothing to sum (no barrier in narrow blocks)
  int n0, n1;
  slice_range(N, slices, slice, n0, n1);
  const double ref = channel_ref<MODE>(x, mean, c, HW);
  double s1 = 0.0, s2 = 0.0;
  for (int n = n0; n < n1; ++n) {
    const int64_t base = (static_cast<int64_t>(n) * C + c) * HW;
    if (WIDE)
      for (int i = threadIdx.x; i < HW; i += blockDim.x) accumulate<MODE>(x, grad, base + i, ref, s1, s2);
    else
      for (int i = 0; i < HW; ++i) accumulate<MODE>(x, grad, base + i, ref, s1, s2);
  }
  if (WIDE) {
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    if (threadIdx.x != 0) return;
  }
  part[static_cast<int64_t>(c) * slices + slice] = make_double2(s1, s2);
}

dim3 partials_grid(const Plan& p, int C) {
  return p.wide ? dim3(C, p.slices) : dim3((C + kThreads - 1) / kThreads, p.slices);
}

// channel c's slices, merged in slice order (the partials of other blocks: read through L2)
__device__ __forceinline__ double2 merge(const double2* part, int c, int slices) {
  double s1 = 0.0, s2 = 0.0;
  for (int k = 0; k < slices; ++k) {
    const double2 v = __ldcg(part + static_cast<int64_t>(c) * slices + k);
    s1 += v.x;
    s2 += v.y;
  }
  return make_double2(s1, s2);
}

// channel c's mean and biased variance from its slices' shifted sums
__device__ __forceinline__ double2 channel_mean_var(const double2* part, int c, int slices, int64_t count, int HW,
                                                    const float* x) {
  const double2 s = merge(part, c, slices);
  const double cnt = static_cast<double>(count);
  const double mean = static_cast<double>(x[static_cast<int64_t>(c) * HW]) + s.x / cnt;
  return make_double2(mean, fmax(__dsub_rn(s.y, __dmul_rn(s.x, s.x / cnt)) / cnt, 0.0));
}

// per channel: the statistics saved, the running estimates and the affine map y = x * ss.x + ss.y
__device__ __forceinline__ void finish_channel(int c, int64_t count, double mean, double var, const float* gamma,
                                               const float* beta, float* running_mean, float* running_var,
                                               float momentum, float eps, float* save_mean, float* save_invstd,
                                               float2* ss) {
  const double invstd = 1.0 / sqrt(var + eps);
  if (save_mean) save_mean[c] = static_cast<float>(mean);
  if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
  const double keep = 1.0 - momentum;
  if (running_mean)
    running_mean[c] = static_cast<float>(__dadd_rn(__dmul_rn(keep, running_mean[c]), __dmul_rn(momentum, mean)));
  if (running_var) {
    // PyTorch's unbiased estimate; a single value per channel has none, keep the biased one
    const double unbiased = count > 1 ? var * static_cast<double>(count) / static_cast<double>(count - 1) : var;
    running_var[c] = static_cast<float>(__dadd_rn(__dmul_rn(keep, running_var[c]), __dmul_rn(momentum, unbiased)));
  }
  const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
  ss[c] = make_float2(static_cast<float>(g * invstd), static_cast<float>(__dsub_rn(b, __dmul_rn(mean * g, invstd))));
}

// Every block's first step in a one-launch batch norm from given moments: the per-channel step of
// all C channels (the affine map into the block's shared table ss); block 0 alone also writes the
// saved statistics and the running estimates, so each has one writer.
__device__ __forceinline__ void table_from_moments(int C, int64_t count, const float2* moments, const float* gamma,
                                                   const float* beta, float* running_mean, float* running_var,
                                                   float momentum, float eps, float* save_mean, float* save_invstd,
                                                   float2* ss) {
  const bool first = blockIdx.x == 0;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float2 m = moments[c];
    finish_channel(c, count, m.x, m.y, gamma, beta, first ? running_mean : nullptr, first ? running_var : nullptr,
                   momentum, eps, first ? save_mean : nullptr, first ? save_invstd : nullptr, ss);
  }
  __syncthreads();
}

// The training statistics in one launch: the partial sums, then the grid's last block finishes
// every channel (saved statistics, running estimates, the affine map ss).
template <bool WIDE>
__global__ void train_statistics(int N, int C, int HW, int slices, const float* __restrict__ x, double2* part,
                                 unsigned* arrivals, const float* gamma, const float* beta, float* running_mean,
                                 float* running_var, float momentum, float eps, float* save_mean, float* save_invstd,
                                 float2* ss) {
  channel_partials<WIDE, 0>(N, C, HW, slices, x, GradIn{nullptr, nullptr, 0.0f}, nullptr, part);
  if (!arrives_last(arrivals)) return;
  const int64_t count = static_cast<int64_t>(N) * HW;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const double2 mv = channel_mean_var(part, c, slices, count, HW, x);
    finish_channel(c, count, mv.x, mv.y, gamma, beta, running_mean, running_var, momentum, eps, save_mean,
                   save_invstd, ss);
  }
}

// the same from given moments (mean, biased variance per channel)
__global__ void train_finalize_given(int C, int64_t count, const float2* moments, const float* gamma,
                                     const float* beta, float* running_mean, float* running_var, float momentum,
                                     float eps, float* save_mean, float* save_invstd, float2* ss) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const float2 m = moments[c];
  finish_channel(c, count, m.x, m.y, gamma, beta, running_mean, running_var, momentum, eps, save_mean, save_invstd,
                 ss);
}

// channel_moments in one launch: the partial sums, then the last block's (mean, variance) per channel
template <bool WIDE>
__global__ void moments_statistics(int N, int C, int HW, int slices, const float* __restrict__ x, double2* part,
                                   unsigned* arrivals, float2* moments) {
  channel_partials<WIDE, 0>(N, C, HW, slices, x, GradIn{nullptr, nullptr, 0.0f}, nullptr, part);
  if (!arrives_last(arrivals)) return;
  const int64_t count = static_cast<int64_t>(N) * HW;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const double2 mv = channel_mean_var(part, c, slices, count, HW, x);
    moments[c] = make_float2(static_cast<float>(mv.x), static_cast<float>(mv.y));
  }
}

__global__ void eval_coefficients(int C, const float* gamma, const float* beta, const float* running_mean,
                                  const float* running_var, float eps, float2* ss) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double invstd = 1.0 / sqrt(static_cast<double>(running_var[c]) + eps);
  const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
  ss[c] = make_float2(static_cast<float>(g * invstd),
                      static_cast<float>(__dsub_rn(b, __dmul_rn(running_mean[c] * g, invstd))));
}

// per channel, from its sums s (of g and g (x - mean)): dgamma, dbeta and the coefficients
// (a, b, k, mean) of dx = a g + b (x - mean) + k
__device__ __forceinline__ float4 channel_backward(int c, double2 s, int64_t count, bool training, const float* gamma,
                                                   const float* save_mean, const float* save_invstd, float* dgamma,
                                                   float* dbeta) {
  const double invstd = save_invstd[c];
  const double sum_dy_xhat = s.y * invstd;
  if (dgamma) dgamma[c] = static_cast<float>(sum_dy_xhat);
  if (dbeta) dbeta[c] = static_cast<float>(s.x);
  const double ga = (gamma ? gamma[c] : 1.0) * invstd;
  float b = 0.0f, k = 0.0f;
  if (training && count > 0) {
    b = static_cast<float>(-ga * invstd * sum_dy_xhat / static_cast<double>(count));
    k = static_cast<float>(-ga * s.x / static_cast<double>(count));
  }
  return make_float4(static_cast<float>(ga), b, k, save_mean[c]);
}

// channel_backward from the channel's slices of partial sums, its coefficients into coef[c]
__device__ __forceinline__ void backward_channel(int c, int slices, int64_t count, bool training,
                                                 const double2* part, const float* gamma, const float* save_mean,
                                                 const float* save_invstd, float* dgamma, float* dbeta,
                                                 float4* coef) {
  const double2 s = slices > 0 ? merge(part, c, slices) : make_double2(0.0, 0.0);
  coef[c] = channel_backward(c, s, count, training, gamma, save_mean, save_invstd, dgamma, dbeta);
}

// The backward's sums (of g and g (x - mean), g the gradient at the normalised values: GradIn
// from dy, y and slope) in one launch, the last block finishing each channel
template <bool WIDE>
__global__ void backward_statistics(int N, int C, int HW, int slices, bool training, const float* __restrict__ dy,
                                    const float* __restrict__ y, float slope, const float* __restrict__ x,
                                    const float* gamma, const float* save_mean, const float* save_invstd,
                                    double2* part, unsigned* arrivals, float* dgamma, float* dbeta, float4* coef) {
  channel_partials<WIDE, 1>(N, C, HW, slices, x, GradIn{dy, y, slope}, save_mean, part);
  if (!arrives_last(arrivals)) return;
  const int64_t count = static_cast<int64_t>(N) * HW;
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    backward_channel(c, slices, count, training, part, gamma, save_mean, save_invstd, dgamma, dbeta, coef);
}

// GLU's gradient at the normalised values of a channel pair (j, half + j) at one element: xa and
// xb the batch norm inputs, g the gradient at GLU's output, ka and kb the pair's coefficients
__device__ __forceinline__ float2 glu_pair_grad(float xa, float xb, float g, float2 ka, float2 kb) {
  const float a = fmaf(xa, ka.x, ka.y), s = glu_sigmoid(fmaf(xb, kb.x, kb.y));
  return make_float2(g * s, g * a * s * (1.0f - s));
}

// dx = a dz + b (x - mean) + k at one element (apply_backward's arithmetic)
__device__ __forceinline__ float backward_at(float4 k, float g, float x) {
  return __fadd_rn(__fadd_rn(__fmul_rn(k.x, g), __fmul_rn(k.y, __fsub_rn(x, k.w))), k.z);
}

// Batch norm-GLU's backward sums: block j of a wide grid (half, slices), or thread j of a narrow
// one, takes the channel pair (j, half + j) that GLU output channel j came from, forms dz (the
// gradient at the normalised values) for both and sums each as channel_partials<WIDE, 1> would
// over a stored dz, in the same order. dz is not stored: glu_apply_backward forms it again
// (one write and one read of dz fewer, 2 x 134 MB per call at the 128 px layers).
template <bool WIDE>
__device__ __forceinline__ void glu_pair_partials(int N, int half, int HW, int slices, const float* __restrict__ dy,
                                                  const float* __restrict__ x, const float* gamma, const float* beta,
                                                  const float* mean, const float* invstd, double2* part) {
  __shared__ double scratch[32];
  const int j = WIDE ? blockIdx.x : blockIdx.x * blockDim.x + threadIdx.x, slice = blockIdx.y;
  if (!WIDE && j >= half) return;
  int n0, n1;
  slice_range(N, slices, slice, n0, n1);
  const float2 ka = bn_glu_coefficients(j, gamma, beta, mean, invstd);
  const float2 kb = bn_glu_coefficients(half + j, gamma, beta, mean, invstd);
  const double ra = mean[j], rb = mean[half + j];
  double a1 = 0.0, a2 = 0.0, b1 = 0.0, b2 = 0.0;
  for (int n = n0; n < n1; ++n) {
    const int64_t za = (static_cast<int64_t>(n) * 2 * half + j) * HW, zb = za + static_cast<int64_t>(half) * HW;
    const int64_t out = (static_cast<int64_t>(n) * half + j) * HW;
    for (int i = WIDE ? threadIdx.x : 0; i < HW; i += WIDE ? blockDim.x : 1) {
      const float xa = x[za + i], xb = x[zb + i];
      const float2 d = glu_pair_grad(xa, xb, dy[out + i], ka, kb);
      const float da = d.x, db = d.y;
      a1 += static_cast<double>(da);
      a2 += static_cast<double>(da) * (static_cast<double>(xa) - ra);
      b1 += static_cast<double>(db);
      b2 += static_cast<double>(db) * (static_cast<double>(xb) - rb);
    }
  }
  if (WIDE) {
    a1 = block_sum(a1, scratch);
    a2 = block_sum(a2, scratch);
    b1 = block_sum(b1, scratch);
    b2 = block_sum(b2, scratch);
    if (threadIdx.x != 0) return;
  }
  part[static_cast<int64_t>(j) * slices + slice] = make_double2(a1, a2);
  part[static_cast<int64_t>(half + j) * slices + slice] = make_double2(b1, b2);
}

template <bool WIDE>
__global__ void glu_backward_statistics(int N, int half, int HW, int slices, bool training,
                                        const float* __restrict__ dy, const float* __restrict__ x, const float* gamma,
                                        const float* beta, const float* save_mean, const float* save_invstd,
                                        double2* part, unsigned* arrivals, float* dgamma, float* dbeta,
                                        float4* coef) {
  glu_pair_partials<WIDE>(N, half, HW, slices, dy, x, gamma, beta, save_mean, save_invstd, part);
  if (!arrives_last(arrivals)) return;
  const int64_t count = static_cast<int64_t>(N) * HW;
  for (int c = threadIdx.x; c < 2 * half; c += blockDim.x)
    backward_channel(c, slices, count, training, part, gamma, save_mean, save_invstd, dgamma, dbeta, coef);
}

// an empty batch: no sums, only each channel's gradients (zero) and coefficients
__global__ void backward_empty(int C, bool training, const float* gamma, const float* save_mean,
                               const float* save_invstd, float* dgamma, float* dbeta, float4* coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  backward_channel(c, 0, 0, training, nullptr, gamma, save_mean, save_invstd, dgamma, dbeta, coef);
}

// y = x * ss.x + ss.y per channel, then BnEpilogue's residual and LeakyReLU, each rounded as the
// separate op would (pointwise.cu's LeakyReLU), over the grid's share of the elements
__device__ __forceinline__ void normalise(int n, FastDiv HW, FastDiv C, const float* __restrict__ x, const float2* ss,
                                          const float* __restrict__ residual, bool leaky, float slope,
                                          float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int plane, c, nn;
    plane = HW.div(i);
    C.divmod(plane, nn, c);
    const float2 a = ss[c];
    float v = __fadd_rn(__fmul_rn(x[i], a.x), a.y);
    if (residual) v = __fadd_rn(v, residual[i]);
    if (leaky) v = v > 0.0f ? v : __fmul_rn(slope, v);
    y[i] = v;
  }
}

__global__ void apply_affine(int n, FastDiv HW, FastDiv C, const float* __restrict__ x, const float2* __restrict__ ss,
                             const float* __restrict__ residual, bool leaky, float slope, float* __restrict__ y) {
  normalise(n, HW, C, x, ss, residual, leaky, slope, y);
}

// Batch norm-GLU in training from given moments in one launch: every block makes the (s, t) of
// all 2 * half channels as bn_glu_forward takes them (through the saved float statistics; block
// 0 also writes those and the running estimates), then the GLU pass
__global__ void glu_from_moments(int n, FastDiv HW, FastDiv half, int hw, int h, int64_t count,
                                 const float2* moments, const float* gamma, const float* beta, float* running_mean,
                                 float* running_var, float momentum, float eps, float* save_mean, float* save_invstd,
                                 const float* __restrict__ x, float* __restrict__ y) {
  C3_DYNAMIC_SHARED(float2, st);
  const bool first = blockIdx.x == 0;
  for (int c = threadIdx.x; c < 2 * h; c += blockDim.x) {
    const float2 m = moments[c];
    if (first)
      finish_channel(c, count, m.x, m.y, gamma, beta, running_mean, running_var, momentum, eps, save_mean,
                     save_invstd, st);
    // through finish_channel's save_invstd, rounded (the mean is a float already)
    const float invstd = static_cast<float>(1.0 / sqrt(static_cast<double>(m.y) + eps));
    st[c] = bn_glu_coefficients(gamma[c], beta[c], m.x, invstd);
  }
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int j;
    const int a = glu_first_half(i, HW, half, hw, h, j);
    y[i] = bn_glu_at(x, a, a + h * hw, st[j], st[h + j]);
  }
}

// Batch norm in training from given moments in one launch (table_from_moments, then the pass)
__global__ void normalise_from_moments(int n, FastDiv HW, FastDiv Cd, int C, int64_t count, const float2* moments,
                                       const float* gamma, const float* beta, float* running_mean,
                                       float* running_var, float momentum, float eps, float* save_mean,
                                       float* save_invstd, const float* __restrict__ x,
                                       const float* __restrict__ residual, bool leaky, float slope,
                                       float* __restrict__ y) {
  C3_DYNAMIC_SHARED(float2, ss);
  table_from_moments(C, count, moments, gamma, beta, running_mean, running_var, momentum, eps, save_mean, save_invstd,
                     ss);
  normalise(n, HW, Cd, x, ss, residual, leaky, slope, y);
}

// dx = a g + b (x - mean) + k with g the gradient at the normalised values (GradIn)
__global__ void apply_backward(int n, FastDiv HW, FastDiv C, const float* __restrict__ dy,
                               const float* __restrict__ y, float slope, const float* __restrict__ x,
                               const float4* __restrict__ coef, float* __restrict__ dx) {
  const GradIn grad{dy, y, slope};
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int plane, c, nn;
    plane = HW.div(i);
    C.divmod(plane, nn, c);
    dx[i] = backward_at(coef[c], grad.at(i), x[i]);
  }
}

// Small maps (count = N * HW values a channel, few): the whole backward in one launch, a block
// per channel. It sums the channel's g and g (x - mean) (a fixed order: the threads' strided
// sums, then block_sum), finishes the channel and writes its dx, which the block's threads read
// back from L1/L2. The two-launch path would spend a launch on the sums and one on dx.
__global__ void backward_per_channel(int N, int C, int HW, bool training, const float* __restrict__ dy,
                                     const float* __restrict__ y, float slope, const float* __restrict__ x,
                                     const float* gamma, const float* save_mean, const float* save_invstd,
                                     float* dgamma, float* dbeta, float* __restrict__ dx) {
  __shared__ double scratch[32];
  __shared__ float4 k;
  const int c = blockIdx.x, count = N * HW;
  const GradIn grad{dy, y, slope};
  const double ref = save_mean[c];
  const auto at = [&](int i) {  // the i-th value of channel c: plane n = i / HW
    const int n = i / HW;
    return (static_cast<int64_t>(n) * C + c) * HW + (i - n * HW);
  };
  double s1 = 0.0, s2 = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) accumulate<1>(x, grad, at(i), ref, s1, s2);
  s1 = block_sum(s1, scratch);
  s2 = block_sum(s2, scratch);
  if (threadIdx.x == 0)
    k = channel_backward(c, make_double2(s1, s2), count, training, gamma, save_mean, save_invstd, dgamma, dbeta);
  __syncthreads();
  if (!dx) return;
  const float4 kc = k;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t off = at(i);
    dx[off] = backward_at(kc, grad.at(off), x[off]);
  }
}

// Batch norm-GLU's backward on small maps in one launch, a block per channel pair (j, half + j):
// backward_per_channel's plan over glu_pair_grad's dz of both channels
__global__ void glu_backward_per_pair(int N, int half, int HW, bool training, const float* __restrict__ dy,
                                      const float* __restrict__ x, const float* gamma, const float* beta,
                                      const float* mean, const float* invstd, float* dgamma, float* dbeta,
                                      float* __restrict__ dx) {
  __shared__ double scratch[32];
  __shared__ float4 k[2];
  const int j = blockIdx.x, count = N * HW;
  const float2 ka = bn_glu_coefficients(j, gamma, beta, mean, invstd);
  const float2 kb = bn_glu_coefficients(half + j, gamma, beta, mean, invstd);
  const double ra = mean[j], rb = mean[half + j];
  const auto in_a = [&](int i) {  // channel j's i-th value; channel half + j's is half * HW further
    const int n = i / HW;
    return (static_cast<int64_t>(n) * 2 * half + j) * HW + (i - n * HW);
  };
  const auto out = [&](int i) {
    const int n = i / HW;
    return (static_cast<int64_t>(n) * half + j) * HW + (i - n * HW);
  };
  const int64_t to_b = static_cast<int64_t>(half) * HW;
  double a1 = 0.0, a2 = 0.0, b1 = 0.0, b2 = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t a = in_a(i);
    const float xa = x[a], xb = x[a + to_b];
    const float2 d = glu_pair_grad(xa, xb, dy[out(i)], ka, kb);
    a1 += static_cast<double>(d.x);
    a2 += static_cast<double>(d.x) * (static_cast<double>(xa) - ra);
    b1 += static_cast<double>(d.y);
    b2 += static_cast<double>(d.y) * (static_cast<double>(xb) - rb);
  }
  a1 = block_sum(a1, scratch);
  a2 = block_sum(a2, scratch);
  b1 = block_sum(b1, scratch);
  b2 = block_sum(b2, scratch);
  if (threadIdx.x == 0) {
    k[0] = channel_backward(j, make_double2(a1, a2), count, training, gamma, mean, invstd, dgamma, dbeta);
    k[1] = channel_backward(half + j, make_double2(b1, b2), count, training, gamma, mean, invstd, dgamma, dbeta);
  }
  __syncthreads();
  if (!dx) return;
  const float4 kca = k[0], kcb = k[1];
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t a = in_a(i), b = a + to_b;
    const float xa = x[a], xb = x[b];
    const float2 d = glu_pair_grad(xa, xb, dy[out(i)], ka, kb);
    dx[a] = backward_at(kca, d.x, xa);
    dx[b] = backward_at(kcb, d.y, xb);
  }
}

// Batch norm-GLU's dx, a thread per element of GLU's output (N, half, HW): the pair's dz formed
// again as glu_pair_partials formed it (the same bits), then apply_backward's map for both
// channels of the pair
__global__ void glu_apply_backward(int n, FastDiv HW, FastDiv half, int hw, int h, const float* __restrict__ dy,
                                   const float* __restrict__ x, const float* gamma, const float* beta,
                                   const float* mean, const float* invstd, const float4* __restrict__ coef,
                                   float* __restrict__ dx) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int j;
    const int a = glu_first_half(i, HW, half, hw, h, j), b = a + h * hw;
    const float xa = x[a], xb = x[b];
    const float2 d = glu_pair_grad(xa, xb, dy[i], bn_glu_coefficients(j, gamma, beta, mean, invstd),
                                   bn_glu_coefficients(h + j, gamma, beta, mean, invstd));
    dx[a] = backward_at(coef[j], d.x, xa);
    dx[b] = backward_at(coef[h + j], d.y, xb);
  }
}

void checked_dims(int64_t N, int64_t C, int64_t HW, const char* op) { need_int32(N * C * HW, op, "the input"); }

// The one-launch backward (a block per channel) where a channel's values are few and its planes
// at least a 32-byte sector wide: BatchNorm1d's rows (HW = 1) stay on the slices, whose threads
// read along C
bool backward_in_one_launch(int64_t count, int64_t HW) { return HW >= 8 && count <= kPerChannelBackward; }

// A one-launch batch norm from given moments keeps the C channels' table in shared memory
bool one_launch_from_moments(int64_t C) { return C * sizeof(float2) <= (size_t(48) << 10); }

// ...and every block makes the whole table, so each block takes at least ~8 elements a channel
unsigned from_moments_grid(int total, int C) {
  const int64_t per_block = 8 * static_cast<int64_t>(C);
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>(grid_for(total, kThreads), (total + per_block - 1) / per_block)));
}

}  // namespace

void batchnorm_forward_train(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                             float* running_mean, float* running_var, float momentum, float eps, float* y,
                             float* save_mean, float* save_invstd, const float* moments, const BnEpilogue& epi) {
  checked_dims(N, C, HW, "cuda batch_norm");
  const int64_t count = N * HW;
  if (count == 0 || C == 0) return;
  const int n = static_cast<int>(N), c = static_cast<int>(C), hw = static_cast<int>(HW);
  if (moments && y && one_launch_from_moments(C)) {
    const int total = n * c * hw;
    launch("batch_norm", normalise_from_moments, from_moments_grid(total, c), kThreads,
           sizeof(float2) * static_cast<size_t>(C), total, FastDiv(hw), FastDiv(c), c, count,
           reinterpret_cast<const float2*>(moments), gamma, beta, running_mean, running_var, momentum, eps, save_mean,
           save_invstd, x, epi.residual, epi.leaky, epi.slope, y);
    return;
  }
  Scratch ss(sizeof(float2) * static_cast<size_t>(C));
  if (moments) {  // the conv's epilogue summed x already
    launch("batch_norm", train_finalize_given, (c + kThreads - 1) / kThreads, kThreads, 0, c, count,
           reinterpret_cast<const float2*>(moments), gamma, beta, running_mean, running_var, momentum, eps, save_mean,
           save_invstd, ss.as<float2>());
  } else {
    const Plan p = plan(n, c, hw);
    Scratch part(sizeof(double2) * static_cast<size_t>(C) * p.slices);
    launch("batch_norm", p.wide ? train_statistics<true> : train_statistics<false>, partials_grid(p, c), kThreads,
           0, n, c, hw, p.slices, x, part.as<double2>(), block_arrivals(), gamma, beta, running_mean, running_var,
           momentum, eps, save_mean, save_invstd, ss.as<float2>());
  }
  if (!y) return;  // the statistics only (bn_glu_forward normalises)
  const int total = n * c * hw;
  launch("batch_norm", apply_affine, grid_for(total, kThreads), kThreads, 0, total, FastDiv(hw), FastDiv(c), x,
         static_cast<const float2*>(ss.as<float2>()), epi.residual, epi.leaky, epi.slope, y);
}

void channel_moments(int64_t N, int64_t C, int64_t HW, const float* x, float* moments) {
  checked_dims(N, C, HW, "cuda channel_moments");
  const int64_t count = N * HW;
  if (C == 0) return;
  if (count == 0) {
    check_cuda(cudaMemsetAsync(moments, 0, sizeof(float2) * static_cast<size_t>(C), stream()), "channel_moments");
    return;
  }
  const int n = static_cast<int>(N), c = static_cast<int>(C), hw = static_cast<int>(HW);
  const Plan p = plan(n, c, hw);
  Scratch part(sizeof(double2) * static_cast<size_t>(C) * p.slices);
  launch("channel_moments", p.wide ? moments_statistics<true> : moments_statistics<false>, partials_grid(p, c),
         kThreads, 0, n, c, hw, p.slices, x, part.as<double2>(), block_arrivals(), reinterpret_cast<float2*>(moments));
}

void batchnorm_forward_eval(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y,
                            const BnEpilogue& epi) {
  checked_dims(N, C, HW, "cuda batch_norm");
  if (N * C * HW == 0) return;
  const int n = static_cast<int>(N), c = static_cast<int>(C), hw = static_cast<int>(HW);
  Scratch ss(sizeof(float2) * static_cast<size_t>(C));
  launch("batch_norm", eval_coefficients, (c + kThreads - 1) / kThreads, kThreads, 0, c, gamma, beta, running_mean,
         running_var, eps, ss.as<float2>());
  const int total = n * c * hw;
  launch("batch_norm", apply_affine, grid_for(total, kThreads), kThreads, 0, total, FastDiv(hw), FastDiv(c), x,
         static_cast<const float2*>(ss.as<float2>()), epi.residual, epi.leaky, epi.slope, y);
}

namespace {

// batch norm's backward with the gradient at the normalised values given by GradIn (dy, y, slope)
void backward(const char* op, int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* y,
              float slope, const float* x, const float* gamma, const float* save_mean, const float* save_invstd,
              float* dx, float* dgamma, float* dbeta) {
  checked_dims(N, C, HW, op);
  if (C == 0) return;
  const int64_t count = N * HW;
  const int n = static_cast<int>(N), c = static_cast<int>(C), hw = static_cast<int>(HW);
  if (count > 0 && backward_in_one_launch(count, HW)) {
    launch(op, backward_per_channel, c, kThreads, 0, n, c, hw, training, dy, y, slope, x, gamma, save_mean,
           save_invstd, dgamma, dbeta, dx);
    return;
  }
  Scratch coef(sizeof(float4) * static_cast<size_t>(C));
  if (count > 0) {
    const Plan p = plan(n, c, hw);
    Scratch part(sizeof(double2) * static_cast<size_t>(C) * p.slices);
    launch(op, p.wide ? backward_statistics<true> : backward_statistics<false>, partials_grid(p, c), kThreads, 0, n,
           c, hw, p.slices, training, dy, y, slope, x, gamma, save_mean, save_invstd, part.as<double2>(),
           block_arrivals(), dgamma, dbeta, coef.as<float4>());
  } else {
    launch(op, backward_empty, (c + kThreads - 1) / kThreads, kThreads, 0, c, training, gamma, save_mean,
           save_invstd, dgamma, dbeta, coef.as<float4>());
  }
  if (!dx || count == 0) return;
  const int total = n * c * hw;
  launch(op, apply_backward, grid_for(total, kThreads), kThreads, 0, total, FastDiv(hw), FastDiv(c), dy, y, slope, x,
         static_cast<const float4*>(coef.as<float4>()), dx);
}

}  // namespace

void batchnorm_backward(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                        float* dgamma, float* dbeta) {
  backward("cuda batch_norm_backward", N, C, HW, training, dy, nullptr, 0.0f, x, gamma, save_mean, save_invstd, dx,
           dgamma, dbeta);
}

void batchnorm_leaky_backward(int64_t N, int64_t C, int64_t HW, bool training, float slope, const float* dy,
                              const float* y, const float* x, const float* gamma, const float* save_mean,
                              const float* save_invstd, float* dx, float* dgamma, float* dbeta) {
  backward("cuda batch_norm_leaky_backward", N, C, HW, training, dy, y, slope, x, gamma, save_mean, save_invstd, dx,
           dgamma, dbeta);
}

void bn_glu_forward_train(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                          float* running_mean, float* running_var, float momentum, float eps, const float* moments,
                          float* y, float* save_mean, float* save_invstd) {
  const int64_t C = 2 * half;
  checked_dims(N, C, HW, "cuda batch_norm_glu");
  if (N * HW == 0 || C == 0) return;
  if (moments && one_launch_from_moments(C)) {
    const int total = static_cast<int>(N * half * HW), h = static_cast<int>(half), hw = static_cast<int>(HW);
    launch("batch_norm_glu", glu_from_moments, from_moments_grid(total, static_cast<int>(C)), kThreads,
           sizeof(float2) * static_cast<size_t>(C), total, FastDiv(hw), FastDiv(h), hw, h, N * HW,
           reinterpret_cast<const float2*>(moments), gamma, beta, running_mean, running_var, momentum, eps, save_mean,
           save_invstd, x, y);
    return;
  }
  batchnorm_forward_train(N, C, HW, x, gamma, beta, running_mean, running_var, momentum, eps, nullptr, save_mean,
                          save_invstd, moments);
  bn_glu_forward(N, half, HW, x, gamma, beta, save_mean, save_invstd, y);
}

void bn_glu_batchnorm_backward(int64_t N, int64_t half, int64_t HW, bool training, const float* dy, const float* x,
                               const float* gamma, const float* beta, const float* mean, const float* invstd,
                               float* dx, float* dgamma, float* dbeta) {
  const int64_t C = 2 * half;
  checked_dims(N, C, HW, "cuda batch_norm_glu_backward");
  if (C == 0) return;
  const int64_t count = N * HW;
  const int n = static_cast<int>(N), h = static_cast<int>(half), c = static_cast<int>(C), hw = static_cast<int>(HW);
  if (count > 0 && backward_in_one_launch(count, HW)) {
    launch("batch_norm_glu_backward", glu_backward_per_pair, h, kThreads, 0, n, h, hw, training, dy, x, gamma, beta,
           mean, invstd, dgamma, dbeta, dx);
    return;
  }
  Scratch coef(sizeof(float4) * static_cast<size_t>(C));
  if (count == 0) {
    launch("batch_norm_glu_backward", backward_empty, (c + kThreads - 1) / kThreads, kThreads, 0, c, training, gamma,
           mean, invstd, dgamma, dbeta, coef.as<float4>());
    return;
  }
  // the partition of batch norm's own sums over the C channels, so the sums are the same
  const Plan p = plan(n, c, hw);
  Scratch part(sizeof(double2) * static_cast<size_t>(C) * p.slices);
  const dim3 grid = p.wide ? dim3(h, p.slices) : dim3((h + kThreads - 1) / kThreads, p.slices);
  launch("batch_norm_glu_backward", p.wide ? glu_backward_statistics<true> : glu_backward_statistics<false>, grid,
         kThreads, 0, n, h, hw, p.slices, training, dy, x, gamma, beta, mean, invstd, part.as<double2>(),
         block_arrivals(), dgamma, dbeta, coef.as<float4>());
  if (!dx) return;
  const int total = n * h * hw;
  launch("batch_norm_glu_backward", glu_apply_backward, grid_for(total, kThreads), kThreads, 0, total, FastDiv(hw),
         FastDiv(h), hw, h, dy, x, gamma, beta, mean, invstd, static_cast<const float4*>(coef.as<float4>()), dx);
}

}  // namespace c3::cuda
