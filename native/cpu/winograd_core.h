// The Winograd machinery shared by the 3x3 stride-1 path (winograd.cc) and the 4x4 stride-2
// path (winograd_s2.cc): the F(m x m, r x r) transform matrices, the tile grid, the transforms of
// weights, inputs, outputs and output gradients (one tile of 8 images, or 8 kernels, at a time;
// AVX2 or baseline copies chosen at run time) and the three passes of a stride-1 r x r convolution built on them:
//   U = G g G^T (weights, a x a),  V = B^T d B (input patch, a x a),  Y = A^T (U . V) A (m x m),
// with the channel sums as a^2 GEMMs on the blocked engine, one per transform position xi:
// M[xi] (K x tiles) = U[xi] (K x C) V[xi] (C x tiles).
//   backward-data:   the same forward on dy with the flipped, transposed kernel (pad r - 1 - pad)
//   backward-weight: dU[xi] (K x C) = sum over tiles of (A dY A^T)[xi] (K x tiles) V[xi]^T, dg = G^T dU G
// Tiles are processed in chunks of whole 8-image blocks that keep V and M near 8 MiB.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../core/backend.h"
#include "../core/threadpool.h"
#include "gemm_kernels.h"
#include "kernels.h"
#include "moments.h"
#include "winograd_cache.h"
#include "thread_scratch.h"

namespace c3::cpu::wino {

// Floats of transformed input plus products per tile chunk (8 MiB).
constexpr int64_t kChunkFloats = int64_t(1) << 21;

inline float* scratch(int which, size_t n) {
  thread_local ScratchBuffer bufs[3];
  return bufs[which].get(n);
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

// F(4x4, 2x2), points 0, 1, -1, 2 and infinity: 25 multiplies per 4x4 tile instead of F(2x2)'s
// 4 x 9 (1.44x fewer). The fractions sit in G (the weights, transformed once per step); B^T has
// small integers, A^T entries up to 8, so it loses a few bits against F22's exact sums
// (native/test/test_speed_paths.cc bounds it against the float64 direct conv).
struct F42 {
  static constexpr int M = 4, R = 2, A = 5;
  static constexpr float BT[5][5] = {
      {2, -1, -2, 1, 0}, {0, -2, -1, 1, 0}, {0, 2, -3, 1, 0}, {0, -1, 0, 1, 0}, {0, 2, -1, -2, 1}};
  static constexpr float G[5][2] = {
      {0.5f, 0}, {-0.5f, -0.5f}, {-1.0f / 6, 1.0f / 6}, {1.0f / 6, 1.0f / 3}, {0, 1}};
  static constexpr float AT[4][5] = {{1, 1, 1, 1, 0}, {0, 1, -1, 2, 0}, {0, 1, 1, 4, 0}, {0, 1, -1, 8, 1}};
};

// The tile grid of an output of OH x OW: tiles of m x m, `per_image` of them per image.
struct Tiles {
  int64_t th, tw, per_image, total;
  Tiles(int64_t N, int64_t OH, int64_t OW, int64_t m)
      : th((OH + m - 1) / m), tw((OW + m - 1) / m), per_image(th * tw), total(N * th * tw) {}
};

// Whether F(4x4, 2x2) pays over F(2x2, 2x2) on an N x OH x OW output: its 25 products per 4x4
// tile undercut F(2x2)'s 4 x 9 by a fifth (maps of whole 4x4 tiles: 4x4, 8x8, 16x16, ...), and
// there are min_tiles tiles or more for the GEMMs' columns.
inline bool f42_pays(int64_t N, int64_t OH, int64_t OW, int64_t min_tiles) {
  const Tiles t2(N, OH, OW, 2), t4(N, OH, OW, 4);
  return 25 * t4.total * 10 <= 9 * t2.total * 8 && t4.total >= min_tiles;
}

// The transforms work on 8 tiles (or 8 kernels) at once: the scalar loads of their patches go
// into lane-minor buffers, and the arithmetic runs over the 8 lanes in fixed-size loops that the
// compiler turns into one vector op each (AVX2 in the *_avx2 copies, chosen at run time, else
// the baseline SIMD). That works the same on 4x4 maps (one tile per image) as on large ones.
constexpr int L = 8;

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define C3_WINO_AVX2 1
#define C3_INLINE inline __attribute__((always_inline))
// on the lambdas that take or return Lanes: inlined into each AVX2 or baseline copy, so no
// 32-byte vector ever crosses a call between code built for different targets
#define C3_LANE_FN __attribute__((always_inline))
#else
#define C3_INLINE inline
#define C3_LANE_FN
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

// ---- the image-interleaved layout of the input, output and gradient transforms
// Tiles are ordered t = ((b * th + ti) * tw + tj) * L + l: image block b holds images b*L .. b*L+L-1
// (lane l; lanes past the batch are zeros in, discarded out). A plane of L images is interleaved
// once (L floats per pixel, one 8x8 transpose per 8 pixels), padded with zeros so every patch is
// inside it, and each tile's a x a patch is then a^2 vector loads: no gathers, no bounds tests,
// the same on 4x4 maps as on 128x128 ones. Chunks of the GEMMs' columns are whole image blocks.
struct Grid {
  int64_t N, th, tw, per_image, blocks;
  Grid(int64_t n, int64_t OH, int64_t OW, int64_t m)
      : N(n), th((OH + m - 1) / m), tw((OW + m - 1) / m), per_image(th * tw), blocks((n + L - 1) / L) {}
  int64_t tiles(int64_t nblocks) const { return nblocks * per_image * L; }
};

// dst[w * L + l] = src[l][w] for w < n, and the reverse (winograd_lanes.cc; AVX2 8x8 transposes
// where the CPU has them)
void interleave_lanes(const float* const* src, int64_t n, float* dst);
void deinterleave_lanes(const float* src, int64_t n, float* const* dst);

// Per-thread buffers of the transforms: 0 an interleaved plane, 1 zeros (the rows of images past
// the batch; never written), 2 a sink for the outputs of those images.
inline float* lane_buffer(int which, size_t n) {
  thread_local ScratchBuffer bufs[3];
  return bufs[which].get(n, /*zeroed=*/true);
}

// Interleaves rows [0, rows) of the L planes of block b (plane of image n at base + n * stride)
// into buf (rows_out x cols_out x L): output (r, q) is input (r - pad_y, q - pad_x), zero outside.
inline void interleave_plane(const float* base, int64_t stride, int64_t N, int64_t b, int64_t H, int64_t W,
                             int64_t pad_y, int64_t pad_x, int64_t rows_out, int64_t cols_out, float* buf) {
  const float* zero = lane_buffer(1, static_cast<size_t>(W));
  const int64_t q0 = std::clamp<int64_t>(pad_x, 0, cols_out), q1 = std::clamp<int64_t>(W + pad_x, q0, cols_out);
  const float* src[L];
  for (int64_t r = 0; r < rows_out; ++r) {
    float* row = buf + r * cols_out * L;
    const int64_t y = r - pad_y;
    if (y < 0 || y >= H || q1 == q0) {
      std::memset(row, 0, static_cast<size_t>(cols_out * L) * sizeof(float));
      continue;
    }
    std::memset(row, 0, static_cast<size_t>(q0 * L) * sizeof(float));
    std::memset(row + q1 * L, 0, static_cast<size_t>((cols_out - q1) * L) * sizeof(float));
    for (int l = 0; l < L; ++l) {
      const int64_t n = b * L + l;
      src[l] = n < N ? base + n * stride + y * W + (q0 - pad_x) : zero;
    }
    interleave_lanes(src, q1 - q0, row + q0 * L);
  }
}

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// ---- pre-packed products: the input transform writes V straight into the micro-kernel's B
// panels (gemm_kernels.h: nr columns, the reduction in blocks of kDepthBlock rows) and U is
// packed into A panels once per call, so the a^2 GEMMs of every chunk do nothing but multiply.
constexpr int64_t kDepthBlock = 256;  // a 256 x 16 B panel is 16 KiB: in L1 while A streams

// Where row d of a (depth x cols) B operand puts column col: panels of nr columns within blocks
// of kDepthBlock rows (row-major when nr == 0: one row of cols floats).
struct PanelRow {
  int64_t base, panel, nr, cols;
  PanelRow(int64_t d, int64_t depth, int64_t cols_pad, int n)  // packed
      : nr(n), cols(cols_pad) {
    const int64_t kb = d / kDepthBlock * kDepthBlock;
    base = kb * cols_pad + (d - kb) * nr;
    panel = std::min(kDepthBlock, depth - kb) * nr;
  }
  PanelRow(int64_t d, int64_t c) : base(d * c), panel(0), nr(0), cols(c) {}  // row-major
  // column col of this row (col % 8 == 0 keeps 8 columns contiguous: nr is a multiple of 8)
  int64_t at(int64_t col) const { return nr ? base + col / nr * panel + col % nr : base + col; }
};

// C rows [0, rows) x columns of panels [q0, q1) = A (rows x depth, A panels of mr rows as
// pack_a_strided lays them, per depth block) times B (depth x cols_pad, B panels); C row-major
// with leading dimension ldc, `cols` real columns.
inline void gemm_panels(const MicroKernel& mk, int64_t rows, int64_t depth, int64_t cols, int64_t cols_pad,
                        const float* Ap, const float* Bp, int64_t q0, int64_t q1, float* C, int64_t ldc) {
  alignas(64) float acc[16 * 32];
  const int mr = mk.mr, nr = mk.nr;
  const int64_t rows_pad = round_up(rows, mr);
  for (int64_t kb = 0; kb < depth; kb += kDepthBlock) {
    const int64_t len = std::min(kDepthBlock, depth - kb);
    const float* a = Ap + kb * rows_pad;
    const float* b = Bp + kb * cols_pad;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t c0 = q * nr, nc = std::min<int64_t>(nr, cols - c0);
      for (int64_t r0 = 0; r0 < rows; r0 += mr) {
        mk.run(len, a + r0 * len, b + q * len * nr, acc);
        const int64_t nrow = std::min<int64_t>(mr, rows - r0);
        for (int64_t r = 0; r < nrow; ++r) {
          float* dst = C + (r0 + r) * ldc + c0;
          const float* src = acc + r * nr;
          if (kb == 0) std::memcpy(dst, src, static_cast<size_t>(nc) * sizeof(float));
          else
            for (int64_t i = 0; i < nc; ++i) dst[i] += src[i];
        }
      }
    }
  }
}

// A vector of L floats (GCC/Clang vector extension: one ymm op under AVX2, two xmm ops on the
// baseline), for the transforms' arithmetic on a tile of L images.
typedef float Lanes __attribute__((vector_size(L * sizeof(float))));
// Lanes are passed only between always-inline functions and lambdas (C3_LANE_FN), so no call
// ever uses the ABI that GCC and Clang warn about for 32-byte vectors without AVX.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

C3_INLINE Lanes load_lanes(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
C3_INLINE void store_lanes(float* p, const Lanes& v) { std::memcpy(p, &v, sizeof v); }

// sum over i < n of coef(i) * x(i): the coefficients are the transform matrices' constants, so
// once the loops are unrolled zero terms vanish and +-1 terms need no multiply
template <class Coef, class X>
C3_INLINE Lanes lane_sum(int n, Coef coef, X x) {
  Lanes s = {};
  bool first = true;
#pragma GCC unroll 8
  for (int i = 0; i < n; ++i) {
    const float c = coef(i);
    if (c == 0.0f) continue;
    const Lanes t = c == 1.0f ? x(i) : c == -1.0f ? -x(i) : c * x(i);
    if (first) s = t, first = false;
    else s += t;
  }
  return s;
}

// v (A x A) = B^T d B of a patch whose rows start `ld` lane-vectors apart
template <class F>
C3_INLINE void input_tile(const float* d, int64_t ld, Lanes* v) {
  constexpr int A = F::A;
  Lanes t[A][A];  // B^T d
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
    for (int col = 0; col < A; ++col)
      t[a][col] = lane_sum(A, [&](int i) { return F::BT[a][i]; }, [&](int i) C3_LANE_FN { return load_lanes(d + (i * ld + col) * L); });
#pragma GCC unroll 8
  for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
    for (int b = 0; b < A; ++b) v[a * A + b] = lane_sum(A, [&](int i) { return F::BT[b][i]; }, [&](int i) C3_LANE_FN { return t[a][i]; });
}

// ---- weights, straight into the GEMMs' A panels: Ap[xi] holds U[xi] (rows x depth) as
// pack_a_strided lays out an A operand (panels of mr rows in blocks of kDepthBlock columns),
// where U[xi][row][d] = (G g G^T)[xi] of the r x r kernel g that taps(row, d, g) reads. An item
// is one panel's mr rows by 8 consecutive d, which the panel holds as mr * 8 consecutive floats
// per position (index l * mr + r for row r0 + r, depth d0 + l); the lanes run over that index,
// so every transformed value goes out in a vector store straight into its panel (scattering
// them one float at a time made D's 512 x 512 F(4x4) transform cost as much as its conv). Rows
// past `rows` are zeros. Items run along the depth, or with `across` along the rows: the order
// in which taps() reads the weights tensor contiguously (backward-data's rows are its inputs).
template <class F, class Taps>
C3_INLINE void weights_body(int64_t rows, int64_t depth, int mr, bool across, const Taps& taps, float* Ap, int64_t i0,
                            int64_t i1) {
  constexpr int A = F::A, R = F::R;
  const int64_t groups = (depth + L - 1) / L, rows_pad = round_up(rows, mr), position = rows_pad * depth;
  const int64_t panels = rows_pad / mr;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t panel = across ? item % panels : item / groups, group = across ? item / panels : item % groups;
    const int64_t r0 = panel * mr, d0 = group * L, lanes = std::min<int64_t>(L, depth - d0);
    // d0 is a multiple of 8 and kDepthBlock of 8: the lanes share a depth block
    const int64_t kb = d0 / kDepthBlock * kDepthBlock, len = std::min(kDepthBlock, depth - kb);
    float* at = Ap + kb * rows_pad + r0 * len + (d0 - kb) * mr;
    const int64_t count = lanes * mr;  // floats of this item per position
    for (int64_t j0 = 0; j0 < count; j0 += L) {
      float g[R * R][L] = {};
      float one[R * R];
      const int64_t n = std::min<int64_t>(L, count - j0);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t row = r0 + (j0 + i) % mr;
        if (row >= rows) continue;
        taps(row, d0 + (j0 + i) / mr, one);
        for (int e = 0; e < R * R; ++e) g[e][i] = one[e];
      }
      Lanes t[A][R];  // G g
#pragma GCC unroll 8
      for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
        for (int s2 = 0; s2 < R; ++s2)
          t[a][s2] = lane_sum(R, [&](int q) { return F::G[a][q]; }, [&](int q) C3_LANE_FN { return load_lanes(g[q * R + s2]); });
#pragma GCC unroll 8
      for (int a = 0; a < A; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < A; ++b) {
          const Lanes u = lane_sum(R, [&](int s2) { return F::G[b][s2]; }, [&](int s2) C3_LANE_FN { return t[a][s2]; });
          float* o = at + (a * A + b) * position + j0;
          if (n == L) store_lanes(o, u);
          else
            for (int64_t i = 0; i < n; ++i) o[i] = u[i];
        }
    }
  }
}

#ifdef C3_WINO_AVX2
template <class F, class Taps>
__attribute__((target("avx2,fma"))) void weights_avx2(int64_t rows, int64_t depth, int mr, bool across, const Taps& taps,
                                                      float* Ap, int64_t i0, int64_t i1) {
  weights_body<F>(rows, depth, mr, across, taps, Ap, i0, i1);
}
#endif
template <class F, class Taps>
void weights_base(int64_t rows, int64_t depth, int mr, bool across, const Taps& taps, float* Ap, int64_t i0, int64_t i1) {
  weights_body<F>(rows, depth, mr, across, taps, Ap, i0, i1);
}

// Ap (a^2 positions of round_up(rows, mr) x depth) for the current micro-kernel's mr; `across`:
// taps(row, d) reads consecutive rows (not consecutive d) from neighbouring weights.
template <class F, class Taps>
void transform_weights(int64_t rows, int64_t depth, const Taps& taps, float* Ap, bool across = false) {
  const int mr = gemm_micro_kernel().mr;
  parallel_for(round_up(rows, mr) / mr * ((depth + L - 1) / L), 4, [&](int64_t i0, int64_t i1) {
#ifdef C3_WINO_AVX2
    if (use_avx2()) return weights_avx2<F>(rows, depth, mr, across, taps, Ap, i0, i1);
#endif
    weights_base<F>(rows, depth, mr, across, taps, Ap, i0, i1);
  });
}

// The a^2 A panels' floats for a (rows x depth) U.
template <class F>
size_t packed_weights_size(int64_t rows, int64_t depth) {
  return static_cast<size_t>(F::A * F::A * round_up(rows, gemm_micro_kernel().mr) * depth);
}

// ---- input: V (a^2 x C x tc) for image blocks [b0, b0 + nb) of a (N, C, H, W) input padded by
// pad_y rows above and pad_x columns left (zeros wherever a patch leaves the input):
// V[xi, c, t] = (B^T d B)[xi] of tile t's a x a patch d; items of (channel, image block)
struct InputJob {
  const float* x;
  int64_t C, H, W, pad_y, pad_x;
  const Grid* g;
  int64_t b0, nb, tc;
  int nr;  // 0: V[xi] row-major (C x tc); else in nr-wide B panels (C x tc_pad, tc_pad = tc rounded up to nr)
  float* V;
};

template <class F>
C3_INLINE void input_body(const InputJob& j, int64_t i0, int64_t i1) {
  constexpr int A = F::A, M = F::M;
  const Grid& g = *j.g;
  const int64_t PH = g.th * M + A - M, PW = g.tw * M + A - M;
  float* buf = lane_buffer(0, static_cast<size_t>(PH * PW * L));
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t c = item / j.nb, b = j.b0 + item % j.nb;
    interleave_plane(j.x + c * j.H * j.W, j.C * j.H * j.W, g.N, b, j.H, j.W, j.pad_y, j.pad_x, PH, PW, buf);
    const int64_t first = (b - j.b0) * g.per_image * L;
    const PanelRow row = j.nr ? PanelRow(c, j.C, round_up(j.tc, j.nr), j.nr) : PanelRow(c, j.tc);
    const int64_t plane = j.C * row.cols;  // floats per transform position
    for (int64_t ti = 0; ti < g.th; ++ti)
      for (int64_t tj = 0; tj < g.tw; ++tj) {
        Lanes v[A * A];
        input_tile<F>(buf + (ti * M * PW + tj * M) * L, PW, v);
        float* o = j.V + row.at(first + (ti * g.tw + tj) * L);
        for (int e = 0; e < A * A; ++e) store_lanes(o + e * plane, v[e]);
      }
  }
}
C3_VARIANTS(input, (const InputJob& j, int64_t i0, int64_t i1), (j, i0, i1))

template <class F>
void transform_input(const float* x, int64_t C, int64_t H, int64_t W, int64_t pad_y, int64_t pad_x, const Grid& g,
                     int64_t b0, int64_t nb, int nr, float* V) {
  const InputJob job{x, C, H, W, pad_y, pad_x, &g, b0, nb, g.tiles(nb), nr, V};
  parallel_for(C * nb, 1, [&](int64_t i0, int64_t i1) { C3_DISPATCH(input, job, i0, i1); });
}

// The count, mean and sum of squared deviations of the first OH rows and OW columns of the
// first `valid` lanes of buf (rows of RW x L floats, an output item's plane while it is in
// cache): the mean, then the sums of the deviations from it rounded to float (which corrects
// for that rounding), as batch norm's chunks. Four vector accumulators per row, rows in double.
template <class Term>
C3_INLINE void lane_row_sums(const float* buf, int64_t RW, int64_t OH, int64_t OW, double* s1, double* s2, Term term) {
  for (int64_t oy = 0; oy < OH; ++oy) {
    const float* r = buf + oy * RW * L;
    Lanes a[4] = {}, q[4] = {};
    int64_t ox = 0;
    for (; ox + 4 <= OW; ox += 4)
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) term(load_lanes(r + (ox + u) * L), a[u], q[u]);
    for (; ox < OW; ++ox) term(load_lanes(r + ox * L), a[0], q[0]);
    const Lanes ta = (a[0] + a[1]) + (a[2] + a[3]), tq = (q[0] + q[1]) + (q[2] + q[3]);
    for (int l = 0; l < L; ++l) s1[l] += ta[l], s2[l] += tq[l];
  }
}

C3_INLINE Moments plane_moments(const float* buf, int64_t RW, int64_t OH, int64_t OW, int64_t valid) {
  double s[L] = {}, unused[L] = {};
  lane_row_sums(buf, RW, OH, OW, s, unused, [](const Lanes& v, Lanes& a, Lanes&) C3_LANE_FN { a += v; });
  double total = 0;
  for (int64_t l = 0; l < valid; ++l) total += s[l];
  const double n = static_cast<double>(OH * OW * valid);
  const float pivot = static_cast<float>(total / n);
  double d1[L] = {}, d2[L] = {};
  lane_row_sums(buf, RW, OH, OW, d1, d2, [pivot](const Lanes& v, Lanes& a, Lanes& q) C3_LANE_FN {
    const Lanes d = v - pivot;
    a += d;
    q += d * d;
  });
  double t1 = 0, t2 = 0;
  for (int64_t l = 0; l < valid; ++l) t1 += d1[l], t2 += d2[l];
  const double shift = t1 / n;
  return {n, pivot + shift, std::max(0.0, t2 - t1 * shift)};
}

// ---- output: y (N, K, OH, OW) of image blocks [b0, b0 + nb) = A^T M A (+ bias) from
// M (a^2 x K x tc); items of (channel, image block). With moments, also each item's
// plane_moments at moments[k * blocks + b].
struct OutputJob {
  const float* Mx;
  int64_t K, OH, OW;
  const Grid* g;
  int64_t b0, nb, tc;
  const float* bias;
  float* y;
  Moments* moments;
};

template <class F>
C3_INLINE void output_body(const OutputJob& j, int64_t i0, int64_t i1) {
  constexpr int A = F::A, M = F::M;
  const Grid& g = *j.g;
  const int64_t RW = g.tw * M;  // the interleaved rows of whole tiles
  float* buf = lane_buffer(0, static_cast<size_t>(g.th * M * RW * L));
  float* sink = lane_buffer(2, static_cast<size_t>(j.OW));  // rows of missing images
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t k = item / j.nb, b = j.b0 + item % j.nb;
    const float bias = j.bias ? j.bias[k] : 0.0f;
    const float* in = j.Mx + k * j.tc + (b - j.b0) * g.per_image * L;
    for (int64_t ti = 0; ti < g.th; ++ti)
      for (int64_t tj = 0; tj < g.tw; ++tj) {
        const float* m = in + (ti * g.tw + tj) * L;
        Lanes t[M][A];  // A^T m
#pragma GCC unroll 8
        for (int a = 0; a < M; ++a)
#pragma GCC unroll 8
          for (int col = 0; col < A; ++col)
            t[a][col] = lane_sum(A, [&](int i) { return F::AT[a][i]; },
                                 [&](int i) C3_LANE_FN { return load_lanes(m + (i * A + col) * j.K * j.tc); });
#pragma GCC unroll 8
        for (int a = 0; a < M; ++a) {
          float* row = buf + ((ti * M + a) * RW + tj * M) * L;
#pragma GCC unroll 8
          for (int c2 = 0; c2 < M; ++c2)
            store_lanes(row + c2 * L, bias + lane_sum(A, [&](int i) { return F::AT[c2][i]; }, [&](int i) C3_LANE_FN { return t[a][i]; }));
        }
      }
    float* dst[L];
    for (int64_t oy = 0; oy < j.OH; ++oy) {
      for (int l = 0; l < L; ++l) {
        const int64_t n = b * L + l;
        dst[l] = n < g.N ? j.y + ((n * j.K + k) * j.OH + oy) * j.OW : sink;
      }
      deinterleave_lanes(buf + oy * RW * L, j.OW, dst);
    }
    if (j.moments) j.moments[k * g.blocks + b] = plane_moments(buf, RW, j.OH, j.OW, std::min<int64_t>(L, g.N - b * L));
  }
}
C3_VARIANTS(output, (const OutputJob& j, int64_t i0, int64_t i1), (j, i0, i1))

template <class F>
void transform_output(const float* Mx, int64_t K, int64_t OH, int64_t OW, const Grid& g, int64_t b0, int64_t nb,
                      const float* bias, float* y, Moments* moments) {
  const OutputJob job{Mx, K, OH, OW, &g, b0, nb, g.tiles(nb), bias, y, moments};
  parallel_for(K * nb, 1, [&](int64_t i0, int64_t i1) { C3_DISPATCH(output, job, i0, i1); });
}

// ---- backward-weight: Y (a^2 x K x tc) = A dY A^T of each m x m dy tile (zero past the output's
// edge) of image blocks [b0, b0 + nb); items of (channel, image block)
struct GradJob {
  const float* dy;
  int64_t K, OH, OW;
  const Grid* g;
  int64_t b0, nb, tc;
  float* Y;
};

template <class F>
C3_INLINE void grad_body(const GradJob& j, int64_t i0, int64_t i1) {
  constexpr int A = F::A, M = F::M;
  const Grid& g = *j.g;
  const int64_t RH = g.th * M, RW = g.tw * M;
  float* buf = lane_buffer(0, static_cast<size_t>(RH * RW * L));
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t k = item / j.nb, b = j.b0 + item % j.nb;
    interleave_plane(j.dy + k * j.OH * j.OW, j.K * j.OH * j.OW, g.N, b, j.OH, j.OW, 0, 0, RH, RW, buf);
    float* out = j.Y + k * j.tc + (b - j.b0) * g.per_image * L;
    for (int64_t ti = 0; ti < g.th; ++ti)
      for (int64_t tj = 0; tj < g.tw; ++tj) {
        const float* d = buf + (ti * M * RW + tj * M) * L;
        Lanes r[A][M];  // A d: r[i][col] = sum_a AT[a][i] d[a][col]
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i)
#pragma GCC unroll 8
          for (int col = 0; col < M; ++col)
            r[i][col] = lane_sum(M, [&](int a) { return F::AT[a][i]; }, [&](int a) C3_LANE_FN { return load_lanes(d + (a * RW + col) * L); });
        float* o = out + (ti * g.tw + tj) * L;
#pragma GCC unroll 8
        for (int i = 0; i < A; ++i)
#pragma GCC unroll 8
          for (int q = 0; q < A; ++q)
            store_lanes(o + (i * A + q) * j.K * j.tc, lane_sum(M, [&](int col) { return F::AT[col][q]; }, [&](int col) C3_LANE_FN { return r[i][col]; }));
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
// Image blocks per chunk: V and the products near kChunkFloats.
inline int64_t chunk_blocks(const Grid& g, int64_t cin, int64_t cout, int a) {
  const int64_t per_block = int64_t(a) * a * (cin + cout) * g.per_image * L;
  return std::clamp<int64_t>(kChunkFloats / std::max<int64_t>(1, per_block), 1, g.blocks);
}

// Runs body(e, lo, hi) for each transform position e < positions over [0, extent) cut into
// ranges (multiples of `unit`) when the positions alone would leave a thread idle at the end:
// F(2x2, 2x2)'s 9 GEMMs on 2 threads would run 5 against 4.
template <class Body>
void over_positions(int positions, int64_t extent, int64_t unit, const Body& body) {
  const int threads = num_threads();
  int parts = 1;
  double best = 1e30;
  for (int s = 1; s <= 4; ++s) {
    if (s > 1 && extent < 2 * s * unit) break;
    const int64_t items = int64_t(positions) * s;
    const double imbalance = double((items + threads - 1) / threads) * threads / double(items);
    if (imbalance < best - 1e-9) best = imbalance, parts = s;
  }
  const int64_t per = (extent + parts * unit - 1) / (parts * unit) * unit;
  parallel_for(int64_t(positions) * parts, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t e = i / parts, lo = std::min(extent, (i % parts) * per), hi = std::min(extent, lo + per);
      if (lo < hi) body(e, lo, hi);
    }
  });
}

// moments: null, or K * blocks items (each channel's output per 8-image block, plane_moments)
template <class F>
void winograd_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t pad_y, int64_t pad_x, int64_t OH,
                   int64_t OW, const float* x, const float* Ap, const float* bias, float* y,
                   Moments* moments = nullptr) {
  constexpr int A = F::A, M = F::M;
  const MicroKernel& mk = gemm_micro_kernel();
  const Grid g(N, OH, OW, M);
  const int64_t nb_max = chunk_blocks(g, C, K, A), tc_max = round_up(g.tiles(nb_max), mk.nr);
  float* V = scratch(0, static_cast<size_t>(A * A * C * tc_max));  // B panels per position
  float* Mx = scratch(1, static_cast<size_t>(A * A * K * tc_max));
  for (int64_t b0 = 0; b0 < g.blocks; b0 += nb_max) {
    const int64_t nb = std::min(nb_max, g.blocks - b0), tc = g.tiles(nb), tc_pad = round_up(tc, mk.nr);
    if (tc_pad > tc)  // the columns past the tiles: zeros, never stale floats (NaN, denormals)
      for (int64_t e = 0; e < A * A; ++e)
        for (int64_t c = 0; c < C; ++c)
          std::memset(V + e * C * tc_pad + PanelRow(c, C, tc_pad, mk.nr).at(tc), 0, static_cast<size_t>(tc_pad - tc) * sizeof(float));
    transform_input<F>(x, C, H, W, pad_y, pad_x, g, b0, nb, mk.nr, V);
    const int64_t Kp = round_up(K, mk.mr);
    over_positions(A * A, tc_pad / mk.nr, 1, [&](int64_t e, int64_t q0, int64_t q1) {
      gemm_panels(mk, K, C, tc, tc_pad, Ap + e * Kp * C, V + e * C * tc_pad, q0, q1, Mx + e * K * tc, tc);
    });
    transform_output<F>(Mx, K, OH, OW, g, b0, nb, bias, y, moments);
  }
}

// The packed weights of a call: transformed by transform_weights, or the same panels from an
// earlier call whose weights compare equal (winograd_cache.h). `pass` tells the uses of one
// weight tensor apart (forward, backward-data, the stride-2 phases).
// `prepare` runs before a transform (not on a cache hit), for taps that read something made from w.
inline void no_preparation() {}
template <class F, class Taps, class Prepare = void (*)()>
Packed cached_weights(int pass, const float* w, size_t n, int64_t rows, int64_t depth, const Taps& taps,
                      bool across = false, const Prepare& prepare = no_preparation) {
  const int mr = gemm_micro_kernel().mr;
  const uint64_t key = cache_key({reinterpret_cast<uintptr_t>(w), uint64_t(F::M * 16 + F::R), uint64_t(pass),
                                  uint64_t(rows), uint64_t(depth), uint64_t(mr)});
  return packed_weights(key, w, n, packed_weights_size<F>(rows, depth), [&](float* Ap) {
    prepare();
    transform_weights<F>(rows, depth, taps, Ap, across);
  });
}

// the number of 8-image blocks of a batch: winograd_conv's moments hold K of these per product
inline int64_t image_blocks(int64_t N) { return (N + L - 1) / L; }

// run(parts) with room for `groups` products' block moments (null when moments is), then
// moments (K, 2) merged from them (merge_moments)
template <class Run>
void with_block_moments(int64_t groups, int64_t K, int64_t N, float* moments, const Run& run) {
  std::vector<Moments> parts(moments ? groups * K * image_blocks(N) : 0);
  run(moments ? parts.data() : nullptr);
  if (moments) merge_moments(parts.data(), groups, K, image_blocks(N), moments);
}

template <class F>
void forward_m(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
               Moments* moments) {
  constexpr int RR = F::R * F::R;
  const Packed Ap = cached_weights<F>(0, w, p.K * p.C * RR, p.K, p.C, [&](int64_t k, int64_t c, float* g) {
    std::memcpy(g, w + (k * p.C + c) * RR, RR * sizeof(float));
  });
  winograd_conv<F>(p.N, p.C, p.H, p.W, p.K, p.pad, p.pad, p.OH, p.OW, x, Ap->data(), bias, y, moments);
}

// the same forward on dy with each kernel flipped and the channels swapped
template <class F>
void backward_data_m(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  constexpr int RR = F::R * F::R;
  const Packed Ap = cached_weights<F>(1, w, p.K * p.C * RR, p.C, p.K, [&](int64_t c, int64_t k, float* g) {
    const float* src = w + (k * p.C + c) * RR;
    for (int e = 0; e < RR; ++e) g[e] = src[RR - 1 - e];
  }, true);
  winograd_conv<F>(p.N, p.K, p.OH, p.OW, p.C, F::R - 1 - p.pad, F::R - 1 - p.pad, p.H, p.W, dy, Ap->data(), nullptr, dx);
}

// dw (K, C, r, r) of a stride-1 r x r conv of x (N, C, H, W) padded by pad_y rows above and
// pad_x columns left (zeros past every edge), whose gradient dy is (N, K, OH, OW).
template <class F>
void backward_weight_padded(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t pad_y, int64_t pad_x,
                            int64_t OH, int64_t OW, const float* dy, const float* x, float* dw) {
  constexpr int A = F::A, M = F::M;
  const Grid g(N, OH, OW, M);
  const int64_t nb_max = chunk_blocks(g, C, K, A), tc_max = g.tiles(nb_max);
  float* V = scratch(0, static_cast<size_t>(A * A * C * tc_max));  // (a^2, C, tiles)
  float* Y = scratch(1, static_cast<size_t>(A * A * K * tc_max));  // (a^2, K, tiles)
  float* dU = scratch(2, static_cast<size_t>(A * A * K * C));      // (a^2, K, C)
  for (int64_t b0 = 0; b0 < g.blocks; b0 += nb_max) {
    const int64_t nb = std::min(nb_max, g.blocks - b0), tc = g.tiles(nb);
    transform_input<F>(x, C, H, W, pad_y, pad_x, g, b0, nb, 0, V);
    const GradJob job{dy, K, OH, OW, &g, b0, nb, tc, Y};
    parallel_for(K * nb, 1, [&](int64_t i0, int64_t i1) { C3_DISPATCH(grad, job, i0, i1); });
    const float beta = b0 == 0 ? 0.0f : 1.0f;
    // the sums run over the tiles: positions are cut by rows of dU, never by the sum
    over_positions(A * A, K, 8, [&](int64_t e, int64_t lo, int64_t hi) {
      gemm_strided(false, true, hi - lo, C, tc, 1.0f, Y + e * K * tc + lo * tc, tc, V + e * C * tc, tc, beta,
                   dU + e * K * C + lo * C, C);
    });
  }
  const KernelGradJob job{dU, K * C, dw};
  parallel_for((K * C + L - 1) / L, 32, [&](int64_t i0, int64_t i1) { C3_DISPATCH(kernel_grad, job, i0, i1); });
}

template <class F>
void backward_weight_m(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  backward_weight_padded<F>(p.N, p.C, p.H, p.W, p.K, p.pad, p.pad, p.OH, p.OW, dy, x, dw);
}

}  // namespace c3::cpu::wino
