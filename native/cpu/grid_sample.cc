// affine_grid and bilinear grid_sample (zero padding, align_corners=True) on the CPU, following
// PyTorch's grid_sampler_2d (forward and backward) including its float arithmetic for the source
// index and the weights, and its rule that only in-range neighbours contribute.
#include <algorithm>
#include <cmath>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {
namespace {

// align_corners=True base coordinate: linspace(-1, 1, n), or 0 when n == 1
inline double base_coord(int64_t i, int64_t n) { return n > 1 ? -1.0 + 2.0 * static_cast<double>(i) / (n - 1) : 0.0; }

// The four bilinear taps of one grid point.
struct Taps {
  float ix, iy;    // source position in pixels
  int64_t x0, y0;  // north-west neighbour
  float nw, ne, sw, se;
  bool any;  // false when no neighbour can be in range (also for NaN coordinates)
};

inline Taps taps_at(float gx, float gy, int64_t H, int64_t W) {
  Taps t;
  t.ix = (gx + 1.0f) / 2.0f * static_cast<float>(W - 1);
  t.iy = (gy + 1.0f) / 2.0f * static_cast<float>(H - 1);
  // beyond this band every neighbour is out of range; it also keeps the int conversion defined
  t.any = t.ix > -2.0f && t.ix < static_cast<float>(W + 1) && t.iy > -2.0f && t.iy < static_cast<float>(H + 1);
  if (!t.any) return t;
  const float fx = std::floor(t.ix), fy = std::floor(t.iy);
  t.x0 = static_cast<int64_t>(fx);
  t.y0 = static_cast<int64_t>(fy);
  const float wx1 = t.ix - fx, wx0 = (fx + 1.0f) - t.ix;
  const float wy1 = t.iy - fy, wy0 = (fy + 1.0f) - t.iy;
  t.nw = wx0 * wy0;
  t.ne = wx1 * wy0;
  t.sw = wx0 * wy1;
  t.se = wx1 * wy1;
  return t;
}

inline bool inside(int64_t y, int64_t x, int64_t H, int64_t W) { return y >= 0 && y < H && x >= 0 && x < W; }

int64_t grain_for(int64_t work_per_item) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(work_per_item, 1)); }

}  // namespace

void affine_grid_forward(int64_t N, int64_t H, int64_t W, const float* theta, float* grid) {
  parallel_for(N * H, grain_for(W), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / H, i = r % H;
      const float* t = theta + n * 6;
      const double y = base_coord(i, H);
      float* g = grid + r * W * 2;
      for (int64_t j = 0; j < W; ++j) {
        const double x = base_coord(j, W);
        g[2 * j] = static_cast<float>(t[0] * x + t[1] * y + t[2]);
        g[2 * j + 1] = static_cast<float>(t[3] * x + t[4] * y + t[5]);
      }
    }
  });
}

void affine_grid_backward(int64_t N, int64_t H, int64_t W, const float* dgrid, float* dtheta) {
  parallel_for(N, grain_for(H * W * 2), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      double acc[6] = {0, 0, 0, 0, 0, 0};
      const float* g = dgrid + n * H * W * 2;
      for (int64_t i = 0; i < H; ++i) {
        const double y = base_coord(i, H);
        for (int64_t j = 0; j < W; ++j) {
          const double x = base_coord(j, W);
          const double gx = g[(i * W + j) * 2], gy = g[(i * W + j) * 2 + 1];
          acc[0] += gx * x, acc[1] += gx * y, acc[2] += gx;
          acc[3] += gy * x, acc[4] += gy * y, acc[5] += gy;
        }
      }
      for (int k = 0; k < 6; ++k) dtheta[n * 6 + k] = static_cast<float>(acc[k]);
    }
  });
}

void grid_sample_forward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* x,
                         const float* grid, float* y) {
  const int64_t plane = H * W, oplane = OH * OW;
  parallel_for(N * OH, grain_for(OW * C * 4), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / OH, oh = r % OH;
      const float* g = grid + r * OW * 2;
      for (int64_t ow = 0; ow < OW; ++ow) {
        const Taps t = taps_at(g[2 * ow], g[2 * ow + 1], H, W);
        float* out = y + n * C * oplane + oh * OW + ow;
        if (!t.any) {
          for (int64_t c = 0; c < C; ++c) out[c * oplane] = 0.0f;
          continue;
        }
        const bool in_nw = inside(t.y0, t.x0, H, W), in_ne = inside(t.y0, t.x0 + 1, H, W);
        const bool in_sw = inside(t.y0 + 1, t.x0, H, W), in_se = inside(t.y0 + 1, t.x0 + 1, H, W);
        const int64_t o = t.y0 * W + t.x0;
        for (int64_t c = 0; c < C; ++c) {
          const float* p = x + (n * C + c) * plane;
          float v = 0.0f;
          if (in_nw) v += p[o] * t.nw;
          if (in_ne) v += p[o + 1] * t.ne;
          if (in_sw) v += p[o + W] * t.sw;
          if (in_se) v += p[o + W + 1] * t.se;
          out[c * oplane] = v;
        }
      }
    }
  });
}

// dx: every (n, c) plane is scattered into by one task only. dgrid: per output point, the
// derivative of the interpolation along ix and iy summed over channels, times d(ix)/d(gx) =
// (W-1)/2 and d(iy)/d(gy) = (H-1)/2; neighbours out of range contribute nothing, as in PyTorch.
void grid_sample_backward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* dy,
                          const float* x, const float* grid, float* dx, float* dgrid) {
  const int64_t plane = H * W, oplane = OH * OW;
  if (dx) {
    parallel_for(N * C, grain_for(oplane * 4), [&](int64_t p0, int64_t p1) {
      for (int64_t pl = p0; pl < p1; ++pl) {
        const int64_t n = pl / C;
        float* d = dx + pl * plane;
        std::fill(d, d + plane, 0.0f);
        const float* gout = dy + pl * oplane;
        const float* g = grid + n * oplane * 2;
        for (int64_t k = 0; k < oplane; ++k) {
          const Taps t = taps_at(g[2 * k], g[2 * k + 1], H, W);
          if (!t.any) continue;
          const float go = gout[k];
          const int64_t o = t.y0 * W + t.x0;
          if (inside(t.y0, t.x0, H, W)) d[o] += t.nw * go;
          if (inside(t.y0, t.x0 + 1, H, W)) d[o + 1] += t.ne * go;
          if (inside(t.y0 + 1, t.x0, H, W)) d[o + W] += t.sw * go;
          if (inside(t.y0 + 1, t.x0 + 1, H, W)) d[o + W + 1] += t.se * go;
        }
      }
    });
  }
  if (dgrid) {
    const float mult_x = static_cast<float>(W - 1) / 2.0f, mult_y = static_cast<float>(H - 1) / 2.0f;
    parallel_for(N * OH, grain_for(OW * C * 4), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / OH, oh = r % OH;
        const float* g = grid + r * OW * 2;
        float* dg = dgrid + r * OW * 2;
        for (int64_t ow = 0; ow < OW; ++ow) {
          const Taps t = taps_at(g[2 * ow], g[2 * ow + 1], H, W);
          if (!t.any) {
            dg[2 * ow] = 0.0f, dg[2 * ow + 1] = 0.0f;
            continue;
          }
          const bool in_nw = inside(t.y0, t.x0, H, W), in_ne = inside(t.y0, t.x0 + 1, H, W);
          const bool in_sw = inside(t.y0 + 1, t.x0, H, W), in_se = inside(t.y0 + 1, t.x0 + 1, H, W);
          const int64_t o = t.y0 * W + t.x0;
          // distances to the far neighbours, as PyTorch writes them
          const float dx_e = static_cast<float>(t.x0 + 1) - t.ix, dx_w = t.ix - static_cast<float>(t.x0);
          const float dy_s = static_cast<float>(t.y0 + 1) - t.iy, dy_n = t.iy - static_cast<float>(t.y0);
          double gix = 0, giy = 0;
          for (int64_t c = 0; c < C; ++c) {
            const float* p = x + (n * C + c) * plane;
            const double go = dy[(n * C + c) * oplane + oh * OW + ow];
            if (in_nw) {
              const double v = p[o] * go;
              gix -= v * dy_s, giy -= v * dx_e;
            }
            if (in_ne) {
              const double v = p[o + 1] * go;
              gix += v * dy_s, giy -= v * dx_w;
            }
            if (in_sw) {
              const double v = p[o + W] * go;
              gix -= v * dy_n, giy += v * dx_e;
            }
            if (in_se) {
              const double v = p[o + W + 1] * go;
              gix += v * dy_n, giy += v * dx_w;
            }
          }
          dg[2 * ow] = static_cast<float>(gix * mult_x);
          dg[2 * ow + 1] = static_cast<float>(giy * mult_y);
        }
      }
    });
  }
}

}  // namespace c3::cpu
