// The 3x3 conv of a nearest-2x-upsampled input on the device, without the upsampled tensor and
// without its wasted taps. Each output row Y = 2i - 1 + u (u = 0..3) of the upsampled conv sees
// x's row i through the kernel rows R(u) = {2}, {1, 2}, {0, 1}, {0}, so with the tap-summed
// weight G[c, k, u, v] = sum over r in R(u), s in R(v) of w[k, c, r, s] the up-conv is the
// adjoint of one ordinary conv q: x' (N, K, 2H, 2W) -> (N, C, H, W), kernel G (C, K, 4, 4),
// stride 2, padding 1. So
//   forward          y  = q's backward data applied to x (its four stride phases, 2x2 taps each),
//   backward data    dx = q's forward applied to dy,
//   backward weight  dw = q's backward weight (dy as q's input, x as its output gradient),
//                         folded back from G's taps onto w's,
// all on the tile GEMM: 16 multiply-adds per (c, k, x pixel) where the conv of the upsampled map
// takes 36. (The CPU runs the same phases in native/cpu/conv_up.cc.)
#include <cuda_runtime.h>

#include "batchnorm.cuh"
#include "conv2d.cuh"
#include "conv_moments.cuh"
#include "conv_up.cuh"
#include "runtime.cuh"
#include "tile_gemm.cuh"

namespace c3::cuda {

namespace {

using namespace gemmop;

// kernel rows of w summed into row u of G: [lo, hi]
__device__ __forceinline__ int tap_lo(int u) { return u == 0 ? 2 : u == 1 ? 1 : 0; }
__device__ __forceinline__ int tap_hi(int u) { return u == 0 ? 2 : 3 - u; }

// G (C, K, 4, 4) from w (K, C, 3, 3)
__global__ void tap_summed_weight(int K, int C, const float* __restrict__ w, float* __restrict__ g) {
  const int n = C * K * 16;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int v = i & 3, u = (i >> 2) & 3, ck = i >> 4, k = ck % K, c = ck / K;
    const float* wk = w + (static_cast<int64_t>(k) * C + c) * 9;
    float s = 0.0f;
    for (int r = tap_lo(u); r <= tap_hi(u); ++r)
      for (int q = tap_lo(v); q <= tap_hi(v); ++q) s += wk[r * 3 + q];
    g[i] = s;
  }
}

// dw (K, C, 3, 3) from dG (C, K, 4, 4): kernel row r is in R(u) for u = 2 - r and 3 - r
__global__ void fold_weight_grad(int K, int C, const float* __restrict__ dg, float* __restrict__ dw) {
  const int n = K * C * 9;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int rs = i % 9, kc = i / 9, c = kc % C, k = kc / C, r = rs / 3, q = rs % 3;
    const float* d = dg + (static_cast<int64_t>(c) * K + k) * 16;
    float s = 0.0f;
    for (int u = 2 - r; u <= 3 - r; ++u)
      for (int v = 2 - q; v <= 3 - q; ++v) s += d[u * 4 + v];
    dw[i] = s;
  }
}

// q: the conv whose adjoint the up-conv is; p describes the 3x3 conv on x (x (N, C, H, W),
// y (N, K, 2H, 2W))
Conv2dParams adjoint_conv(const Conv2dParams& p) {
  return Conv2dParams{p.N, p.K, 2 * p.H, 2 * p.W, p.C, 4, 4, p.H, p.W, 2, 1};
}

void check_sizes(const Conv2dParams& p, const char* op) {
  need_int32(p.N * p.C * p.H * p.W, op, "the input");
  need_int32(p.N * p.K * 4 * p.H * p.W, op, "the output");
  need_int32(p.K * p.C * 16, op, "the weight");
}

// G in stream-ordered scratch
struct TapSummed {
  Scratch g;
  TapSummed(const Conv2dParams& p, const float* w) : g(sizeof(float) * static_cast<size_t>(p.C * p.K * 16)) {
    const int n = static_cast<int>(p.C * p.K * 16);
    launch("conv2d_up (tap-summed weight)", tap_summed_weight, grid_for(n, 256), 256, 0, static_cast<int>(p.K),
           static_cast<int>(p.C), w, g.as<float>());
  }
};

}  // namespace

void conv2d_up_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                       float* moments) {
  const char* op = "conv2d_up_forward";
  check_sizes(p, op);
  const TapSummed g(p, w);
  const ConvShape s = conv_shape(adjoint_conv(p));
  // q's backward data, one stride phase (2x2 taps) at a time, each an output phase of y
  const int cols = s.N * s.OH * s.OW;  // columns of each phase's product
  const int tiles = (cols + tile::kTileCols - 1) / tile::kTileCols;
  // its four phases have the same sizes (q's input is 2H x 2W, stride 2): one launch
  TileMoments tm(moments ? 4 : 0, tiles, s.C);
  const BwddPhases phases = bwdd_phases(s);
  if (phases.count == 0) {  // an empty map
    if (moments) channel_moments(p.N, p.K, 4 * p.H * p.W, y, moments);
    return;
  }
  c3::check(phases.uniform && phases.count == 4, op, "expected four stride phases of one size");
  const Phase& ph = phases.ph[0];
  tile::Phases<4> ps{};
  for (int i = 0; i < 4; ++i) ps.at[i] = phase_at(phases.ph[i]);
  ps.moments_stride = moments ? tm.group(1) - tm.group(0) : 0;
  ConvBwdDOut out = conv_bwdd_out(s, ph, y);
  out.bias = bias;
  const bool got = tile::tile_gemm_phases(op, conv_bwdd_w(s, ph, g.g.as<float>()), conv_bwdd_dy(s, ph, x), out, ps,
                                          s.K * ph.Rp * ph.Sp, moments ? tm.group(0) : nullptr);
  if (!moments) return;
  if (got) tm.merge(op, cols, reinterpret_cast<float2*>(moments));
  else channel_moments(p.N, p.K, 4 * p.H * p.W, y, moments);
}

void conv2d_up_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  check_sizes(p, "conv2d_up_backward_data");
  const TapSummed g(p, w);
  conv2d_forward(adjoint_conv(p), dy, g.g.as<float>(), nullptr, dx, nullptr);
}

void conv2d_up_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  check_sizes(p, "conv2d_up_backward_weight");
  Scratch dg(sizeof(float) * static_cast<size_t>(p.C * p.K * 16));
  conv2d_backward_weight(adjoint_conv(p), x, dy, dg.as<float>());
  const int n = static_cast<int>(p.K * p.C * 9);
  launch("conv2d_up_backward_weight (fold)", fold_weight_grad, grid_for(n, 256), 256, 0, static_cast<int>(p.K),
         static_cast<int>(p.C), static_cast<const float*>(dg.as<float>()), dw);
}

}  // namespace c3::cuda
