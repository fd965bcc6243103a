// The Winograd machinery shared by the 3x3 stride-1 path (winograd.cc) and the 4x4 stride-2
// path (winograd_s2.cc): the F(m x m, r x r) transform matrices, the tile grid, the transforms of
// weights, inputs, outputs and output gradients (8 tiles or kernels at a time, AVX2 or baseline
// copies chosen at run time) and the three passes of a stride-1 r x r convolution built on them:
//   U = G g G^T (weights, a x a),  V = B^T d B (input patch, a x a),  Y = A^T (U . V) A (m x m),
// with the channel sums as a^2 GEMMs on the blocked engine, one per transform position xi:
// M[xi] (K x tiles) = U[xi] (K x C) V[xi] (C x tiles).
//   backward-data:   the same forward on dy with the flipped, transposed kernel (pad r - 1 - pad)
//   backward-weight: dU[xi] (K x C) = sum over tiles of (A dY A^T)[xi] (K x tiles) V[xi]^T, dg = G^T dU G
// Tiles are processed in chunks that keep V and M near 8 MiB.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../core/backend.h"
#include "../core/threadpool.h"
#include "gemm_kernels.h"
#include "kernels.h"

namespace c3::cpu::wino {

// Floats of transformed input plus products per tile chunk (8 MiB).
constexpr int64_t kChunkFloats = int64_t(1) << 21;

inline float* scratch(int which, size_t n) {
  thread_local std::vector<float> bufs[3];
  std::vector<float>& v = bufs[which];
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The transform matrices of F(m x m, r x r): a = m + r - 1 transform positions per axis.
// F(m x m, 3x3): interpolation points 0, +-1 (and +-2 for m = 4).
struct F23 {
  static constexpr int M = 2, R = 3, A = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};
struct F43 {
  static constexpr int M = 4, R = 3, A = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float G[6][3] = {{1.0f / 4, 0, 0},
                                    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                                    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                                    {1.0f / 24, 1.0f / 12, 1.0f / 6},
                                    {1.0f / 24, -1.0f / 12, 1.0f / 6},
                                    {0, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

// F(2x2, 2x2), points 0, 1 and infinity: y0 = (d0 - d1) g0 + d1 (g0 + g1), y1 = d1 (g0 + g1) +
// (d2 - d1) g1. Integer entries only: the sums are as exact as the direct ones. The 4x4 stride-2
// convs run on it as 2x2 stride-1 convs over their four input phases (winograd_s2.cc).
struct F22 {
  static constexpr int M = 2, R = 2, A = 3;
  static constexpr float BT[3][3] = {{1, -1, 0}, {0, 1, 0}, {0, -1, 1}};
  static constexpr float G[3][2] = {{1, 0}, {1, 1}, {0, 1}};
  static constexpr float AT[2][3] = {{1, 1, 0}, {0, 1, 1}};
};

// The tile grid of an output of OH x OW: tiles of m x m, `per_image` of them per image.
struct Tiles {
  int64_t th, tw, per_image, total;
  Tiles(int64_t N, int64_t OH, int64_t OW, int64_t m)
      : th((OH + m - 1) / m), tw((OW + m - 1) / m), per_image(th * tw), total(N * th * tw) {}
};

// The transforms work on 8 tiles (or 8 kernels) at once: the scalar loads of their patches go
// into lane-minor buffers, and the arithmetic runs over the 8 lanes in fixed-size loops that the
// compiler turns into one vector op each (AVX2 in the *_avx2 copies, chosen at run time, else
// the baseline SIMD). That works the same on 4x4 maps (one tile per image) as on large ones.
constexpr int L = 8;

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define C3_WINO_AVX2 1
#define C3_INLINE inline __attribute__((always_inline))
#else
#define C3_INLINE inline
#endif

inline bool use_avx2() {
  static const bool ok = avx2_micro_kernel() != nullptr;
  return ok;
}

// Runs body(i0, i1) over [0, n) on the pool through the AVX2 or the baseline instantiation.
#ifdef C3_WINO_AVX2
#define C3_DISPATCH(fn, ...)                                  \
  do {                                                        \
    if (use_avx2()) fn##_avx2<F>(__VA_ARGS__);                \
    else fn##_base<F>(__VA_ARGS__);                           \
  } while (0)
#define C3_VARIANTS(fn, params, args)                                                     \
  template <class F>                                                                        \
  __attribute__((target("avx2,fma"))) void fn##_avx2 params { fn##_body<F> args; }        \
  template <class F>                                                                        \
  void fn##_base params { fn##_body<F> args; }
#else
#define C3_DISPATCH(fn, ...) fn##_base<F>(__VA_ARGS__)
#define C3_VARIANTS(fn, params, args) \
  template <class F>                    \
  void fn##_base params { fn##_body<F> args; }
#endif

// Copies `lanes` (<= L) floats: a fixed-size copy (one vector move) for a full group, a loop for
// the last part group; a library call per group would cost more than the group's arithmetic.
C3_INLINE void copy_lanes(float* dst, const float* src, int64_t lanes) {
  if (lanes == L) {
    std::memcpy(dst, src, L * sizeof(float));
    return;
  }
  for (int64_t l = 0; l < lanes; ++l) dst[l] = src[l];
}

// The position of tile t in its image: image n, top-left output (oy, ox).
inline void tile_origin(const Tiles& g, int64_t t, int64_t m, int64_t& n, int64_t& oy, int64_t& ox) {
  n = t / g.per_image;
  const int64_t rem = t % g.per_image;
  oy = m * (rem / g.tw);
  ox = m * (rem % g.tw);
}

// ---- weights: U[xi, k, c] (a^2 x K x C) = G g G^T of each r x r kernel g = w[k, c] (flipped and
// transposed from w[c, k] when `flip`, for the backward-data pass); items of 8 kernels
struct WeightJob {
  int64_t K, C;
  const float* w;
  bool flip;
  float* U;
};

template <class F>
C3_INLINE void weights_body(const WeightJob& j, int64_t i0, int64_t i1) {
  constexpr int A = F::A, R = F::R;
  const int64_t KC = j.K * j.C;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t first = item * L, lanes = std::min<int64_t>(L, KC - first);
    float g[R * R][L] = {};
    for (int64_t l = 0; l < lanes; ++l) {
      const int64_t i = first + l, k = i / j.C, c = i % j.C;
      for (int e = 0; e < R * R; ++e) g[e][l] = j.flip ? j.w[(c * j.K + k) * R * R + R * R - 1 - e] : j.w[i * R * R + e];
    }
    float t[A][R][L];  // G g
    for (int a = 0; a < A; ++a)
      for (int s = 0; s < R; ++s)
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int r = 0; r < R; ++r) v += F::G[a][r] * g[r * R + s][l];
          t[a][s][l] = v;
        }
    for (int a = 0; a < A; ++a)
      for (int b = 0; b < A; ++b) {
        float u[L];
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int s = 0; s < R; ++s) v += t[a][s][l] * F::G[b][s];
          u[l] = v;
        }
        copy_lanes(j.U + (a * A + b) * KC + first, u, lanes);
      }
  }
}
C3_VARIANTS(weights, (const WeightJob& j, int64_t i0, int64_t i1), (j, i0, i1))

template <class F>
void transform_weights(int64_t K, int64_t C, const float* w, bool flip, float* U) {
  const WeightJob job{K, C, w, flip, U};
  parallel_for((K * C + L - 1) / L, 32, [&](int64_t i0, int64_t i1) { C3_DISPATCH(weights, job, i0, i1); });
}

// ---- input: V (a^2 x C x tc) for tiles [t0, t0 + tc) of a (N, C, H, W) input padded by pad_y
// rows above and pad_x columns left (and with zeros wherever a patch leaves the input):
// V[xi, c, t - t0] = (B^T d B)[xi] of tile t's a x a patch d (zero outside the input); items of
// (channel, 8 tiles)
struct InputJob {
  const float* x;
  int64_t C, H, W, pad_y, pad_x;
  const Tiles* g;
  int64_t t0, tc, groups;
  float* V;
};

template <class F>
C3_INLINE void input_body(const InputJob& j, int64_t i0, int64_t i1) {
  constexpr int A = F::A, M = F::M;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t c = item / j.groups, first = (item % j.groups) * L, lanes = std::min<int64_t>(L, j.tc - first);
    float d[A * A][L] = {};
    for (int64_t l = 0; l < lanes; ++l) {
      int64_t n, oy, ox;
      tile_origin(*j.g, j.t0 + first + l, M, n, oy, ox);
      const int64_t y0 = oy - j.pad_y, x0 = ox - j.pad_x;
      const float* plane = j.x + (n * j.C + c) * j.H * j.W;
      if (y0 >= 0 && x0 >= 0 && y0 + A <= j.H && x0 + A <= j.W) {
        for (int a = 0; a < A; ++a)
          for (int b = 0; b < A; ++b) d[a * A + b][l] = plane[(y0 + a) * j.W + x0 + b];
      } else {
        for (int a = 0; a < A; ++a) {
          const int64_t yy = y0 + a;
          if (yy < 0 || yy >= j.H) continue;
          for (int b = 0; b < A; ++b) {
            const int64_t xx = x0 + b;
            if (xx >= 0 && xx < j.W) d[a * A + b][l] = plane[yy * j.W + xx];
          }
        }
      }
    }
    float t[A][A][L];  // B^T d
    for (int a = 0; a < A; ++a)
      for (int b = 0; b < A; ++b)
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int i = 0; i < A; ++i) v += F::BT[a][i] * d[i * A + b][l];
          t[a][b][l] = v;
        }
    for (int a = 0; a < A; ++a)
      for (int b = 0; b < A; ++b) {
        float v[L];
        for (int l = 0; l < L; ++l) {
          float s = 0;
          for (int i = 0; i < A; ++i) s += t[a][i][l] * F::BT[b][i];
          v[l] = s;
        }
        copy_lanes(j.V + (a * A + b) * j.C * j.tc + c * j.tc + first, v, lanes);
      }
  }
}
C3_VARIANTS(input, (const InputJob& j, int64_t i0, int64_t i1), (j, i0, i1))

template <class F>
void transform_input(const float* x, int64_t C, int64_t H, int64_t W, int64_t pad_y, int64_t pad_x, const Tiles& g, int64_t t0,
                     int64_t tc, float* V) {
  const InputJob job{x, C, H, W, pad_y, pad_x, &g, t0, tc, (tc + L - 1) / L, V};
  parallel_for(C * job.groups, 4, [&](int64_t i0, int64_t i1) { C3_DISPATCH(input, job, i0, i1); });
}

// ---- output: y tiles [t0, t0 + tc) = A^T M A (+ bias) from M (a^2 x K x tc), into
// (N, K, OH, OW); items of (channel, 8 tiles)
struct OutputJob {
  const float* Mx;
  int64_t K, OH, OW;
  const Tiles* g;
  int64_t t0, tc, groups;
  const float* bias;
  float* y;
};

template <class F>
C3_INLINE void output_body(const OutputJob& j, int64_t i0, int64_t i1) {
  constexpr int A = F::A, M = F::M;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t k = item / j.groups, first = (item % j.groups) * L, lanes = std::min<int64_t>(L, j.tc - first);
    float m[A * A][L] = {};
    for (int e = 0; e < A * A; ++e) copy_lanes(m[e], j.Mx + e * j.K * j.tc + k * j.tc + first, lanes);
    float s[M][A][L];  // A^T m
    for (int a = 0; a < M; ++a)
      for (int b = 0; b < A; ++b)
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int i = 0; i < A; ++i) v += F::AT[a][i] * m[i * A + b][l];
          s[a][b][l] = v;
        }
    const float bias = j.bias ? j.bias[k] : 0.0f;
    float out[M][M][L];
    for (int a = 0; a < M; ++a)
      for (int b = 0; b < M; ++b)
        for (int l = 0; l < L; ++l) {
          float v = bias;
          for (int i = 0; i < A; ++i) v += s[a][i][l] * F::AT[b][i];
          out[a][b][l] = v;
        }
    for (int64_t l = 0; l < lanes; ++l) {
      int64_t n, oy, ox;
      tile_origin(*j.g, j.t0 + first + l, M, n, oy, ox);
      float* plane = j.y + (n * j.K + k) * j.OH * j.OW;
      const int64_t rows = std::min<int64_t>(M, j.OH - oy), cols = std::min<int64_t>(M, j.OW - ox);
      for (int64_t a = 0; a < rows; ++a)
        for (int64_t b = 0; b < cols; ++b) plane[(oy + a) * j.OW + ox + b] = out[a][b][l];
    }
  }
}
C3_VARIANTS(output, (const OutputJob& j, int64_t i0, int64_t i1), (j, i0, i1))

template <class F>
void transform_output(const float* Mx, int64_t K, int64_t OH, int64_t OW, const Tiles& g, int64_t t0, int64_t tc,
                      const float* bias, float* y) {
  const OutputJob job{Mx, K, OH, OW, &g, t0, tc, (tc + L - 1) / L, bias, y};
  parallel_for(K * job.groups, 4, [&](int64_t i0, int64_t i1) { C3_DISPATCH(output, job, i0, i1); });
}

// ---- backward-weight: Y (a^2 x K x tc) = A dY A^T of each m x m dy tile (zero past the output's
// edge); items of (channel, 8 tiles)
struct GradJob {
  const float* dy;
  int64_t K, OH, OW;
  const Tiles* g;
  int64_t t0, tc, groups;
  float* Y;
};

template <class F>
C3_INLINE void grad_body(const GradJob& j, int64_t i0, int64_t i1) {
  constexpr int A = F::A, M = F::M;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t k = item / j.groups, first = (item % j.groups) * L, lanes = std::min<int64_t>(L, j.tc - first);
    float d[M * M][L] = {};
    for (int64_t l = 0; l < lanes; ++l) {
      int64_t n, oy, ox;
      tile_origin(*j.g, j.t0 + first + l, M, n, oy, ox);
      const float* plane = j.dy + (n * j.K + k) * j.OH * j.OW;
      const int64_t rows = std::min<int64_t>(M, j.OH - oy), cols = std::min<int64_t>(M, j.OW - ox);
      for (int64_t a = 0; a < rows; ++a)
        for (int64_t b = 0; b < cols; ++b) d[a * M + b][l] = plane[(oy + a) * j.OW + ox + b];
    }
    float r[A][M][L];  // A d: r[i][b] = sum_a AT[a][i] d[a][b]
    for (int i = 0; i < A; ++i)
      for (int b = 0; b < M; ++b)
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int a = 0; a < M; ++a) v += F::AT[a][i] * d[a * M + b][l];
          r[i][b][l] = v;
        }
    for (int i = 0; i < A; ++i)
      for (int q = 0; q < A; ++q) {
        float v[L];
        for (int l = 0; l < L; ++l) {
          float s = 0;
          for (int b = 0; b < M; ++b) s += r[i][b][l] * F::AT[b][q];
          v[l] = s;
        }
        copy_lanes(j.Y + (i * A + q) * j.K * j.tc + k * j.tc + first, v, lanes);
      }
  }
}
C3_VARIANTS(grad, (const GradJob& j, int64_t i0, int64_t i1), (j, i0, i1))

// ---- dg = G^T dU G from dU (a^2 x K x C) into dw (K, C, 3, 3); items of 8 kernels
struct KernelGradJob {
  const float* dU;
  int64_t KC;
  float* dw;
};

template <class F>
C3_INLINE void kernel_grad_body(const KernelGradJob& j, int64_t i0, int64_t i1) {
  constexpr int A = F::A, R = F::R;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t first = item * L, lanes = std::min<int64_t>(L, j.KC - first);
    float u[A * A][L] = {};
    for (int e = 0; e < A * A; ++e) copy_lanes(u[e], j.dU + e * j.KC + first, lanes);
    float t[R][A][L];  // G^T u
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < A; ++q)
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int a = 0; a < A; ++a) v += F::G[a][r] * u[a * A + q][l];
          t[r][q][l] = v;
        }
    float out[R * R][L];
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < R; ++s)
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int q = 0; q < A; ++q) v += t[r][q][l] * F::G[q][s];
          out[r * R + s][l] = v;
        }
    for (int64_t l = 0; l < lanes; ++l)
      for (int e = 0; e < R * R; ++e) j.dw[(first + l) * R * R + e] = out[e][l];
  }
}
C3_VARIANTS(kernel_grad, (const KernelGradJob& j, int64_t i0, int64_t i1), (j, i0, i1))

// Tiles per chunk: V and M together near kChunkFloats.
inline int64_t chunk_tiles(int64_t total, int64_t cin, int64_t cout, int a) {
  const int64_t per_tile = int64_t(a) * a * (cin + cout);
  int64_t tc = std::max<int64_t>(64, kChunkFloats / std::max<int64_t>(1, per_tile));
  tc = (tc + 15) / 16 * 16;
  return std::min(tc, total);
}

// y (N, K, OH, OW) = the r x r stride-1 correlation of x (N, C, H, W) padded by pad_y rows above
// and pad_x columns left (zeros past the other edges as the output size needs), whose
// transformed kernels are U (a^2 x K x C).
template <class F>
void winograd_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t pad_y, int64_t pad_x, int64_t OH, int64_t OW,
                   const float* x, const float* U, const float* bias, float* y) {
  constexpr int A = F::A, M = F::M;
  const Tiles g(N, OH, OW, M);
  const int64_t tc_max = chunk_tiles(g.total, C, K, A);
  float* V = scratch(0, static_cast<size_t>(A * A * C * tc_max));
  float* Mx = scratch(1, static_cast<size_t>(A * A * K * tc_max));
  for (int64_t t0 = 0; t0 < g.total; t0 += tc_max) {
    const int64_t tc = std::min(tc_max, g.total - t0);
    transform_input<F>(x, C, H, W, pad_y, pad_x, g, t0, tc, V);
    // one GEMM per thread at a time: a^2 independent products balance well over the pool
    parallel_for(A * A, 1, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e)
        gemm_strided(false, false, K, tc, C, 1.0f, U + e * K * C, C, V + e * C * tc, tc, 0.0f, Mx + e * K * tc, tc);
    });
    transform_output<F>(Mx, K, OH, OW, g, t0, tc, bias, y);
  }
}

template <class F>
void forward_m(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  constexpr int A = F::A;
  float* U = scratch(2, static_cast<size_t>(A * A * p.K * p.C));
  transform_weights<F>(p.K, p.C, w, false, U);
  winograd_conv<F>(p.N, p.C, p.H, p.W, p.K, p.pad, p.pad, p.OH, p.OW, x, U, bias, y);
}

template <class F>
void backward_data_m(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  // dx = dy correlated with w[k, c] rotated by 180 degrees, summed over k, padding r - 1 - pad
  constexpr int A = F::A;
  float* U = scratch(2, static_cast<size_t>(A * A * p.K * p.C));
  transform_weights<F>(p.C, p.K, w, true, U);
  winograd_conv<F>(p.N, p.K, p.OH, p.OW, p.C, F::R - 1 - p.pad, F::R - 1 - p.pad, p.H, p.W, dy, U, nullptr, dx);
}

template <class F>
void backward_weight_m(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  constexpr int A = F::A, M = F::M;
  const Tiles g(p.N, p.OH, p.OW, M);
  const int64_t C = p.C, K = p.K;
  const int64_t tc_max = chunk_tiles(g.total, C, K, A);
  float* V = scratch(0, static_cast<size_t>(A * A * C * tc_max));   // (a^2, C, tiles)
  float* Y = scratch(1, static_cast<size_t>(A * A * K * tc_max));   // (a^2, K, tiles)
  float* dU = scratch(2, static_cast<size_t>(A * A * K * C));       // (a^2, K, C)
  for (int64_t t0 = 0; t0 < g.total; t0 += tc_max) {
    const int64_t tc = std::min(tc_max, g.total - t0);
    transform_input<F>(x, C, p.H, p.W, p.pad, p.pad, g, t0, tc, V);
    const GradJob job{dy, K, p.OH, p.OW, &g, t0, tc, (tc + L - 1) / L, Y};
    parallel_for(K * job.groups, 4, [&](int64_t i0, int64_t i1) { C3_DISPATCH(grad, job, i0, i1); });
    // dU[xi] (K x C) (+)= Y[xi] (K x tc) V[xi]^T
    const float beta = t0 == 0 ? 0.0f : 1.0f;
    parallel_for(A * A, 1, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e)
        gemm_strided(false, true, K, C, tc, 1.0f, Y + e * K * tc, tc, V + e * C * tc, tc, beta, dU + e * K * C, C);
    });
  }
  const KernelGradJob job{dU, K * C, dw};
  parallel_for((K * C + L - 1) / L, 32, [&](int64_t i0, int64_t i1) { C3_DISPATCH(kernel_grad, job, i0, i1); });
}

}  // namespace c3::cpu::wino
