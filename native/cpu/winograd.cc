// Winograd F(2x2, 3x3) (Lavin & Gray 2016) for 3x3 stride-1 convolutions. The output is cut into
// 2x2 tiles, each reading a 4x4 input patch; with the transforms
//   U = G g G^T (weights, 4x4),  V = B^T d B (input patch, 4x4),  Y = A^T (U . V) A (2x2 output),
// a tile costs 16 multiplies per (output, input) channel pair instead of 36, and the channel sums
// are 16 GEMMs, one per transform position xi: M[xi] (K x tiles) = U[xi] (K x C) V[xi] (C x tiles).
//   backward-data:   the same forward on dy with the flipped, transposed kernel (pad 2 - pad)
//   backward-weight: dU[xi]^T (C x K) = sum over tiles of V[xi] (C x tiles) (A dY A^T)[xi]^T, dg = G^T dU G
// Tiles are processed in chunks that keep V and M near 8 MiB. The transforms only add, subtract
// and halve, so the error stays within a few float32 ulps of the channel sums (measured in
// native/test/test_speed_paths.cc against the float64 direct conv).
#include "winograd.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../core/threadpool.h"
#include "gemm_kernels.h"

namespace c3::cpu {

namespace {

// Floats of transformed input plus products per tile chunk (8 MiB).
constexpr int64_t kChunkFloats = int64_t(1) << 21;
// Where the 16 GEMMs win (measured on Zen 1, one and two threads): forward and backward-data
// multiply (K x C) by (C x tiles) and need some channels and tiles; backward-weight multiplies
// (C x tiles) by (tiles x K) into 16 C x K products and needs wide layers with tiles to match.
constexpr int64_t kMinChannels = 16, kMinChannelSum = 48, kMinTiles = 64;
constexpr int64_t kMinWeightChannels = 128;

bool initial_enabled() {
  const char* e = std::getenv("C3GAN_WINOGRAD");
  return !(e && std::strcmp(e, "0") == 0);
}

bool& enabled_flag() {
  static bool on = initial_enabled();
  return on;
}

float* scratch(int which, size_t n) {
  thread_local std::vector<float> bufs[3];
  std::vector<float>& v = bufs[which];
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The tile grid of an output of OH x OW: tiles of 2x2, `per_image` of them per image.
struct Tiles {
  int64_t th, tw, per_image, total;
  Tiles(int64_t N, int64_t OH, int64_t OW) : th((OH + 1) / 2), tw((OW + 1) / 2), per_image(th * tw), total(N * th * tw) {}
};

// U[xi, k, c] (16 x K x C) = G g G^T of each 3x3 kernel g = w[k, c] (flipped and transposed
// from w[c, k] when `flip`, for the backward-data pass).
void transform_weights(int64_t K, int64_t C, const float* w, bool flip, float* U) {
  parallel_for(K * C, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t k = i / C, c = i % C;
      float g[3][3];
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s) g[r][s] = flip ? w[((c * K + k) * 3 + 2 - r) * 3 + 2 - s] : w[(i * 3 + r) * 3 + s];
      float t[4][3];
      for (int s = 0; s < 3; ++s) {
        t[0][s] = g[0][s];
        t[1][s] = 0.5f * (g[0][s] + g[1][s] + g[2][s]);
        t[2][s] = 0.5f * (g[0][s] - g[1][s] + g[2][s]);
        t[3][s] = g[2][s];
      }
      for (int a = 0; a < 4; ++a) {
        const float u[4] = {t[a][0], 0.5f * (t[a][0] + t[a][1] + t[a][2]), 0.5f * (t[a][0] - t[a][1] + t[a][2]), t[a][2]};
        for (int b = 0; b < 4; ++b) U[(a * 4 + b) * K * C + i] = u[b];
      }
    }
  });
}

// Per-thread row scratch for the transforms.
float* row_scratch(size_t n) {
  thread_local std::vector<float> v;
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Tile rows (image n, tile row ti, numbered n * th + ti) that tiles [t0, t0 + tc) touch, and the
// tile columns of row `row` inside that range.
struct RowSpan {
  int64_t first, count;
  RowSpan(const Tiles& g, int64_t t0, int64_t tc) : first(t0 / g.tw), count((t0 + tc - 1) / g.tw - t0 / g.tw + 1) {}
};
inline void row_columns(const Tiles& g, int64_t row, int64_t t0, int64_t tc, int64_t& lo, int64_t& hi) {
  lo = std::max<int64_t>(0, t0 - row * g.tw);
  hi = std::min<int64_t>(g.tw, t0 + tc - row * g.tw);
}

// V (16 x C x tc) for tiles [t0, t0 + tc) of a (N, C, H, W) input with padding `pad`:
// V[xi, c, t - t0] = (B^T d B)[xi] of tile t's 4x4 patch d (zero outside the input). Works a
// tile row at a time: B^T over the patch rows for the whole row of patches (plain vector adds),
// then B across each patch's columns.
void transform_input(const float* x, int64_t C, int64_t H, int64_t W, int64_t pad, const Tiles& g, int64_t t0,
                     int64_t tc, float* V) {
  const RowSpan rs(g, t0, tc);
  const int64_t width = 2 * g.tw + 2;  // padded columns the row's patches cover
  parallel_for(C * rs.count, 8, [&](int64_t i0, int64_t i1) {
    float* buf = row_scratch(static_cast<size_t>(8 * width));
    float* d[4] = {buf, buf + width, buf + 2 * width, buf + 3 * width};
    float* t[4] = {buf + 4 * width, buf + 5 * width, buf + 6 * width, buf + 7 * width};
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t c = it / rs.count, row = rs.first + it % rs.count;
      const int64_t n = row / g.th, ti = row % g.th;
      int64_t lo, hi;
      row_columns(g, row, t0, tc, lo, hi);
      const float* plane = x + (n * C + c) * H * W;
      // patch rows, zero-padded: d[i][u] = x[2ti - pad + i][u - pad]
      const int64_t u_lo = std::max<int64_t>(0, pad), u_hi = std::min<int64_t>(width, W + pad);
      for (int i = 0; i < 4; ++i) {
        const int64_t yy = 2 * ti - pad + i;
        float* r = d[i];
        if (yy < 0 || yy >= H || u_lo >= u_hi) {
          std::fill(r, r + width, 0.0f);
          continue;
        }
        std::fill(r, r + u_lo, 0.0f);
        std::memcpy(r + u_lo, plane + yy * W + u_lo - pad, (u_hi - u_lo) * sizeof(float));
        std::fill(r + u_hi, r + width, 0.0f);
      }
      for (int64_t u = 0; u < width; ++u) {
        t[0][u] = d[0][u] - d[2][u];
        t[1][u] = d[1][u] + d[2][u];
        t[2][u] = d[2][u] - d[1][u];
        t[3][u] = d[1][u] - d[3][u];
      }
      const int64_t base = row * g.tw - t0;  // tile column tj is chunk tile base + tj
      for (int i = 0; i < 4; ++i) {
        const float* r = t[i];
        float* v0 = V + (i * 4 + 0) * C * tc + c * tc + base;
        float* v1 = V + (i * 4 + 1) * C * tc + c * tc + base;
        float* v2 = V + (i * 4 + 2) * C * tc + c * tc + base;
        float* v3 = V + (i * 4 + 3) * C * tc + c * tc + base;
        for (int64_t j = lo; j < hi; ++j) {
          const float a = r[2 * j], b = r[2 * j + 1], e = r[2 * j + 2], f = r[2 * j + 3];
          v0[j] = a - e;
          v1[j] = b + e;
          v2[j] = e - b;
          v3[j] = b - f;
        }
      }
    }
  });
}

// y tiles [t0, t0 + tc) = A^T M A (+ bias) from M (16 x K x tc), into (N, K, OH, OW), a tile
// row at a time.
void transform_output(const float* M, int64_t K, int64_t OH, int64_t OW, const Tiles& g, int64_t t0, int64_t tc,
                      const float* bias, float* y) {
  const RowSpan rs(g, t0, tc);
  parallel_for(K * rs.count, 8, [&](int64_t i0, int64_t i1) {
    float* buf = row_scratch(static_cast<size_t>(8 * g.tw));
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t k = it / rs.count, row = rs.first + it % rs.count;
      const int64_t n = row / g.th, ti = row % g.th;
      int64_t lo, hi;
      row_columns(g, row, t0, tc, lo, hi);
      const int64_t base = row * g.tw - t0;
      const float* m[16];
      for (int e = 0; e < 16; ++e) m[e] = M + e * K * tc + k * tc + base;
      // s[a][j] = (A^T m)[a][j] per tile, over the row's tiles
      float* s[2][4];
      for (int a = 0; a < 2; ++a)
        for (int j = 0; j < 4; ++j) s[a][j] = buf + (a * 4 + j) * g.tw;
      for (int j = 0; j < 4; ++j)
        for (int64_t q = lo; q < hi; ++q) {
          s[0][j][q] = m[j][q] + m[4 + j][q] + m[8 + j][q];
          s[1][j][q] = m[4 + j][q] - m[8 + j][q] - m[12 + j][q];
        }
      const float b = bias ? bias[k] : 0.0f;
      float* plane = y + (n * K + k) * OH * OW;
      for (int a = 0; a < 2; ++a) {
        const int64_t oy = 2 * ti + a;
        if (oy >= OH) break;
        float* out = plane + oy * OW;
        for (int64_t q = lo; q < hi; ++q) {
          const float y0 = s[a][0][q] + s[a][1][q] + s[a][2][q] + b, y1 = s[a][1][q] - s[a][2][q] - s[a][3][q] + b;
          out[2 * q] = y0;
          if (2 * q + 1 < OW) out[2 * q + 1] = y1;
        }
      }
    }
  });
}

// Tiles per chunk: V and M together near kChunkFloats, whole rows of the GEMM panels.
int64_t chunk_tiles(int64_t total, int64_t cin, int64_t cout) {
  const int64_t per_tile = 16 * (cin + cout);
  int64_t tc = std::max<int64_t>(64, kChunkFloats / std::max<int64_t>(1, per_tile));
  tc = (tc + 15) / 16 * 16;
  return std::min(tc, total);
}

// y (N, K, OH, OW) = the 3x3 stride-1 correlation of x (N, C, H, W) with padding pad, whose
// transformed kernels are U (16 x K x C).
void winograd_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t pad, int64_t OH, int64_t OW,
                   const float* x, const float* U, const float* bias, float* y) {
  const Tiles g(N, OH, OW);
  const int64_t tc_max = chunk_tiles(g.total, C, K);
  float* V = scratch(0, static_cast<size_t>(16 * C * tc_max));
  float* M = scratch(1, static_cast<size_t>(16 * K * tc_max));
  for (int64_t t0 = 0; t0 < g.total; t0 += tc_max) {
    const int64_t tc = std::min(tc_max, g.total - t0);
    transform_input(x, C, H, W, pad, g, t0, tc, V);
    // one GEMM per thread at a time: 16 independent products balance well over the pool
    parallel_for(16, 1, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e)
        gemm_strided(false, false, K, tc, C, 1.0f, U + e * K * C, C, V + e * C * tc, tc, 0.0f, M + e * K * tc, tc);
    });
    transform_output(M, K, OH, OW, g, t0, tc, bias, y);
  }
}

}  // namespace

void set_winograd_enabled(bool on) { enabled_flag() = on; }
bool winograd_enabled() { return enabled_flag(); }

bool winograd_applies(const Conv2dParams& p, ConvPass pass) {
  if (!enabled_flag() || p.R != 3 || p.S != 3 || p.stride != 1 || p.pad > 2 || p.N <= 0 || p.OH <= 0 || p.OW <= 0)
    return false;
  const int64_t tiles = Tiles(p.N, p.OH, p.OW).total;
  const int64_t lo = std::min(p.C, p.K), hi = std::max(p.C, p.K);
  if (pass == ConvPass::BackwardWeight) return lo >= kMinWeightChannels && 2 * tiles >= hi;
  // backward-data's GEMMs are K deep (the forward's, C): a shallow product loses to the others
  if (pass == ConvPass::BackwardData && p.K < 2 * kMinChannels) return false;
  return lo >= kMinChannels && p.C + p.K >= kMinChannelSum && tiles >= kMinTiles;
}

void winograd_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  float* U = scratch(2, static_cast<size_t>(16 * p.K * p.C));
  transform_weights(p.K, p.C, w, false, U);
  winograd_conv(p.N, p.C, p.H, p.W, p.K, p.pad, p.OH, p.OW, x, U, bias, y);
}

void winograd_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  // dx = dy correlated with w[k, c] rotated by 180 degrees, summed over k, padding 2 - pad
  float* U = scratch(2, static_cast<size_t>(16 * p.K * p.C));
  transform_weights(p.C, p.K, w, true, U);
  winograd_conv(p.N, p.K, p.OH, p.OW, p.C, 2 - p.pad, p.H, p.W, dy, U, nullptr, dx);
}

void winograd_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const Tiles g(p.N, p.OH, p.OW);
  const int64_t C = p.C, K = p.K;
  const int64_t tc_max = chunk_tiles(g.total, C, K);
  float* V = scratch(0, static_cast<size_t>(16 * C * tc_max));   // (16, C, tiles)
  float* Y = scratch(1, static_cast<size_t>(16 * K * tc_max));   // (16, tiles, K)
  float* dU = scratch(2, static_cast<size_t>(16 * C * K));       // (16, C, K): dU transposed
  for (int64_t t0 = 0; t0 < g.total; t0 += tc_max) {
    const int64_t tc = std::min(tc_max, g.total - t0);
    transform_input(x, C, p.H, p.W, p.pad, g, t0, tc, V);
    // Y = A dY A^T of each 2x2 dy tile (zero past the output's edge), channels innermost
    parallel_for(tc, 16, [&](int64_t j0, int64_t j1) {
      for (int64_t tt = j0; tt < j1; ++tt) {
        const int64_t t = t0 + tt, n = t / g.per_image, rem = t % g.per_image;
        const int64_t oy = 2 * (rem / g.tw), ox = 2 * (rem % g.tw);
        const bool down = oy + 1 < p.OH, right = ox + 1 < p.OW;
        const float* base = dy + n * K * p.OH * p.OW + oy * p.OW + ox;
        float* out = Y + tt * K;
        for (int64_t k = 0; k < K; ++k) {
          const float* q = base + k * p.OH * p.OW;
          const float d00 = q[0], d01 = right ? q[1] : 0.0f;
          const float d10 = down ? q[p.OW] : 0.0f, d11 = down && right ? q[p.OW + 1] : 0.0f;
          const float r[4][2] = {{d00, d01}, {d00 + d10, d01 + d11}, {d00 - d10, d01 - d11}, {-d10, -d11}};
          for (int a = 0; a < 4; ++a) {
            out[(a * 4 + 0) * tc * K + k] = r[a][0];
            out[(a * 4 + 1) * tc * K + k] = r[a][0] + r[a][1];
            out[(a * 4 + 2) * tc * K + k] = r[a][0] - r[a][1];
            out[(a * 4 + 3) * tc * K + k] = -r[a][1];
          }
        }
      }
    });
    // dU^T[xi] (C x K) (+)= V[xi] (C x tc) Y[xi] (tc x K)
    const float beta = t0 == 0 ? 0.0f : 1.0f;
    parallel_for(16, 1, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e)
        gemm_strided(false, false, C, K, tc, 1.0f, V + e * C * tc, tc, Y + e * tc * K, K, beta, dU + e * C * K, K);
    });
  }
  // dg = G^T dU G for every (k, c)
  parallel_for(K * C, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t k = i / C, c = i % C;
      float u[4][4];
      for (int e = 0; e < 16; ++e) u[e / 4][e % 4] = dU[e * C * K + c * K + k];
      float t[3][4];
      for (int j = 0; j < 4; ++j) {
        t[0][j] = u[0][j] + 0.5f * (u[1][j] + u[2][j]);
        t[1][j] = 0.5f * (u[1][j] - u[2][j]);
        t[2][j] = 0.5f * (u[1][j] + u[2][j]) + u[3][j];
      }
      float* d = dw + i * 9;
      for (int r = 0; r < 3; ++r) {
        d[r * 3 + 0] = t[r][0] + 0.5f * (t[r][1] + t[r][2]);
        d[r * 3 + 1] = 0.5f * (t[r][1] - t[r][2]);
        d[r * 3 + 2] = 0.5f * (t[r][1] + t[r][2]) + t[r][3];
      }
    }
  });
}

}  // namespace c3::cpu
