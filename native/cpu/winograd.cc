// Winograd F(m x m, 3x3) (Lavin & Gray 2016) for 3x3 stride-1 convolutions, m = 2 or 4. The
// output is cut into m x m tiles, each reading an a x a input patch (a = m + 2); with
//   U = G g G^T (weights, a x a),  V = B^T d B (input patch, a x a),  Y = A^T (U . V) A (m x m),
// a tile costs a^2 multiplies per (output, input) channel pair instead of 9 m^2 (16 vs 36 for
// m = 2, 36 vs 144 for m = 4), and the channel sums are a^2 GEMMs, one per transform position xi:
// M[xi] (K x tiles) = U[xi] (K x C) V[xi] (C x tiles).
//   backward-data:   the same forward on dy with the flipped, transposed kernel (pad 2 - pad)
//   backward-weight: dU[xi] (K x C) = sum over tiles of (A dY A^T)[xi] (K x tiles) V[xi]^T, dg = G^T dU G
// Tiles are processed in chunks that keep V and M near 8 MiB. F(2x2) only adds, subtracts and
// halves (errors within a few ulps of the direct sums, ~6e-7 of the output's scale); F(4x4) has
// transform entries up to 8 and 1/24 and loses about a decimal digit (~5e-6), so it is chosen
// only where it saves at least 30% of F(2x2)'s products (maps of whole 4x4 tiles: 4x4, 8x8, 16x16,
// ...) with 64 tiles or more. native/test/test_speed_paths.cc measures both against the float64
// direct conv.
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
// Where the GEMMs win (measured on Zen 1, one and two threads): forward and backward-data
// multiply (K x C) by (C x tiles) and need some channels and tiles; backward-weight multiplies
// (C x tiles) by (tiles x K) into C x K products and needs wide layers with tiles to match.
constexpr int64_t kMinChannels = 16, kMinDepth = 32, kMinChannelSum = 48, kMinTiles = 64;
constexpr int64_t kMinWeightChannels = 128;

bool initial_enabled() {
  const char* e = std::getenv("C3GAN_WINOGRAD");
  return !(e && std::strcmp(e, "0") == 0);
}

bool& enabled_flag() {
  static bool on = initial_enabled();
  return on;
}

int& forced_tile() {
  static int m = 0;
  return m;
}

float* scratch(int which, size_t n) {
  thread_local std::vector<float> bufs[3];
  std::vector<float>& v = bufs[which];
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The transform matrices of F(m x m, 3x3), interpolation points 0, +-1 (and +-2 for m = 4).
template <int M>
struct Fm;
template <>
struct Fm<2> {
  static constexpr int A = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};
template <>
struct Fm<4> {
  static constexpr int A = 6;
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

// The tile grid of an output of OH x OW: tiles of m x m, `per_image` of them per image.
struct Tiles {
  int64_t th, tw, per_image, total;
  Tiles(int64_t N, int64_t OH, int64_t OW, int64_t m)
      : th((OH + m - 1) / m), tw((OW + m - 1) / m), per_image(th * tw), total(N * th * tw) {}
};

// F(4x4) where the maps are whole 4x4 tiles and its 36 products per tile cost less than F(2x2)'s
// 4 x 16 would by a margin (at 6x6 maps they tie), with enough tiles for the GEMMs; else F(2x2).
int tile_size(int64_t N, int64_t OH, int64_t OW) {
  if (forced_tile()) return forced_tile();
  const Tiles t2(N, OH, OW, 2), t4(N, OH, OW, 4);
  return 36 * t4.total * 10 <= 16 * t2.total * 7 && t4.total >= kMinTiles ? 4 : 2;
}

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

bool use_avx2() {
  static const bool ok = avx2_micro_kernel() != nullptr;
  return ok;
}

// Runs body(i0, i1) over [0, n) on the pool through the AVX2 or the baseline instantiation.
#ifdef C3_WINO_AVX2
#define C3_DISPATCH(fn, ...)                                  \
  do {                                                        \
    if (use_avx2()) fn##_avx2<M>(__VA_ARGS__);                \
    else fn##_base<M>(__VA_ARGS__);                           \
  } while (0)
#define C3_VARIANTS(fn, params, args)                                                     \
  template <int M>                                                                        \
  __attribute__((target("avx2,fma"))) void fn##_avx2 params { fn##_body<M> args; }        \
  template <int M>                                                                        \
  void fn##_base params { fn##_body<M> args; }
#else
#define C3_DISPATCH(fn, ...) fn##_base<M>(__VA_ARGS__)
#define C3_VARIANTS(fn, params, args) \
  template <int M>                    \
  void fn##_base params { fn##_body<M> args; }
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

// ---- weights: U[xi, k, c] (a^2 x K x C) = G g G^T of each 3x3 kernel g = w[k, c] (flipped and
// transposed from w[c, k] when `flip`, for the backward-data pass); items of 8 kernels
struct WeightJob {
  int64_t K, C;
  const float* w;
  bool flip;
  float* U;
};

template <int M>
C3_INLINE void weights_body(const WeightJob& j, int64_t i0, int64_t i1) {
  using F = Fm<M>;
  constexpr int A = F::A;
  const int64_t KC = j.K * j.C;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t first = item * L, lanes = std::min<int64_t>(L, KC - first);
    float g[9][L] = {};
    for (int64_t l = 0; l < lanes; ++l) {
      const int64_t i = first + l, k = i / j.C, c = i % j.C;
      for (int e = 0; e < 9; ++e) g[e][l] = j.flip ? j.w[(c * j.K + k) * 9 + 8 - e] : j.w[i * 9 + e];
    }
    float t[A][3][L];
    for (int a = 0; a < A; ++a)
      for (int s = 0; s < 3; ++s)
        for (int l = 0; l < L; ++l) t[a][s][l] = F::G[a][0] * g[s][l] + F::G[a][1] * g[3 + s][l] + F::G[a][2] * g[6 + s][l];
    for (int a = 0; a < A; ++a)
      for (int b = 0; b < A; ++b) {
        float u[L];
        for (int l = 0; l < L; ++l) u[l] = t[a][0][l] * F::G[b][0] + t[a][1][l] * F::G[b][1] + t[a][2][l] * F::G[b][2];
        copy_lanes(j.U + (a * A + b) * KC + first, u, lanes);
      }
  }
}
C3_VARIANTS(weights, (const WeightJob& j, int64_t i0, int64_t i1), (j, i0, i1))

template <int M>
void transform_weights(int64_t K, int64_t C, const float* w, bool flip, float* U) {
  const WeightJob job{K, C, w, flip, U};
  parallel_for((K * C + L - 1) / L, 32, [&](int64_t i0, int64_t i1) { C3_DISPATCH(weights, job, i0, i1); });
}

// ---- input: V (a^2 x C x tc) for tiles [t0, t0 + tc) of a (N, C, H, W) input with padding pad:
// V[xi, c, t - t0] = (B^T d B)[xi] of tile t's a x a patch d (zero outside the input); items of
// (channel, 8 tiles)
struct InputJob {
  const float* x;
  int64_t C, H, W, pad;
  const Tiles* g;
  int64_t t0, tc, groups;
  float* V;
};

template <int M>
C3_INLINE void input_body(const InputJob& j, int64_t i0, int64_t i1) {
  using F = Fm<M>;
  constexpr int A = F::A;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t c = item / j.groups, first = (item % j.groups) * L, lanes = std::min<int64_t>(L, j.tc - first);
    float d[A * A][L] = {};
    for (int64_t l = 0; l < lanes; ++l) {
      int64_t n, oy, ox;
      tile_origin(*j.g, j.t0 + first + l, M, n, oy, ox);
      const int64_t y0 = oy - j.pad, x0 = ox - j.pad;
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

template <int M>
void transform_input(const float* x, int64_t C, int64_t H, int64_t W, int64_t pad, const Tiles& g, int64_t t0,
                     int64_t tc, float* V) {
  const InputJob job{x, C, H, W, pad, &g, t0, tc, (tc + L - 1) / L, V};
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

template <int M>
C3_INLINE void output_body(const OutputJob& j, int64_t i0, int64_t i1) {
  using F = Fm<M>;
  constexpr int A = F::A;
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

template <int M>
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

template <int M>
C3_INLINE void grad_body(const GradJob& j, int64_t i0, int64_t i1) {
  using F = Fm<M>;
  constexpr int A = F::A;
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

template <int M>
C3_INLINE void kernel_grad_body(const KernelGradJob& j, int64_t i0, int64_t i1) {
  using F = Fm<M>;
  constexpr int A = F::A;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t first = item * L, lanes = std::min<int64_t>(L, j.KC - first);
    float u[A * A][L] = {};
    for (int e = 0; e < A * A; ++e) copy_lanes(u[e], j.dU + e * j.KC + first, lanes);
    float t[3][A][L];  // G^T u
    for (int r = 0; r < 3; ++r)
      for (int q = 0; q < A; ++q)
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int a = 0; a < A; ++a) v += F::G[a][r] * u[a * A + q][l];
          t[r][q][l] = v;
        }
    float out[9][L];
    for (int r = 0; r < 3; ++r)
      for (int s = 0; s < 3; ++s)
        for (int l = 0; l < L; ++l) {
          float v = 0;
          for (int q = 0; q < A; ++q) v += t[r][q][l] * F::G[q][s];
          out[r * 3 + s][l] = v;
        }
    for (int64_t l = 0; l < lanes; ++l)
      for (int e = 0; e < 9; ++e) j.dw[(first + l) * 9 + e] = out[e][l];
  }
}
C3_VARIANTS(kernel_grad, (const KernelGradJob& j, int64_t i0, int64_t i1), (j, i0, i1))

// Tiles per chunk: V and M together near kChunkFloats.
int64_t chunk_tiles(int64_t total, int64_t cin, int64_t cout, int a) {
  const int64_t per_tile = int64_t(a) * a * (cin + cout);
  int64_t tc = std::max<int64_t>(64, kChunkFloats / std::max<int64_t>(1, per_tile));
  tc = (tc + 15) / 16 * 16;
  return std::min(tc, total);
}

// y (N, K, OH, OW) = the 3x3 stride-1 correlation of x (N, C, H, W) with padding pad, whose
// transformed kernels are U (a^2 x K x C).
template <int M>
void winograd_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t pad, int64_t OH, int64_t OW,
                   const float* x, const float* U, const float* bias, float* y) {
  constexpr int A = Fm<M>::A;
  const Tiles g(N, OH, OW, M);
  const int64_t tc_max = chunk_tiles(g.total, C, K, A);
  float* V = scratch(0, static_cast<size_t>(A * A * C * tc_max));
  float* Mx = scratch(1, static_cast<size_t>(A * A * K * tc_max));
  for (int64_t t0 = 0; t0 < g.total; t0 += tc_max) {
    const int64_t tc = std::min(tc_max, g.total - t0);
    transform_input<M>(x, C, H, W, pad, g, t0, tc, V);
    // one GEMM per thread at a time: a^2 independent products balance well over the pool
    parallel_for(A * A, 1, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e)
        gemm_strided(false, false, K, tc, C, 1.0f, U + e * K * C, C, V + e * C * tc, tc, 0.0f, Mx + e * K * tc, tc);
    });
    transform_output<M>(Mx, K, OH, OW, g, t0, tc, bias, y);
  }
}

template <int M>
void forward_m(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  constexpr int A = Fm<M>::A;
  float* U = scratch(2, static_cast<size_t>(A * A * p.K * p.C));
  transform_weights<M>(p.K, p.C, w, false, U);
  winograd_conv<M>(p.N, p.C, p.H, p.W, p.K, p.pad, p.OH, p.OW, x, U, bias, y);
}

template <int M>
void backward_data_m(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  // dx = dy correlated with w[k, c] rotated by 180 degrees, summed over k, padding 2 - pad
  constexpr int A = Fm<M>::A;
  float* U = scratch(2, static_cast<size_t>(A * A * p.K * p.C));
  transform_weights<M>(p.C, p.K, w, true, U);
  winograd_conv<M>(p.N, p.K, p.OH, p.OW, p.C, 2 - p.pad, p.H, p.W, dy, U, nullptr, dx);
}

template <int M>
void backward_weight_m(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  constexpr int A = Fm<M>::A;
  const Tiles g(p.N, p.OH, p.OW, M);
  const int64_t C = p.C, K = p.K;
  const int64_t tc_max = chunk_tiles(g.total, C, K, A);
  float* V = scratch(0, static_cast<size_t>(A * A * C * tc_max));   // (a^2, C, tiles)
  float* Y = scratch(1, static_cast<size_t>(A * A * K * tc_max));   // (a^2, K, tiles)
  float* dU = scratch(2, static_cast<size_t>(A * A * K * C));       // (a^2, K, C)
  for (int64_t t0 = 0; t0 < g.total; t0 += tc_max) {
    const int64_t tc = std::min(tc_max, g.total - t0);
    transform_input<M>(x, C, p.H, p.W, p.pad, g, t0, tc, V);
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

}  // namespace

void set_winograd_enabled(bool on) { enabled_flag() = on; }
bool winograd_enabled() { return enabled_flag(); }
void set_winograd_tile(int m) { forced_tile() = m == 2 || m == 4 ? m : 0; }

bool winograd_applies(const Conv2dParams& p, ConvPass pass) {
  if (!enabled_flag() || p.R != 3 || p.S != 3 || p.stride != 1 || p.pad > 2 || p.N <= 0 || p.OH <= 0 || p.OW <= 0)
    return false;
  const int64_t tiles = Tiles(p.N, p.OH, p.OW, 2).total;
  const int64_t lo = std::min(p.C, p.K), hi = std::max(p.C, p.K);
  if (pass == ConvPass::BackwardWeight) return lo >= kMinWeightChannels && 2 * tiles >= hi;
  // the GEMMs are C deep in the forward, K deep in backward-data: a shallow product loses
  const int64_t depth = pass == ConvPass::BackwardData ? p.K : p.C;
  return depth >= kMinDepth && lo >= kMinChannels && p.C + p.K >= kMinChannelSum && tiles >= kMinTiles;
}

void winograd_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  if (tile_size(p.N, p.OH, p.OW) == 4) return forward_m<4>(p, x, w, bias, y);
  forward_m<2>(p, x, w, bias, y);
}

void winograd_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (tile_size(p.N, p.H, p.W) == 4) return backward_data_m<4>(p, dy, w, dx);
  backward_data_m<2>(p, dy, w, dx);
}

void winograd_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  if (tile_size(p.N, p.OH, p.OW) == 4) return backward_weight_m<4>(p, dy, x, dw);
  backward_weight_m<2>(p, dy, x, dw);
}

}  // namespace c3::cpu
