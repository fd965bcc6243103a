// affine_grid and bilinear grid_sample (zero padding, align_corners=True) on the device, with
// the CPU's float arithmetic for source positions and weights (as PyTorch's grid_sampler_2d),
// written with _rn intrinsics so the forward matches the CPU bit for bit.
// grid_sample's dx is a scatter. To keep it deterministic, contributions are accumulated as
// 64-bit fixed point with integer atomics (integer addition is associative): per (n, c) plane the
// scale is 2^e with |sum| * 2^e < 2^62 guaranteed by max|dy| * OH * OW, which leaves about 2^-48
// of max|dy| per unit -- finer than float. A plane whose dy holds Inf or NaN falls back to float
// atomics (its result is non-finite anyway).
#include <cuda_runtime.h>

#include <cmath>

#include "grid_sample.cuh"
#include "hd.cuh"
#include "reduce.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ double base_coord(int i, int n) {
  return n > 1 ? -1.0 + 2.0 * static_cast<double>(i) / (n - 1) : 0.0;
}

struct Taps {
  float ix, iy;
  int x0, y0;
  float nw, ne, sw, se;
  bool any;
};

__device__ __forceinline__ Taps taps_at(float gx, float gy, int H, int W) {
  Taps t;
  t.ix = __fmul_rn(__fdiv_rn(__fadd_rn(gx, 1.0f), 2.0f), static_cast<float>(W - 1));
  t.iy = __fmul_rn(__fdiv_rn(__fadd_rn(gy, 1.0f), 2.0f), static_cast<float>(H - 1));
  // beyond this band every neighbour is out of range; it also keeps the int conversion defined
  t.any = t.ix > -2.0f && t.ix < static_cast<float>(W + 1) && t.iy > -2.0f && t.iy < static_cast<float>(H + 1);
  if (!t.any) return t;
  const float fx = floorf(t.ix), fy = floorf(t.iy);
  t.x0 = static_cast<int>(fx);
  t.y0 = static_cast<int>(fy);
  const float wx1 = __fsub_rn(t.ix, fx), wx0 = __fsub_rn(__fadd_rn(fx, 1.0f), t.ix);
  const float wy1 = __fsub_rn(t.iy, fy), wy0 = __fsub_rn(__fadd_rn(fy, 1.0f), t.iy);
  t.nw = __fmul_rn(wx0, wy0);
  t.ne = __fmul_rn(wx1, wy0);
  t.sw = __fmul_rn(wx0, wy1);
  t.se = __fmul_rn(wx1, wy1);
  return t;
}

__device__ __forceinline__ bool inside(int y, int x, int H, int W) { return y >= 0 && y < H && x >= 0 && x < W; }

__global__ void affine_grid_forward_kernel(int n, int H, int W, const float* __restrict__ theta,
                                           float* __restrict__ grid) {
  for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
    const int j = idx % W, rest = idx / W, i = rest % H, b = rest / H;
    const float* t = theta + b * 6;
    const double x = base_coord(j, W), y = base_coord(i, H);
    grid[2 * static_cast<int64_t>(idx)] =
        static_cast<float>(__dadd_rn(__dadd_rn(__dmul_rn(t[0], x), __dmul_rn(t[1], y)), t[2]));
    grid[2 * static_cast<int64_t>(idx) + 1] =
        static_cast<float>(__dadd_rn(__dadd_rn(__dmul_rn(t[3], x), __dmul_rn(t[4], y)), t[5]));
  }
}

// one block per sample: the six sums over its H x W grid
__global__ void affine_grid_backward_kernel(int H, int W, const float* __restrict__ dgrid, float* __restrict__ dtheta) {
  __shared__ double scratch[32];
  const int b = blockIdx.x;
  const float* g = dgrid + static_cast<int64_t>(b) * H * W * 2;
  double acc[6] = {0, 0, 0, 0, 0, 0};
  for (int k = threadIdx.x; k < H * W; k += blockDim.x) {
    const double x = base_coord(k % W, W), y = base_coord(k / W, H);
    const double gx = g[2 * k], gy = g[2 * k + 1];
    acc[0] += gx * x, acc[1] += gx * y, acc[2] += gx;
    acc[3] += gy * x, acc[4] += gy * y, acc[5] += gy;
  }
C3_UNROLL
  for (int q = 0; q < 6; ++q) {
    const double s = block_sum(acc[q], scratch);
    if (threadIdx.x == 0) dtheta[b * 6 + q] = static_cast<float>(s);
  }
}

// thread per (n, oh, ow), looping over channels
__global__ void grid_sample_forward_kernel(int n, int C, int H, int W, int OHW, const float* __restrict__ x,
                                           const float* __restrict__ grid, float* __restrict__ y) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
    const int b = idx / OHW, k = idx - b * OHW;
    const Taps t = taps_at(grid[2 * static_cast<int64_t>(idx)], grid[2 * static_cast<int64_t>(idx) + 1], H, W);
    float* out = y + static_cast<int64_t>(b) * C * OHW + k;
    if (!t.any) {
      for (int c = 0; c < C; ++c) out[static_cast<int64_t>(c) * OHW] = 0.0f;
      continue;
    }
    const bool in_nw = inside(t.y0, t.x0, H, W), in_ne = inside(t.y0, t.x0 + 1, H, W);
    const bool in_sw = inside(t.y0 + 1, t.x0, H, W), in_se = inside(t.y0 + 1, t.x0 + 1, H, W);
    const int64_t o = static_cast<int64_t>(t.y0) * W + t.x0;
    for (int c = 0; c < C; ++c) {
      const float* p = x + (static_cast<int64_t>(b) * C + c) * plane;
      float v = 0.0f;
      if (in_nw) v = __fadd_rn(v, __fmul_rn(p[o], t.nw));
      if (in_ne) v = __fadd_rn(v, __fmul_rn(p[o + 1], t.ne));
      if (in_sw) v = __fadd_rn(v, __fmul_rn(p[o + W], t.sw));
      if (in_se) v = __fadd_rn(v, __fmul_rn(p[o + W + 1], t.se));
      out[static_cast<int64_t>(c) * OHW] = v;
    }
  }
}

// per (n, c) plane of dy: the fixed-point scale (0 marks a plane with Inf or NaN)
__global__ void plane_scale_kernel(int OHW, const float* __restrict__ dy, double* __restrict__ scale) {
  __shared__ double scratch[32];
  const int pl = blockIdx.x;
  const float* d = dy + static_cast<int64_t>(pl) * OHW;
  double m = 0.0;
  bool finite = true;
  for (int k = threadIdx.x; k < OHW; k += blockDim.x) {
    const float v = d[k];
    if (!isfinite(v)) finite = false;
    m = fmax(m, static_cast<double>(fabsf(v)));
  }
  m = block_max(finite ? m : INFINITY, scratch);
  if (threadIdx.x != 0) return;
  if (!isfinite(m)) {
    scale[pl] = 0.0;
  } else if (m == 0.0) {
    scale[pl] = 1.0;
  } else {
    int e;
    frexp(m * static_cast<double>(OHW), &e);  // m * OHW < 2^e
    scale[pl] = ldexp(1.0, 62 - e);
  }
}

__device__ __forceinline__ void scatter(unsigned long long* acc, float* dx, int64_t i, double scale, float w, float g) {
  if (scale != 0.0) {
    const long long q = __double2ll_rn(static_cast<double>(w) * static_cast<double>(g) * scale);
    atomicAdd(acc + i, static_cast<unsigned long long>(q));
  } else {
    atomicAdd(dx + i, w * g);
  }
}

// thread per (n, oh, ow): the taps once, then every channel's contributions
__global__ void grid_sample_dx_kernel(int n, int C, int H, int W, int OHW, const float* __restrict__ dy,
                                      const float* __restrict__ grid, const double* __restrict__ scale,
                                      unsigned long long* __restrict__ acc, float* __restrict__ dx) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
    const int b = idx / OHW, k = idx - b * OHW;
    const Taps t = taps_at(grid[2 * static_cast<int64_t>(idx)], grid[2 * static_cast<int64_t>(idx) + 1], H, W);
    if (!t.any) continue;
    const bool in_nw = inside(t.y0, t.x0, H, W), in_ne = inside(t.y0, t.x0 + 1, H, W);
    const bool in_sw = inside(t.y0 + 1, t.x0, H, W), in_se = inside(t.y0 + 1, t.x0 + 1, H, W);
    const int64_t o = static_cast<int64_t>(t.y0) * W + t.x0;
    for (int c = 0; c < C; ++c) {
      const int64_t pl = static_cast<int64_t>(b) * C + c;
      const float g = dy[pl * OHW + k];
      const double s = scale[pl];
      const int64_t base = pl * plane + o;
      if (in_nw) scatter(acc, dx, base, s, t.nw, g);
      if (in_ne) scatter(acc, dx, base + 1, s, t.ne, g);
      if (in_sw) scatter(acc, dx, base + W, s, t.sw, g);
      if (in_se) scatter(acc, dx, base + W + 1, s, t.se, g);
    }
  }
}

__global__ void fixed_to_float_kernel(int64_t n, int64_t plane, const unsigned long long* __restrict__ acc,
                                      const double* __restrict__ scale, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double s = scale[i / plane];
    if (s != 0.0) dx[i] = static_cast<float>(static_cast<double>(static_cast<long long>(acc[i])) / s);
  }
}

// thread per (n, oh, ow): the derivative along ix and iy summed over channels, in double
__global__ void grid_sample_dgrid_kernel(int n, int C, int H, int W, int OHW, const float* __restrict__ dy,
                                         const float* __restrict__ x, const float* __restrict__ grid,
                                         float* __restrict__ dgrid) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const float mult_x = static_cast<float>(W - 1) / 2.0f, mult_y = static_cast<float>(H - 1) / 2.0f;
  for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
    const int b = idx / OHW, k = idx - b * OHW;
    const Taps t = taps_at(grid[2 * static_cast<int64_t>(idx)], grid[2 * static_cast<int64_t>(idx) + 1], H, W);
    float* dg = dgrid + 2 * static_cast<int64_t>(idx);
    if (!t.any) {
      dg[0] = 0.0f, dg[1] = 0.0f;
      continue;
    }
    const bool in_nw = inside(t.y0, t.x0, H, W), in_ne = inside(t.y0, t.x0 + 1, H, W);
    const bool in_sw = inside(t.y0 + 1, t.x0, H, W), in_se = inside(t.y0 + 1, t.x0 + 1, H, W);
    const int64_t o = static_cast<int64_t>(t.y0) * W + t.x0;
    // distances to the far neighbours, as PyTorch writes them
    const float dx_e = __fsub_rn(static_cast<float>(t.x0 + 1), t.ix), dx_w = __fsub_rn(t.ix, static_cast<float>(t.x0));
    const float dy_s = __fsub_rn(static_cast<float>(t.y0 + 1), t.iy), dy_n = __fsub_rn(t.iy, static_cast<float>(t.y0));
    double gix = 0.0, giy = 0.0;
    for (int c = 0; c < C; ++c) {
      const float* p = x + (static_cast<int64_t>(b) * C + c) * plane;
      const double go = dy[(static_cast<int64_t>(b) * C + c) * OHW + k];
      if (in_nw) {
        const double v = __dmul_rn(p[o], go);
        gix = __dsub_rn(gix, __dmul_rn(v, dy_s)), giy = __dsub_rn(giy, __dmul_rn(v, dx_e));
      }
      if (in_ne) {
        const double v = __dmul_rn(p[o + 1], go);
        gix = __dadd_rn(gix, __dmul_rn(v, dy_s)), giy = __dsub_rn(giy, __dmul_rn(v, dx_w));
      }
      if (in_sw) {
        const double v = __dmul_rn(p[o + W], go);
        gix = __dsub_rn(gix, __dmul_rn(v, dy_n)), giy = __dadd_rn(giy, __dmul_rn(v, dx_e));
      }
      if (in_se) {
        const double v = __dmul_rn(p[o + W + 1], go);
        gix = __dadd_rn(gix, __dmul_rn(v, dy_n)), giy = __dadd_rn(giy, __dmul_rn(v, dx_w));
      }
    }
    dg[0] = static_cast<float>(gix * mult_x);
    dg[1] = static_cast<float>(giy * mult_y);
  }
}

}  // namespace

void affine_grid_forward(int64_t N, int64_t H, int64_t W, const float* theta, float* grid) {
  const int64_t n = N * H * W;
  if (n == 0) return;
  need_int32(2 * n, "cuda affine_grid", "the grid");
  launch("affine_grid", affine_grid_forward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         static_cast<int>(H), static_cast<int>(W), theta, grid);
}

void affine_grid_backward(int64_t N, int64_t H, int64_t W, const float* dgrid, float* dtheta) {
  if (N == 0) return;
  need_int32(2 * N * H * W, "cuda affine_grid_backward", "dgrid");
  launch("affine_grid_backward", affine_grid_backward_kernel, static_cast<unsigned>(N), kThreads, 0,
         static_cast<int>(H), static_cast<int>(W), dgrid, dtheta);
}

void grid_sample_forward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* x,
                         const float* grid, float* y) {
  const int64_t n = N * OH * OW;
  if (n == 0 || C == 0) return;
  need_int32(N * C * H * W, "cuda grid_sample", "the input");
  need_int32(N * C * OH * OW, "cuda grid_sample", "the output");
  need_int32(2 * n, "cuda grid_sample", "the grid");
  launch("grid_sample", grid_sample_forward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         static_cast<int>(C), static_cast<int>(H), static_cast<int>(W), static_cast<int>(OH * OW), x, grid, y);
}

void grid_sample_backward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* dy,
                          const float* x, const float* grid, float* dx, float* dgrid) {
  const int64_t n = N * OH * OW;
  need_int32(N * C * H * W, "cuda grid_sample_backward", "the input");
  need_int32(N * C * OH * OW, "cuda grid_sample_backward", "dy");
  need_int32(2 * n, "cuda grid_sample_backward", "the grid");
  const int ni = static_cast<int>(n), c = static_cast<int>(C), h = static_cast<int>(H), w = static_cast<int>(W);
  const int ohw = static_cast<int>(OH * OW);
  if (dx) {
    const int64_t nx = N * C * H * W, planes = N * C;
    if (nx > 0) {
      check_cuda(cudaMemsetAsync(dx, 0, sizeof(float) * static_cast<size_t>(nx), stream()), "grid_sample_backward");
      if (planes > 0 && ohw > 0) {
        Scratch acc(sizeof(unsigned long long) * static_cast<size_t>(nx)), scale(sizeof(double) * planes);
        check_cuda(cudaMemsetAsync(acc.as<void>(), 0, sizeof(unsigned long long) * static_cast<size_t>(nx), stream()),
                   "grid_sample_backward");
        launch("grid_sample_backward", plane_scale_kernel, static_cast<unsigned>(planes), kThreads, 0, ohw, dy,
               scale.as<double>());
        launch("grid_sample_backward", grid_sample_dx_kernel, grid_for(n, kThreads), kThreads, 0, ni, c, h, w, ohw, dy,
               grid, static_cast<const double*>(scale.as<double>()), acc.as<unsigned long long>(), dx);
        launch("grid_sample_backward", fixed_to_float_kernel, grid_for(nx, kThreads), kThreads, 0, nx, H * W,
               static_cast<const unsigned long long*>(acc.as<unsigned long long>()),
               static_cast<const double*>(scale.as<double>()), dx);
      }
    }
  }
  if (dgrid && n > 0)
    launch("grid_sample_backward", grid_sample_dgrid_kernel, grid_for(n, kThreads), kThreads, 0, ni, c, h, w, ohw, dy, x,
           grid, dgrid);
}

}  // namespace c3::cuda
