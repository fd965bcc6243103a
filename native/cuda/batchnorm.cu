// Batch normalisation over (N, C, HW). Per-channel statistics in two levels: partial sums in
// double over slices of the batch (a block per (channel, slice) when HW is large, a thread per
// (channel, slice) when it is small so that (N, C) inputs are read along C), then one thread
// per channel merges the slices in a fixed order. The forward sums are shifted by the
// channel's first value (sum of x - K and of (x - K)^2), which keeps the one-pass variance
// accurate when the mean is large against the spread. A final elementwise pass applies the
// per-channel affine map; its float arithmetic (and the per-channel double arithmetic) uses
// _rn intrinsics in the CPU's order, so no fused multiply-add moves the rounding.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "batchnorm.cuh"
#include "hd.cuh"
#include "reduce.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWideHW = 32;  // from this plane size on, a block reduces one channel slice

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

// MODE 0: (x - ref, (x - ref)^2) with ref = x[c, first]; MODE 1: (dy, dy (x - ref)) with ref = mean
template <int MODE>
__device__ __forceinline__ void accumulate(const float* x, const float* dy, int64_t off, double ref, double& s1,
                                           double& s2) {
  if (MODE == 0) {
    const double d = static_cast<double>(x[off]) - ref;
    s1 += d;
    s2 += d * d;
  } else {
    const double g = dy[off];
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

// grid (C, slices): one block sums channel c over batch slice blockIdx.y
template <int MODE>
__global__ void partials_wide(int N, int C, int HW, int slices, const float* __restrict__ x,
                              const float* __restrict__ dy, const float* __restrict__ mean, double2* part) {
  __shared__ double scratch[32];
  const int c = blockIdx.x, slice = blockIdx.y;
  int n0, n1;
  slice_range(N, slices, slice, n0, n1);
  const double ref = channel_ref<MODE>(x, mean, c, HW);
  double s1 = 0.0, s2 = 0.0;
  for (int n = n0; n < n1; ++n) {
    const int64_t base = (static_cast<int64_t>(n) * C + c) * HW;
    for (int i = threadIdx.x; i < HW; i += blockDim.x) accumulate<MODE>(x, dy, base + i, ref, s1, s2);
  }
  s1 = block_sum(s1, scratch);
  s2 = block_sum(s2, scratch);
  if (threadIdx.x == 0) part[static_cast<int64_t>(c) * slices + slice] = make_double2(s1, s2);
}

// grid (ceil(C / threads), slices): one thread sums channel c over batch slice blockIdx.y
template <int MODE>
__global__ void partials_narrow(int N, int C, int HW, int slices, const float* __restrict__ x,
                                const float* __restrict__ dy, const float* __restrict__ mean, double2* part) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, slice = blockIdx.y;
  if (c >= C) return;
  int n0, n1;
  slice_range(N, slices, slice, n0, n1);
  const double ref = channel_ref<MODE>(x, mean, c, HW);
  double s1 = 0.0, s2 = 0.0;
  for (int n = n0; n < n1; ++n) {
    const int64_t base = (static_cast<int64_t>(n) * C + c) * HW;
    for (int i = 0; i < HW; ++i) accumulate<MODE>(x, dy, base + i, ref, s1, s2);
  }
  part[static_cast<int64_t>(c) * slices + slice] = make_double2(s1, s2);
}

template <int MODE>
void run_partials(int N, int C, int HW, const Plan& p, const float* x, const float* dy, const float* mean,
                  double2* part) {
  if (p.wide)
    launch("batch_norm (channel sums)", partials_wide<MODE>, dim3(C, p.slices), kThreads, 0, N, C, HW, p.slices, x,
           dy, mean, part);
  else
    launch("batch_norm (channel sums)", partials_narrow<MODE>, dim3((C + kThreads - 1) / kThreads, p.slices),
           kThreads, 0, N, C, HW, p.slices, x, dy, mean, part);
}

__device__ __forceinline__ double2 merge(const double2* part, int c, int slices) {
  double s1 = 0.0, s2 = 0.0;
  for (int k = 0; k < slices; ++k) {
    const double2 v = part[static_cast<int64_t>(c) * slices + k];
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

__global__ void train_finalize(int C, int slices, int64_t count, int HW, const double2* part, const float* x,
                               const float* gamma, const float* beta, float* running_mean, float* running_var,
                               float momentum, float eps, float* save_mean, float* save_invstd, float2* ss) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double2 mv = channel_mean_var(part, c, slices, count, HW, x);
  finish_channel(c, count, mv.x, mv.y, gamma, beta, running_mean, running_var, momentum, eps, save_mean, save_invstd,
                 ss);
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

__global__ void moments_finalize(int C, int slices, int64_t count, int HW, const double2* part, const float* x,
                                 float2* moments) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double2 mv = channel_mean_var(part, c, slices, count, HW, x);
  moments[c] = make_float2(static_cast<float>(mv.x), static_cast<float>(mv.y));
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

// per channel: dgamma, dbeta and dx = a dy + b (x - mean) + k, coefficients (a, b, k, mean)
__global__ void backward_finalize(int C, int slices, int64_t count, bool training, const double2* part,
                                  const float* gamma, const float* save_mean, const float* save_invstd, float* dgamma,
                                  float* dbeta, float4* coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double2 s = merge(part, c, slices);
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
  coef[c] = make_float4(static_cast<float>(ga), b, k, save_mean[c]);
}

__global__ void apply_affine(int n, FastDiv HW, FastDiv C, const float* __restrict__ x, const float2* __restrict__ ss,
                             float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int plane, c, nn;
    plane = HW.div(i);
    C.divmod(plane, nn, c);
    const float2 a = ss[c];
    y[i] = __fadd_rn(__fmul_rn(x[i], a.x), a.y);
  }
}

__global__ void apply_backward(int n, FastDiv HW, FastDiv C, const float* __restrict__ dy,
                               const float* __restrict__ x, const float4* __restrict__ coef, float* __restrict__ dx) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int plane, c, nn;
    plane = HW.div(i);
    C.divmod(plane, nn, c);
    const float4 k = coef[c];
    dx[i] = __fadd_rn(__fadd_rn(__fmul_rn(k.x, dy[i]), __fmul_rn(k.y, __fsub_rn(x[i], k.w))), k.z);
  }
}

void checked_dims(int64_t N, int64_t C, int64_t HW, const char* op) { need_int32(N * C * HW, op, "the input"); }

}  // namespace

void batchnorm_forward_train(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                             float* running_mean, float* running_var, float momentum, float eps, float* y,
                             float* save_mean, float* save_invstd, const float* moments) {
  checked_dims(N, C, HW, "cuda batch_norm");
  const int64_t count = N * HW;
  if (count == 0 || C == 0) return;
  const int n = static_cast<int>(N), c = static_cast<int>(C), hw = static_cast<int>(HW);
  Scratch ss(sizeof(float2) * static_cast<size_t>(C));
  if (moments) {  // the conv's epilogue summed x already
    launch("batch_norm", train_finalize_given, (c + kThreads - 1) / kThreads, kThreads, 0, c, count,
           reinterpret_cast<const float2*>(moments), gamma, beta, running_mean, running_var, momentum, eps, save_mean,
           save_invstd, ss.as<float2>());
  } else {
    const Plan p = plan(n, c, hw);
    Scratch part(sizeof(double2) * static_cast<size_t>(C) * p.slices);
    run_partials<0>(n, c, hw, p, x, nullptr, nullptr, part.as<double2>());
    launch("batch_norm", train_finalize, (c + kThreads - 1) / kThreads, kThreads, 0, c, p.slices, count, hw,
           part.as<double2>(), x, gamma, beta, running_mean, running_var, momentum, eps, save_mean, save_invstd,
           ss.as<float2>());
  }
  if (!y) return;  // the statistics only (bn_glu_forward normalises)
  const int total = n * c * hw;
  launch("batch_norm", apply_affine, grid_for(total, kThreads), kThreads, 0, total, FastDiv(hw), FastDiv(c), x,
         static_cast<const float2*>(ss.as<float2>()), y);
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
  run_partials<0>(n, c, hw, p, x, nullptr, nullptr, part.as<double2>());
  launch("channel_moments", moments_finalize, (c + kThreads - 1) / kThreads, kThreads, 0, c, p.slices, count, hw,
         static_cast<const double2*>(part.as<double2>()), x, reinterpret_cast<float2*>(moments));
}

void batchnorm_forward_eval(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y) {
  checked_dims(N, C, HW, "cuda batch_norm");
  if (N * C * HW == 0) return;
  const int n = static_cast<int>(N), c = static_cast<int>(C), hw = static_cast<int>(HW);
  Scratch ss(sizeof(float2) * static_cast<size_t>(C));
  launch("batch_norm", eval_coefficients, (c + kThreads - 1) / kThreads, kThreads, 0, c, gamma, beta, running_mean,
         running_var, eps, ss.as<float2>());
  const int total = n * c * hw;
  launch("batch_norm", apply_affine, grid_for(total, kThreads), kThreads, 0, total, FastDiv(hw), FastDiv(c), x,
         static_cast<const float2*>(ss.as<float2>()), y);
}

void batchnorm_backward(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                        float* dgamma, float* dbeta) {
  checked_dims(N, C, HW, "cuda batch_norm_backward");
  if (C == 0) return;
  const int64_t count = N * HW;
  const int n = static_cast<int>(N), c = static_cast<int>(C), hw = static_cast<int>(HW);
  Plan p{false, 0};
  if (count > 0) p = plan(n, c, hw);
  Scratch part(sizeof(double2) * static_cast<size_t>(C) * std::max(p.slices, 1)),
      coef(sizeof(float4) * static_cast<size_t>(C));
  if (count > 0) run_partials<1>(n, c, hw, p, x, dy, save_mean, part.as<double2>());
  launch("batch_norm_backward", backward_finalize, (c + kThreads - 1) / kThreads, kThreads, 0, c, p.slices, count,
         training, static_cast<const double2*>(part.as<double2>()), gamma, save_mean, save_invstd, dgamma, dbeta,
         coef.as<float4>());
  if (!dx || count == 0) return;
  const int total = n * c * hw;
  launch("batch_norm_backward", apply_backward, grid_for(total, kThreads), kThreads, 0, total, FastDiv(hw),
         FastDiv(c), dy, x, static_cast<const float4*>(coef.as<float4>()), dx);
}

}  // namespace c3::cuda
