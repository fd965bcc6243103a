// Direct stride-1 convolution for layers with few channels on one side (G's last layers: 1-16
// channels at 16x16 to 128x128). An implicit GEMM there has a handful of rows, so every packed
// element is used a handful of times and packing dominates; here the input rows are zero-padded
// once per band of output rows and each output row is accumulated in registers.
//   forward:         y[k, oh, ow..ow+31] += w[k, c, r, s] * P[c, oh + r, ow + s ..], two k at a time
//   backward-data:   the forward on dy with the flipped, transposed kernel (padding R-1-pad)
//   backward-weight: dw[k, c, r, s] = sum over rows of dy[k, oh, :] . P[c, oh + r, s:], nine
//                    vector accumulators per (k, c), per-chunk partial sums added at the end
// The loops are written on eight-float vectors (vec8.h): AVX2+FMA on x86 (checked at run time),
// Advanced SIMD on AArch64, the same bits on both. Where an x86 CPU has AVX-512VL (32 vector
// registers) the forward takes 4 output channels at once and the weight gradient 2, so each
// loaded input vector feeds more FMAs (Zen 4, in one process against the pairs: forward and
// backward-data 1.2-1.3x, weight gradient 1.4-1.6x on G's 4-16 channel layers; the CUB iteration
// at batch 8 1.07x). AArch64 takes the pairs: 4 channels' accumulators as register pairs would
// fill its 32 registers. Elsewhere direct_conv_applies is false.
#include "conv_direct.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../core/threadpool.h"
#include "batchnorm_kernels.h"
#include "kernels.h"
#include "moments.h"
#include "thread_scratch.h"
#include "vec8.h"

namespace c3::cpu {

namespace {

bool initial_enabled() {
  const char* e = std::getenv("C3GAN_DIRECT_CONV");
  return !(e && std::strcmp(e, "0") == 0);
}

bool& enabled_flag() {
  static bool on = initial_enabled();
  return on;
}

#ifdef C3_VEC8

using namespace vec8;

// Where the direct loops beat the implicit GEMM and Winograd (measured on Zen 1 with AVX2; AArch64
// takes the same bounds, not measured there).
constexpr int64_t kMaxForwardK = 32;          // output channels of the forward
constexpr int64_t kMaxDataC = 16;             // output channels of backward-data (x's)
constexpr int64_t kMaxWeightPairs = 1024;     // backward-weight K * C (64 -> 16 on 32x32: 2.5x the GEMM)
constexpr int64_t kForwardBand = 8;           // output rows per work item
constexpr int64_t kWeightBand = 16;
constexpr int64_t kWeightChunks = 16;         // backward-weight partial sums (work items)
constexpr int64_t kMinBlockedTaps = 128;      // blocked forward: C*R*S
constexpr int64_t kMaxFourRowImage = 16384;   // blocked forward with 4-row tiles: padded floats per image
constexpr int64_t kMaxBlockedDataImage = 1 << 18;    // blocked backward-data: padded dy floats per image (1 MiB)
constexpr int64_t kMaxBlockedDataWeights = 1 << 18;  // and weight floats (1 MiB)

// AVX-512VL: 32 vector registers, so the loops below can keep more output channels' sums in them
bool wide_supported() {
#ifdef C3_VEC8_X86
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  }();
  return ok;
#else
  return false;
#endif
}

bool& wide_flag() {
  static bool on = wide_supported();
  return on;
}

bool wide_registers() { return wide_flag(); }

float* scratch(int which, size_t n) {
  thread_local ScratchBuffer bufs[2];
  return bufs[which].get(n);
}

// Padded rows [y0, y0 + rows) of a (C, H, W) image: padded row u is input row u - pad, input
// column j sits at j + pad, each row Wp wide; zero outside the input.
void pad_rows(const float* img, int64_t C, int64_t H, int64_t W, int64_t pad, int64_t y0, int64_t rows, int64_t Wp,
              float* out) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t u = 0; u < rows; ++u) {
      float* d = out + (c * rows + u) * Wp;
      const int64_t ih = y0 + u - pad;
      if (ih < 0 || ih >= H) {
        std::fill(d, d + Wp, 0.0f);
        continue;
      }
      std::fill(d, d + pad, 0.0f);
      std::memcpy(d + pad, img + (c * H + ih) * W, W * sizeof(float));
      std::fill(d + pad + W, d + Wp, 0.0f);
    }
}

struct FwdShape {
  int64_t taps;        // C * R * S
  const int64_t* off;  // per tap (c, r, s): its input's offset in the band, (c * rows + r) * Wp + s
};

// One output row segment of NV vectors (8 columns each) for output channel k (and k + 1 when
// PAIR): prow is the band's padded input at (c = 0, row oh - band start, column ow0); w0 and w1
// are the two channels' kernels, in tap order. Accumulators are named variables, not an array,
// so they stay in registers across the tap loop.
template <int NV, bool PAIR>
C3_VEC8_TARGET void fwd_segment(const FwdShape& f, const float* prow, const float* w0, const float* w1, float b0,
                                float b1, float* y0, float* y1, int64_t valid) {
  V8 a0 = splat(b0), a1 = a0, a2 = a0, a3 = a0;
  V8 c0 = splat(b1), c1 = c0, c2 = c0, c3 = c0;
  for (int64_t t = 0; t < f.taps; ++t) {
    const float* v = prow + f.off[t];
    const V8 k0 = broadcast(w0 + t);
    const V8 v0 = load(v);
    a0 = fma(k0, v0, a0);
    V8 v1, v2, v3;
    if (NV > 1) v1 = load(v + 8), a1 = fma(k0, v1, a1);
    if (NV > 2) v2 = load(v + 16), a2 = fma(k0, v2, a2);
    if (NV > 3) v3 = load(v + 24), a3 = fma(k0, v3, a3);
    if (PAIR) {
      const V8 k1 = broadcast(w1 + t);
      c0 = fma(k1, v0, c0);
      if (NV > 1) c1 = fma(k1, v1, c1);
      if (NV > 2) c2 = fma(k1, v2, c2);
      if (NV > 3) c3 = fma(k1, v3, c3);
    }
  }
  if (valid == 8 * NV) {  // whole vectors: straight to y
    store(y0, a0);
    if (NV > 1) store(y0 + 8, a1);
    if (NV > 2) store(y0 + 16, a2);
    if (NV > 3) store(y0 + 24, a3);
    if (PAIR) {
      store(y1, c0);
      if (NV > 1) store(y1 + 8, c1);
      if (NV > 2) store(y1 + 16, c2);
      if (NV > 3) store(y1 + 24, c3);
    }
    return;
  }
  alignas(32) float t[2][32];
  store(t[0], a0);
  if (NV > 1) store(t[0] + 8, a1);
  if (NV > 2) store(t[0] + 16, a2);
  if (NV > 3) store(t[0] + 24, a3);
  for (int64_t i = 0; i < valid; ++i) y0[i] = t[0][i];
  if (PAIR) {
    store(t[1], c0);
    if (NV > 1) store(t[1] + 8, c1);
    if (NV > 2) store(t[1] + 16, c2);
    if (NV > 3) store(t[1] + 24, c3);
    for (int64_t i = 0; i < valid; ++i) y1[i] = t[1][i];
  }
}

template <bool PAIR>
void fwd_dispatch(int nv, const FwdShape& f, const float* prow, const float* w0, const float* w1, float b0, float b1,
                  float* y0, float* y1, int64_t valid) {
  switch (nv) {
    case 1: return fwd_segment<1, PAIR>(f, prow, w0, w1, b0, b1, y0, y1, valid);
    case 2: return fwd_segment<2, PAIR>(f, prow, w0, w1, b0, b1, y0, y1, valid);
    case 3: return fwd_segment<3, PAIR>(f, prow, w0, w1, b0, b1, y0, y1, valid);
    default: return fwd_segment<4, PAIR>(f, prow, w0, w1, b0, b1, y0, y1, valid);
  }
}

// Four output channels at once where AVX-512VL gives 32 vector registers: 4 x NV accumulators,
// NV input loads and 4 broadcasts per tap for 4 * NV FMAs (the pair above: NV + 2 loads for 2 * NV),
// so the FMA units and not the loads set the pace. x86 only (wide_supported).
#ifdef C3_VEC8_X86
template <int NV>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void fwd_segment4(const FwdShape& f, const float* prow,
                                                                       const float* w, int64_t wstride,
                                                                       const float* bias, float* y, int64_t ystride,
                                                                       int64_t valid) {
  V8 a[4][NV];
#pragma GCC unroll 4
  for (int kk = 0; kk < 4; ++kk)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) a[kk][v] = splat(bias ? bias[kk] : 0.0f);
  for (int64_t t = 0; t < f.taps; ++t) {
    const float* in = prow + f.off[t];
    V8 x[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) x[v] = load(in + 8 * v);
#pragma GCC unroll 4
    for (int kk = 0; kk < 4; ++kk) {
      const V8 k = broadcast(w + kk * wstride + t);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) a[kk][v] = fma(k, x[v], a[kk][v]);
    }
  }
#pragma GCC unroll 4
  for (int kk = 0; kk < 4; ++kk) {
    float* out = y + kk * ystride;
    if (valid == 8 * NV) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) store(out + 8 * v, a[kk][v]);
    } else {
      alignas(32) float t[32];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) store(t + 8 * v, a[kk][v]);
      for (int64_t i = 0; i < valid; ++i) out[i] = t[i];
    }
  }
}

void fwd_dispatch4(int nv, const FwdShape& f, const float* prow, const float* w, int64_t wstride, const float* bias,
                   float* y, int64_t ystride, int64_t valid) {
  switch (nv) {
    case 1: return fwd_segment4<1>(f, prow, w, wstride, bias, y, ystride, valid);
    case 2: return fwd_segment4<2>(f, prow, w, wstride, bias, y, ystride, valid);
    case 3: return fwd_segment4<3>(f, prow, w, wstride, bias, y, ystride, valid);
    default: return fwd_segment4<4>(f, prow, w, wstride, bias, y, ystride, valid);
  }
}
#endif

// y (N, K, OH, OW) = the stride-1 correlation of x (N, C, H, W) with w (K, C, R, S), padding pad.
// With moments (K, 2), also each channel's mean and biased variance: every band's rows are
// summed right after they are written (still in cache), and the parts merged in a fixed order.
void forward_loops(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int64_t pad,
                  int64_t OH, int64_t OW, const float* x, const float* w, const float* bias, float* y,
                  float* moments = nullptr) {
  const int64_t bands = (OH + kForwardBand - 1) / kForwardBand;
  const int64_t items = N * bands;
  std::vector<Moments> parts(moments ? static_cast<size_t>(K * items) : 0);  // parts[k * items + item]
  const BatchnormKernels& sums = batchnorm_kernels();
  const int64_t Wp = W + 2 * pad + 16;  // slack: the last vector of a row may read past it
  const int64_t max_rows = std::min(OH, kForwardBand) + R - 1;
  // tap offsets for a full band (a shorter last band has fewer rows per channel: its own table)
  auto offsets = [&](int64_t rows) {
    std::vector<int64_t> off(static_cast<size_t>(C * R * S));
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t s = 0; s < S; ++s) off[(c * R + r) * S + s] = (c * rows + r) * Wp + s;
    return off;
  };
  const std::vector<int64_t> full_off = offsets(max_rows);
  parallel_for(items, 1, [&](int64_t i0, int64_t i1) {
    std::vector<int64_t> short_off;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / bands, oh0 = (item % bands) * kForwardBand, oh1 = std::min(OH, oh0 + kForwardBand);
      const int64_t rows = oh1 - oh0 + R - 1;
      if (rows != max_rows && short_off.empty()) short_off = offsets(rows);
      const FwdShape f{C * R * S, rows == max_rows ? full_off.data() : short_off.data()};
      float* P = scratch(0, static_cast<size_t>(C * rows * Wp));
      pad_rows(x + n * C * H * W, C, H, W, pad, oh0, rows, Wp, P);
      const int64_t K4 = wide_registers() ? K / 4 * 4 : 0;
      for (int64_t oh = oh0; oh < oh1; ++oh) {
#ifdef C3_VEC8_X86
        for (int64_t k = 0; k < K4; k += 4) {
          const float* w0 = w + k * C * R * S;
          float* y0 = y + ((n * K + k) * OH + oh) * OW;
          for (int64_t ow0 = 0; ow0 < OW; ow0 += 32) {
            const int64_t valid = std::min<int64_t>(32, OW - ow0);
            const float* prow = P + (oh - oh0) * Wp + ow0;
            fwd_dispatch4(static_cast<int>((valid + 7) / 8), f, prow, w0, C * R * S, bias ? bias + k : nullptr,
                          y0 + ow0, OH * OW, valid);
          }
        }
#endif
        for (int64_t k = K4; k < K; k += 2) {
          const bool pair = k + 1 < K;
          const float* w0 = w + k * C * R * S;
          const float* w1 = pair ? w0 + C * R * S : w0;
          const float b0 = bias ? bias[k] : 0.0f, b1 = bias && pair ? bias[k + 1] : 0.0f;
          float* y0 = y + ((n * K + k) * OH + oh) * OW;
          float* y1 = pair ? y0 + OH * OW : y0;
          for (int64_t ow0 = 0; ow0 < OW; ow0 += 32) {
            const int64_t valid = std::min<int64_t>(32, OW - ow0);
            const int nv = static_cast<int>((valid + 7) / 8);
            const float* prow = P + (oh - oh0) * Wp + ow0;
            if (pair) fwd_dispatch<true>(nv, f, prow, w0, w1, b0, b1, y0 + ow0, y1 + ow0, valid);
            else fwd_dispatch<false>(nv, f, prow, w0, w1, b0, b1, y0 + ow0, y1 + ow0, valid);
          }
        }
      }
      if (moments)  // the band's rows of each channel: one contiguous run
        for (int64_t k = 0; k < K; ++k)
          parts[k * items + item] = run_moments(sums, y + ((n * K + k) * OH + oh0) * OW, 1, (oh1 - oh0) * OW, 0);
    }
  });
  if (moments) merge_moments(parts.data(), 1, K, items, moments);
}

// partial[k, c, r, s] += sum over the band's rows of dy[k, oh, :] . P[c, oh + r, s:] (R, S <= 3)
template <int R, int S>
C3_VEC8_TARGET void weight_band(int64_t K, int64_t C, int64_t band, int64_t rowsP, int64_t Wp, int64_t OWv,
                                const float* D, const float* P, float* partial) {
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      V8 acc[R][S];
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < S; ++s) acc[r][s] = zero();
      for (int64_t u = 0; u < band; ++u) {
        const float* drow = D + (k * band + u) * OWv;
        const float* prow = P + (c * rowsP + u) * Wp;
        for (int64_t j = 0; j < OWv; j += 8) {
          const V8 d = load(drow + j);
          for (int r = 0; r < R; ++r)
            for (int s = 0; s < S; ++s) acc[r][s] = fma(d, load(prow + r * Wp + j + s), acc[r][s]);
        }
      }
      float* out = partial + (k * C + c) * R * S;
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < S; ++s) out[r * S + s] += hsum(acc[r][s]);
    }
}

#ifdef C3_VEC8_X86
// The same for two output channels at once where AVX-512VL gives 32 vector registers: 2 x R x S
// accumulators, and each loaded input vector feeds two FMAs (the loop above: one).
template <int R, int S>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void weight_band2(int64_t K, int64_t C, int64_t band,
                                                                      int64_t rowsP, int64_t Wp, int64_t OWv,
                                                                      const float* D, const float* P, float* partial) {
  const int64_t K2 = K / 2 * 2;
  for (int64_t k = 0; k < K2; k += 2)
    for (int64_t c = 0; c < C; ++c) {
      V8 a0[R][S], a1[R][S];
#pragma GCC unroll 3
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
        for (int s = 0; s < S; ++s) a0[r][s] = a1[r][s] = zero();
      for (int64_t u = 0; u < band; ++u) {
        const float* d0row = D + (k * band + u) * OWv;
        const float* d1row = d0row + band * OWv;
        const float* prow = P + (c * rowsP + u) * Wp;
        for (int64_t j = 0; j < OWv; j += 8) {
          const V8 d0 = load(d0row + j), d1 = load(d1row + j);
#pragma GCC unroll 3
          for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
            for (int s = 0; s < S; ++s) {
              V8 x = load(prow + r * Wp + j + s);
              __asm__("" : "+v"(x.v));  // one load for both FMAs (GCC would fold it into each)
              a0[r][s] = fma(d0, x, a0[r][s]);
              a1[r][s] = fma(d1, x, a1[r][s]);
            }
        }
      }
      float* out0 = partial + (k * C + c) * R * S;
      float* out1 = out0 + C * R * S;
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < S; ++s) {
          out0[r * S + s] += hsum(a0[r][s]);
          out1[r * S + s] += hsum(a1[r][s]);
        }
    }
  if (K2 < K)  // the odd channel: the one-channel loop, on the last channel's rows
    weight_band<R, S>(1, C, band, rowsP, Wp, OWv, D + K2 * band * OWv, P, partial + K2 * C * R * S);
}
#endif

using WeightBandFn = void (*)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const float*, const float*, float*);

WeightBandFn weight_band_for(int64_t R, int64_t S) {
  static const WeightBandFn fns[3][3] = {{weight_band<1, 1>, weight_band<1, 2>, weight_band<1, 3>},
                                         {weight_band<2, 1>, weight_band<2, 2>, weight_band<2, 3>},
                                         {weight_band<3, 1>, weight_band<3, 2>, weight_band<3, 3>}};
#ifdef C3_VEC8_X86
  static const WeightBandFn pairs[3][3] = {{weight_band2<1, 1>, weight_band2<1, 2>, weight_band2<1, 3>},
                                           {weight_band2<2, 1>, weight_band2<2, 2>, weight_band2<2, 3>},
                                           {weight_band2<3, 1>, weight_band2<3, 2>, weight_band2<3, 3>}};
  if (wide_registers()) return pairs[R - 1][S - 1];
#endif
  return fns[R - 1][S - 1];
}

void backward_weight_loops(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const int64_t bands = (p.OH + kWeightBand - 1) / kWeightBand, items = p.N * bands;
  const int64_t Wp = p.W + 2 * p.pad + 16, OWv = (p.OW + 7) / 8 * 8;
  const int64_t krs = p.K * p.C * p.R * p.S;
  // a fixed split into chunks, each with its own partial sums, added in order at the end: the
  // result depends neither on which thread ran what nor on how many threads there are
  const int64_t chunks = std::min<int64_t>(items, kWeightChunks);
  std::vector<float> partial(static_cast<size_t>(chunks * krs), 0.0f);
  const WeightBandFn band_fn = weight_band_for(p.R, p.S);
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch)
      for (int64_t item = items * ch / chunks; item < items * (ch + 1) / chunks; ++item) {
        const int64_t n = item / bands, oh0 = (item % bands) * kWeightBand;
        const int64_t band = std::min(p.OH, oh0 + kWeightBand) - oh0, rowsP = band + p.R - 1;
        float* P = scratch(0, static_cast<size_t>(p.C * rowsP * Wp));
        float* D = scratch(1, static_cast<size_t>(p.K * band * OWv));
        pad_rows(x + n * p.C * p.H * p.W, p.C, p.H, p.W, p.pad, oh0, rowsP, Wp, P);
        for (int64_t k = 0; k < p.K; ++k)
          for (int64_t u = 0; u < band; ++u) {
            float* d = D + (k * band + u) * OWv;
            std::memcpy(d, dy + ((n * p.K + k) * p.OH + oh0 + u) * p.OW, p.OW * sizeof(float));
            std::fill(d + p.OW, d + OWv, 0.0f);  // the tail meets real input columns: must be zero
          }
        band_fn(p.K, p.C, band, rowsP, Wp, OWv, D, P, partial.data() + ch * krs);
      }
  });
  for (int64_t i = 0; i < krs; ++i) {
    double s = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) s += partial[ch * krs + i];
    dw[i] = static_cast<float>(s);
  }
}

// ---- blocked forward for strided convs: a register tile of 6 output channels x 16 output
// pixels (one row of 16, two rows of 8 or four rows of 4), the 12 accumulators of the GEMM
// micro-kernel, fed straight from the input instead of a packed panel. The input is copied
// once per image into a zero-padded phase layout, P[c, u, q, j] = padded x[c, u, j*s + q], so
// tap (c, r, t) of output (oh, ow) is P[c, oh*s + r, t mod s, ow + t/s]: 8 consecutive outputs
// are 8 consecutive floats, with no bounds to check.

struct BlockedShape {
  int64_t taps;        // C * R * S
  const int64_t* off;  // per tap: its offset in P from output (0, 0)
  const float* wp;     // weights as (K/6 panels, taps, 6), zero past K
  int64_t row_step;    // P offset of the next output row
};

// Tile kinds: the 16 pixels as ROWS rows of 16 / ROWS (ROWS = 1, 2 or 4) starting at output
// (oh, ow0); acc[r][..] for channel r of the panel, 16 values in tile order.
template <int ROWS>
C3_VEC8_TARGET void blocked_tile(const BlockedShape& b, const float* base, const float* wp, float* acc) {
  V8 c00 = zero(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  V8 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const int64_t rs = b.row_step;
  for (int64_t t = 0; t < b.taps; ++t) {
    const float* p = base + b.off[t];
    V8 v0, v1;
    if (ROWS == 1) {
      v0 = load(p);
      v1 = load(p + 8);
    } else if (ROWS == 2) {
      v0 = load(p);
      v1 = load(p + rs);
    } else {
      v0 = load_halves(p, p + rs);
      v1 = load_halves(p + 2 * rs, p + 3 * rs);
    }
    const float* a = wp + t * 6;
    const V8 ws = load(a);  // the tap's 6 weights (and 2 of the next tap's, or the panels' padding)
    c00 = fma_lane<0>(a, ws, v0, c00);
    c01 = fma_lane<0>(a, ws, v1, c01);
    c10 = fma_lane<1>(a, ws, v0, c10);
    c11 = fma_lane<1>(a, ws, v1, c11);
    c20 = fma_lane<2>(a, ws, v0, c20);
    c21 = fma_lane<2>(a, ws, v1, c21);
    c30 = fma_lane<3>(a, ws, v0, c30);
    c31 = fma_lane<3>(a, ws, v1, c31);
    c40 = fma_lane<4>(a, ws, v0, c40);
    c41 = fma_lane<4>(a, ws, v1, c41);
    c50 = fma_lane<5>(a, ws, v0, c50);
    c51 = fma_lane<5>(a, ws, v1, c51);
  }
  store(acc + 0, c00);
  store(acc + 8, c01);
  store(acc + 16, c10);
  store(acc + 24, c11);
  store(acc + 32, c20);
  store(acc + 40, c21);
  store(acc + 48, c30);
  store(acc + 56, c31);
  store(acc + 64, c40);
  store(acc + 72, c41);
  store(acc + 80, c50);
  store(acc + 88, c51);
}

using BlockedTileFn = void (*)(const BlockedShape&, const float*, const float*, float*);

void blocked_forward_tiles(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  const int64_t s = p.stride, Hp = p.H + 2 * p.pad, Wp = p.W + 2 * p.pad;
  const int64_t pw = (Wp + s - 1) / s, taps = p.C * p.R * p.S, panels = (p.K + 5) / 6;
  const int64_t plane = Hp * s * pw;  // one channel of P
  // ROWS rows of 16/ROWS outputs per tile
  const int rows = p.OW % 16 == 0 ? 1 : p.OW == 8 ? 2 : 4;
  const int64_t tile_w = 16 / rows;
  const BlockedTileFn tile = rows == 1 ? blocked_tile<1> : rows == 2 ? blocked_tile<2> : blocked_tile<4>;
  std::vector<float> wp(static_cast<size_t>(panels * taps * 6 + 2), 0.0f);  // + 2: the last tap's vector load
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t t = 0; t < taps; ++t) wp[((k / 6) * taps + t) * 6 + k % 6] = w[k * taps + t];
  std::vector<int64_t> off(static_cast<size_t>(taps));
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t t = 0; t < p.S; ++t) off[(c * p.R + r) * p.S + t] = c * plane + (r * s + t % s) * pw + t / s;
  const BlockedShape shape{taps, off.data(), wp.data(), s * s * pw};
  // work items: (image, group of panels); several groups when there are few images
  const int64_t groups = std::min<int64_t>(panels, std::max<int64_t>(1, (4 * num_threads() + p.N - 1) / p.N));
  parallel_for(p.N * groups, 1, [&](int64_t i0, int64_t i1) {
    alignas(32) float acc[96];
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / groups, g = item % groups;
      const int64_t kp0 = panels * g / groups, kp1 = panels * (g + 1) / groups;
      // P for image n: zero-padded, phase layout
      float* P = scratch(0, static_cast<size_t>(p.C * plane));
      for (int64_t c = 0; c < p.C; ++c) {
        const float* src = x + (n * p.C + c) * p.H * p.W;
        for (int64_t u = 0; u < Hp; ++u) {
          const int64_t ih = u - p.pad;
          for (int64_t q = 0; q < s; ++q) {
            float* d = P + c * plane + (u * s + q) * pw;
            if (ih < 0 || ih >= p.H) {
              std::fill(d, d + pw, 0.0f);
              continue;
            }
            for (int64_t j = 0; j < pw; ++j) {
              const int64_t iw = j * s + q - p.pad;
              d[j] = iw >= 0 && iw < p.W ? src[ih * p.W + iw] : 0.0f;
            }
          }
        }
      }
      for (int64_t kp = kp0; kp < kp1; ++kp) {
        const float* wpp = wp.data() + kp * taps * 6;
        const int64_t kn = std::min<int64_t>(6, p.K - kp * 6);
        for (int64_t oh = 0; oh < p.OH; oh += rows)
          for (int64_t ow0 = 0; ow0 < p.OW; ow0 += tile_w) {
            // rows past OH (when OH is not a multiple of ROWS) read P rows that exist (zero
            // padding or real rows) and are not stored
            const int64_t oh_safe = std::min<int64_t>(oh, p.OH - rows < 0 ? 0 : p.OH - rows);
            tile(shape, P + oh_safe * shape.row_step + ow0, wpp, acc);
            for (int64_t r = 0; r < kn; ++r) {
              const int64_t k = kp * 6 + r;
              const float b = bias ? bias[k] : 0.0f;
              for (int64_t i = 0; i < rows; ++i) {
                const int64_t row = oh_safe + i;
                if (row < oh || row >= p.OH) continue;
                float* out = y + ((n * p.K + k) * p.OH + row) * p.OW + ow0;
                const float* a = acc + r * 16 + i * tile_w;
                for (int64_t c = 0; c < tile_w; ++c) out[c] = a[c] + b;
              }
            }
          }
      }
    }
  });
}

// Backward-data of a 4x4 stride-2 conv as four stride-1 2x2 convs, one per phase (a, b) of dx
// (rows 2i + a, columns 2j + b), on the blocked tiles: dx[c, 2i + a, 2j + b] = sum over (k, t, u)
// of w[k, c, r0 + 2t, s0 + 2u] dy[k, i + ba - t, j + bb - u], with r0 = (a + pad) mod 2 and
// ba = (a + pad - r0) / 2 (columns alike). dy is copied once per image into a zero-padded plane,
// so every tap is an offset; no packing, no col2im, and each dx element is written once.
void blocked_backward_data_tiles(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const int64_t Hp = (p.H + 1) / 2, Wp = (p.W + 1) / 2;  // phase sizes (phase 1 may be one shorter)
  const int rows = Wp % 16 == 0 ? 1 : Wp == 8 ? 2 : 4;
  const int64_t tile_w = 16 / rows, taps = p.K * 4, panels = (p.C + 5) / 6;
  // the taps' offsets per axis: base - t over both phases; the padded plane must hold them all
  int64_t lo = 0, hi = 0;
  for (int a = 0; a < 2; ++a) {
    const int64_t r0 = (a + p.pad) % 2, base = (a + p.pad - r0) / 2;
    lo = std::min(lo, base - 1);
    hi = std::max(hi, base);
  }
  const int64_t pt = -lo, ph = std::max<int64_t>(0, Hp - 1 + hi - (p.OH - 1)), pwr = std::max<int64_t>(0, Wp - 1 + hi - (p.OW - 1));
  const int64_t DH = p.OH + pt + ph, DW = p.OW + pt + pwr, plane = DH * DW;
  const BlockedTileFn tile = rows == 1 ? blocked_tile<1> : rows == 2 ? blocked_tile<2> : blocked_tile<4>;
  // per phase: the weight panels (C/6 panels, taps, 6) and the tap offsets
  std::vector<float> wp(static_cast<size_t>(4 * panels * taps * 6 + 2), 0.0f);  // + 2: as in the forward
  std::vector<int64_t> off(static_cast<size_t>(4 * taps));
  for (int ab = 0; ab < 4; ++ab) {
    const int64_t a = ab >> 1, b = ab & 1, ra = (a + p.pad) % 2, rb = (b + p.pad) % 2;
    const int64_t ba = (a + p.pad - ra) / 2, bb = (b + p.pad - rb) / 2;
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t t = 0; t < 2; ++t)
        for (int64_t u = 0; u < 2; ++u) {
          const int64_t tap = (k * 2 + t) * 2 + u;
          off[ab * taps + tap] = k * plane + (ba - t) * DW + (bb - u);
          for (int64_t c = 0; c < p.C; ++c)
            wp[((ab * panels + c / 6) * taps + tap) * 6 + c % 6] = w[((k * p.C + c) * 4 + ra + 2 * t) * 4 + rb + 2 * u];
        }
  }
  const int64_t groups = std::min<int64_t>(panels, std::max<int64_t>(1, (4 * num_threads() + p.N - 1) / p.N));
  parallel_for(p.N * groups, 1, [&](int64_t i0, int64_t i1) {
    alignas(32) float acc[96];
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / groups, g = item % groups;
      const int64_t cp0 = panels * g / groups, cp1 = panels * (g + 1) / groups;
      float* D = scratch(0, static_cast<size_t>(p.K * plane));
      for (int64_t k = 0; k < p.K; ++k) {
        float* d = D + k * plane;
        std::fill(d, d + pt * DW, 0.0f);
        for (int64_t y = 0; y < p.OH; ++y) {
          float* row = d + (pt + y) * DW;
          std::fill(row, row + pt, 0.0f);
          std::memcpy(row + pt, dy + ((n * p.K + k) * p.OH + y) * p.OW, static_cast<size_t>(p.OW) * sizeof(float));
          std::fill(row + pt + p.OW, row + DW, 0.0f);
        }
        std::fill(d + (pt + p.OH) * DW, d + plane, 0.0f);
      }
      for (int ab = 0; ab < 4; ++ab) {
        const int64_t a = ab >> 1, b = ab & 1;
        const int64_t ha = (p.H - a + 1) / 2, wb = (p.W - b + 1) / 2;  // this phase's rows and columns
        const BlockedShape shape{taps, off.data() + ab * taps, nullptr, DW};
        for (int64_t cp = cp0; cp < cp1; ++cp) {
          const float* wpp = wp.data() + (ab * panels + cp) * taps * 6;
          const int64_t cn = std::min<int64_t>(6, p.C - cp * 6);
          for (int64_t i = 0; i < ha; i += rows)
            for (int64_t j0 = 0; j0 < wb; j0 += tile_w) {
              const int64_t i_safe = std::min<int64_t>(i, std::max<int64_t>(0, Hp - rows));
              tile(shape, D + (pt + i_safe) * DW + pt + j0, wpp, acc);
              for (int64_t r = 0; r < cn; ++r) {
                float* plane_out = dx + (n * p.C + cp * 6 + r) * p.H * p.W;
                for (int64_t q = 0; q < rows; ++q) {
                  const int64_t row = i_safe + q;
                  if (row < i || row >= ha) continue;
                  float* out = plane_out + (2 * row + a) * p.W + b;
                  const float* src = acc + r * 16 + q * tile_w;
                  for (int64_t c = 0; c < tile_w && j0 + c < wb; ++c) out[2 * (j0 + c)] = src[c];
                }
              }
            }
        }
      }
    }
  });
}

#endif  // C3_VEC8

}  // namespace

bool direct_loops_available() {
#ifdef C3_VEC8
  return vec8::available();
#else
  return false;
#endif
}

void set_direct_conv_enabled(bool on) { enabled_flag() = on; }
bool direct_conv_enabled() { return enabled_flag(); }

bool direct_conv_applies(const Conv2dParams& p, ConvPass pass) {
#ifdef C3_VEC8
  if (!enabled_flag() || !vec8::available() || p.stride != 1 || p.R > 3 || p.S > 3 || p.N <= 0 || p.OH <= 0 ||
      p.OW <= 0 || p.C <= 0 || p.K <= 0)
    return false;
  switch (pass) {
    case ConvPass::Forward: return p.K <= kMaxForwardK;
    case ConvPass::BackwardData: return p.C <= kMaxDataC && p.R == p.S && p.pad <= p.R - 1;
    case ConvPass::BackwardWeight: return p.K * p.C <= kMaxWeightPairs;
  }
#endif
  (void)p;
  (void)pass;
  return false;
}

bool blocked_forward_applies(const Conv2dParams& p) {
#ifdef C3_VEC8
  // strided convs (stride 1 has Winograd, the direct loops and the implicit GEMM's plain copies),
  // rows that make whole tiles, enough channels to fill the 6-row panels, and a map no taller
  // than a tile needs (OH >= rows per tile)
  const int rows = p.OW % 16 == 0 ? 1 : p.OW == 8 ? 2 : p.OW == 4 ? 4 : 0;
  if (!enabled_flag() || !vec8::available() || p.stride <= 1 || rows == 0 || p.OH < rows || p.K < 6 || p.N <= 0 ||
      p.C <= 0)
    return false;
  // a tile's loop over the taps must be long enough to pay for its setup and stores, and the
  // four-row tiles (four cache lines per tap) need the image's padded input to stay near L1
  const int64_t taps = p.C * p.R * p.S;
  const int64_t image = p.C * (p.H + 2 * p.pad) * (p.W + 2 * p.pad);
  return taps >= kMinBlockedTaps && (rows < 4 || image <= kMaxFourRowImage);
#else
  (void)p;
  return false;
#endif
}

bool blocked_backward_data_applies(const Conv2dParams& p) {
#ifdef C3_VEC8
  // 4x4 stride 2 (D's downsampling convs), phases of whole 16-, 8- or 4-wide tiles, a tap loop
  // long enough for the tiles' setup and stores, the padded dy of an image near L2, and weights
  // that stay in L2 (each tile reads all of its panel's: D's 512 -> 512 at 128 px, 16 MiB of them,
  // ran at a third of the Winograd path's rate; 64 -> 128 and smaller beat both GEMM paths)
  const int64_t Hp = (p.H + 1) / 2, Wp = (p.W + 1) / 2;
  const int rows = Wp % 16 == 0 ? 1 : Wp == 8 ? 2 : Wp == 4 ? 4 : 0;
  if (!enabled_flag() || !vec8::available() || p.stride != 2 || p.R != 4 || p.S != 4 || p.pad < 0 || p.pad > 3 ||
      rows == 0 || Hp < rows || p.C < 6 || p.N <= 0 || p.K <= 0 || p.OH <= 0 || p.OW <= 0 || p.W % 2 != 0)
    return false;
  const int64_t image = p.K * (p.OH + 4) * (p.OW + 4);
  return p.K * 4 >= kMinBlockedTaps && image <= kMaxBlockedDataImage && p.K * p.C * 16 <= kMaxBlockedDataWeights;
#else
  (void)p;
  return false;
#endif
}

void blocked_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
#ifdef C3_VEC8
  blocked_backward_data_tiles(p, dy, w, dx);
#else
  (void)p, (void)dy, (void)w, (void)dx;
#endif
}

void blocked_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
#ifdef C3_VEC8
  blocked_forward_tiles(p, x, w, bias, y);
#else
  conv2d_forward_reference(p, x, w, bias, y);
#endif
}

void set_direct_wide_registers(bool on) {
#ifdef C3_VEC8_X86
  wide_flag() = on && wide_supported();
#else
  (void)on;
#endif
}

bool direct_wide_registers() {
#ifdef C3_VEC8
  return wide_flag();
#else
  return false;
#endif
}

void direct_conv_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                         float* moments) {
#ifdef C3_VEC8
  forward_loops(p.N, p.C, p.H, p.W, p.K, p.R, p.S, p.pad, p.OH, p.OW, x, w, bias, y, moments);
#else
  conv2d_forward_reference(p, x, w, bias, y);
  if (moments) channel_moments(p.N, p.K, p.OH * p.OW, y, moments);
#endif
}

void direct_conv_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
#ifdef C3_VEC8
  // dx = dy correlated with wt[c, k] = w[k, c] rotated 180 degrees, padding R-1-pad (S-1-pad)
  const int64_t RS = p.R * p.S;
  std::vector<float> wt(static_cast<size_t>(p.C * p.K * RS));
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t i = 0; i < RS; ++i) wt[(c * p.K + k) * RS + i] = w[(k * p.C + c) * RS + RS - 1 - i];
  // the forward pads both axes by one amount, and R-1-pad differs from S-1-pad for rectangular
  // kernels: those take the reference loops (direct_conv_applies routes none of them here)
  if (p.R != p.S || p.pad > p.R - 1) return conv2d_backward_data_reference(p, dy, w, dx);
  forward_loops(p.N, p.K, p.OH, p.OW, p.C, p.R, p.S, p.R - 1 - p.pad, p.H, p.W, dy, wt.data(), nullptr, dx);
#else
  conv2d_backward_data_reference(p, dy, w, dx);
#endif
}

void direct_conv_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
#ifdef C3_VEC8
  backward_weight_loops(p, dy, x, dw);
#else
  conv2d_backward_weight_reference(p, dy, x, dw);
#endif
}

}  // namespace c3::cpu
