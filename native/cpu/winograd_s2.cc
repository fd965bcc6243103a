// 4x4 stride-2 convolutions (D's downsampling convs) as Winograd F(2x2, 2x2). Splitting the kernel
// taps by parity, r = 2t + a and s = 2u + b, turns
//   y[k, oy, ox] = sum_{c, r, s} w[k, c, r, s] x[c, 2 oy - pad + r, 2 ox - pad + s]
// into a 2x2 stride-1 correlation over four phase planes per input channel:
//   P[c*4 + a*2 + b, i, j] = x[c, 2i + a - pad, 2j + b - pad]   (zero outside x; OH+1 x OW+1)
//   w'[k, c*4 + a*2 + b, t, u] = w[k, c, 2t + a, 2u + b]
// so every pass is the stride-1 machinery of winograd_core.h on 4C channels: F(2x2, 2x2) takes 9
// multiplies per 2x2 output tile and channel pair instead of 16 (1.78x fewer) with integer
// transforms; on maps of whole 4x4 tiles F(4x4, 2x2) takes 25 per 4x4 tile instead of 64 (2.56x).
//   backward-data:   per phase of x (row and column parity), a 2x2 correlation of dy with the
//                    taps that reach it: four stride-1 convs C <- K whose tiles cover x once
//   backward-weight: dw' by the stride-1 backward-weight over P, then the taps put back in place
#include <cstdlib>
#include <cstring>

#include "conv_direct.h"
#include "winograd.h"
#include "winograd_core.h"
#include "thread_scratch.h"

namespace c3::cpu {
namespace {

// Where the products beat the implicit GEMM and the blocked direct forward (measured on Zen 4 and
// Zen 1, the model's shapes at batch 8 to 64, alternating in one process): the forward needs wide
// outputs (at K = 64 the direct loops win) and, on 4x4 outputs, wide inputs; backward-data needs
// enough channels and enough tiles per phase for its four per-phase products (512 -> 512 on 8x8
// maps at batch 8 has 32 and loses 2x); backward-weight needs wide inputs.
// The direct stride-1 weight-gradient loops over the phases (phased_direct_*) are for few
// channel pairs: D's first layer at 32 px (3 -> 32: 384 phase pairs, 1.2x the implicit GEMM,
// whose packing outweighs its products there); at 3 -> 64 they lose 5-10%. The forward over the
// phases measured no faster than the implicit GEMM.
constexpr int64_t kMaxPhasedDirectPairs = 512;
constexpr int64_t kMinChannels = 16, kMinForwardK = 128, kMinForwardCSmallMap = 128, kMinDataC = 128,
                  kMinDataCLargeMap = 64, kLargeMap = 8, kMinPhaseTiles = 64, kMinWeightC = 128, kMinWeightTiles = 64,
                  kMinChannelsF4 = 32;

bool initial_enabled() {
  const char* e = std::getenv("C3GAN_WINOGRAD_S2");
  return !(e && std::strcmp(e, "0") == 0);
}
bool& enabled_flag() {
  static bool on = initial_enabled();
  return on;
}

// 0: choose by shape; 2 or 4: F(m x m, 2x2) always (set_winograd_s2_tile, or
// C3GAN_WINOGRAD_S2_TILE=2|4 for measuring one against the other)
int initial_tile() {
  const char* e = std::getenv("C3GAN_WINOGRAD_S2_TILE");
  const int m = e ? std::atoi(e) : 0;
  return m == 2 || m == 4 ? m : 0;
}
int& forced_tile() {
  static int m = initial_tile();
  return m;
}

// F(4x4, 2x2) where it pays (wino::f42_pays) with enough tiles for its GEMMs' columns: 32 for the forward
// and backward-data (D's 4x4 outputs at batch 32: 0.7-0.8x F(2x2)'s time on Zen 4); the weight
// gradient sums over the tiles and needs 128 (at 32, 256 -> 512 on 4x4 or 8x8 outputs, F(2x2)
// wins by 10%). The four backward-data phases are x's half-size planes.
constexpr int64_t kMinTilesF4 = 32, kMinTilesF4Weight = 128;
int tile_for(const Conv2dParams& p, ConvPass pass) {
  if (forced_tile()) return forced_tile();
  const bool data = pass == ConvPass::BackwardData;
  const int64_t oh = data ? (p.H + 1) / 2 : p.OH, ow = data ? (p.W + 1) / 2 : p.OW;
  const int64_t min_tiles = pass == ConvPass::BackwardWeight ? kMinTilesF4Weight : kMinTilesF4;
  return wino::f42_pays(p.N, oh, ow, min_tiles) ? 4 : 2;
}

float* buffer(int which, size_t n) {
  thread_local ScratchBuffer bufs[2];
  return bufs[which].get(n);
}

// The stride-1 2x2 conv over the phases of p's input.
Conv2dParams phase_params(const Conv2dParams& p) {
  Conv2dParams q = p;
  q.C = 4 * p.C;
  q.H = p.OH + 1;
  q.W = p.OW + 1;
  q.R = q.S = 2;
  q.stride = 1;
  q.pad = 0;
  return q;
}

// Element e = (a*2 + b)*4 + t*2 + u of a kernel in phase order is tap (2t + a, 2u + b) of the 4x4.
inline int tap_of(int e) {
  const int ab = e >> 2, tu = e & 3;
  return ((tu >> 1) * 2 + (ab >> 1)) * 4 + (tu & 1) * 2 + (ab & 1);
}

// w from w' (the weight gradient over the phases): each (k, c) kernel's taps back in place
void unphase_weights(const Conv2dParams& p, const float* wp, float* w) {
  parallel_for(p.K * p.C, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int e = 0; e < 16; ++e) w[i * 16 + tap_of(e)] = wp[i * 16 + e];
  });
}

// P (N, 4C, PH, PW) from x (N, C, H, W)
void split_phases(const Conv2dParams& p, const float* x, float* P) {
  const int64_t PH = p.OH + 1, PW = p.OW + 1;
  parallel_for(p.N * p.C, 4, [&](int64_t i0, int64_t i1) {
    for (int64_t nc = i0; nc < i1; ++nc) {
      const float* plane = x + nc * p.H * p.W;
      for (int ab = 0; ab < 4; ++ab) {
        const int64_t a = ab >> 1, b = ab & 1;
        float* d = P + (nc * 4 + ab) * PH * PW;
        for (int64_t i = 0; i < PH; ++i) {
          const int64_t row = 2 * i + a - p.pad;
          float* dr = d + i * PW;
          if (row < 0 || row >= p.H) {
            std::memset(dr, 0, PW * sizeof(float));
            continue;
          }
          const float* src = plane + row * p.W;
          for (int64_t j = 0; j < PW; ++j) {
            const int64_t col = 2 * j + b - p.pad;
            dr[j] = col >= 0 && col < p.W ? src[col] : 0.0f;
          }
        }
      }
    }
  });
}

}  // namespace

void set_winograd_s2_enabled(bool on) { enabled_flag() = on; }
bool winograd_s2_enabled() { return enabled_flag(); }

bool winograd_s2_applies(const Conv2dParams& p, ConvPass pass) {
  if (!enabled_flag() || p.R != 4 || p.S != 4 || p.stride != 2 || p.pad < 0 || p.pad > 3 || p.N <= 0 || p.OH <= 0 ||
      p.OW <= 0 || p.C < kMinChannels)
    return false;
  // F(4x4, 2x2) beat every other path on the model's shapes from 32 channels (32 -> 64 on 8x8
  // outputs at batch 64: 0.8x the direct forward, 0.83x the blocked backward-data)
  if (tile_for(p, pass) == 4 && p.C >= kMinChannelsF4) return true;
  const int64_t tiles = wino::Tiles(p.N, p.OH, p.OW, 2).total;  // of the forward, and of each phase backward
  switch (pass) {
    case ConvPass::Forward: return p.K >= kMinForwardK && (p.OH >= kLargeMap || p.C >= kMinForwardCSmallMap);
    case ConvPass::BackwardData:
      return tiles >= kMinPhaseTiles && (p.C >= kMinDataC || (p.C >= kMinDataCLargeMap && p.OH >= kLargeMap));
    case ConvPass::BackwardWeight: return p.C >= kMinWeightC && tiles >= kMinWeightTiles;
  }
  return false;
}

bool phased_direct_applies(const Conv2dParams& p) {
  if (!enabled_flag() || p.R != 4 || p.S != 4 || p.stride != 2 || p.pad < 0 || p.pad > 3 || p.N <= 0 || p.OH <= 0 ||
      p.OW <= 0 || p.C <= 0 || p.K * p.C * 4 > kMaxPhasedDirectPairs)
    return false;
  return direct_conv_applies(phase_params(p), ConvPass::BackwardWeight);
}

void phased_direct_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const Conv2dParams q = phase_params(p);
  float* P = buffer(0, static_cast<size_t>(q.N * q.C * q.H * q.W));
  float* dwp = buffer(1, static_cast<size_t>(p.K * p.C * 16));
  split_phases(p, x, P);
  direct_conv_backward_weight(q, dy, P, dwp);
  unphase_weights(p, dwp, dw);
}

namespace {

template <class F>
void forward_f(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
               Moments* moments) {
  const Conv2dParams q = phase_params(p);
  float* P = buffer(0, static_cast<size_t>(q.N * q.C * q.H * q.W));
  split_phases(p, x, P);
  // the 2x2 kernel of phase channel c*4 + ab is taps (2t + a, 2u + b) of w[k, c]
  const wino::Packed Ap = wino::cached_weights<F>(0, w, p.K * p.C * 16, q.K, q.C, [&](int64_t k, int64_t d, float* g) {
    const float* src = w + (k * p.C + d / 4) * 16;
    for (int e = 0; e < 4; ++e) g[e] = src[tap_of((d % 4) * 4 + e)];
  });
  wino::winograd_conv<F>(q.N, q.C, q.H, q.W, q.K, 0, 0, q.OH, q.OW, P, Ap->data(), bias, y, moments);
}

template <class F>
void backward_data_f(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  // Per phase (al, be) of x: row 2m + al takes dy rows i - 1 and i, i = m + (al + pad) / 2, through
  // kernel rows 2 + a and a, a = (al + pad) mod 2 (columns alike): a 2x2 correlation of dy with
  // its own offset, whose outputs are exactly that phase's positions (tiles as in the forward).
  // The four phases' panels are one cache entry (one copy of w to compare against).
  const size_t per_phase = wino::packed_weights_size<F>(p.C, p.K);
  const uint64_t key = wino::cache_key({reinterpret_cast<uintptr_t>(w), 0x5200 + uint64_t(F::M), uint64_t(p.C),
                                        uint64_t(p.K), uint64_t(p.pad), uint64_t(gemm_micro_kernel().mr)});
  const wino::Packed panels = wino::packed_weights(key, w, p.K * p.C * 16, 4 * per_phase, [&](float* out) {
    for (int ph = 0; ph < 4; ++ph) {
      const int64_t a = ((ph >> 1) + p.pad) & 1, b = ((ph & 1) + p.pad) & 1;
      // the 2x2 kernel from dy channel k to this phase of x channel c: g[q][r] = w[k, c, 2(1 - q) + a, 2(1 - r) + b]
      wino::transform_weights<F>(p.C, p.K, [&](int64_t c, int64_t k, float* g) {
        const float* src = w + (k * p.C + c) * 16;
        for (int q = 0; q < 2; ++q)
          for (int r = 0; r < 2; ++r) g[q * 2 + r] = src[(2 * (1 - q) + a) * 4 + 2 * (1 - r) + b];
      }, out + ph * per_phase, true);
    }
  });
  for (int al = 0; al < 2; ++al)
    for (int be = 0; be < 2; ++be) {
      const int64_t Hp = (p.H - al + 1) / 2, Wp = (p.W - be + 1) / 2;
      if (Hp <= 0 || Wp <= 0) continue;
      const int64_t pad_y = 1 - (al + p.pad) / 2, pad_x = 1 - (be + p.pad) / 2;
      const float* Ap = panels->data() + (al * 2 + be) * per_phase;
      float* part = buffer(0, static_cast<size_t>(p.N * p.C * Hp * Wp));
      wino::winograd_conv<F>(p.N, p.K, p.OH, p.OW, p.C, pad_y, pad_x, Hp, Wp, dy, Ap, nullptr, part);
      parallel_for(p.N * p.C, 16, [&](int64_t i0, int64_t i1) {
        for (int64_t nc = i0; nc < i1; ++nc) {
          const float* s = part + nc * Hp * Wp;
          float* d = dx + nc * p.H * p.W + al * p.W + be;
          for (int64_t m = 0; m < Hp; ++m)
            for (int64_t l = 0; l < Wp; ++l) d[2 * m * p.W + 2 * l] = s[m * Wp + l];
        }
      });
    }
}

template <class F>
void backward_weight_f(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const Conv2dParams q = phase_params(p);
  float* P = buffer(0, static_cast<size_t>(q.N * q.C * q.H * q.W));
  float* dwp = buffer(1, static_cast<size_t>(p.K * p.C * 16));
  split_phases(p, x, P);
  wino::backward_weight_m<F>(q, dy, P, dwp);
  unphase_weights(p, dwp, dw);
}

}  // namespace

void set_winograd_s2_tile(int m) { forced_tile() = m == 2 || m == 4 ? m : 0; }
int winograd_s2_tile(const Conv2dParams& p, ConvPass pass) { return tile_for(p, pass); }

void winograd_s2_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                         float* moments) {
  wino::with_block_moments(1, p.K, p.N, moments, [&](Moments* mp) {
    if (tile_for(p, ConvPass::Forward) == 4) forward_f<wino::F42>(p, x, w, bias, y, mp);
    else forward_f<wino::F22>(p, x, w, bias, y, mp);
  });
}

void winograd_s2_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (tile_for(p, ConvPass::BackwardData) == 4) return backward_data_f<wino::F42>(p, dy, w, dx);
  backward_data_f<wino::F22>(p, dy, w, dx);
}

void winograd_s2_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  if (tile_for(p, ConvPass::BackwardWeight) == 4) return backward_weight_f<wino::F42>(p, dy, x, dw);
  backward_weight_f<wino::F22>(p, dy, x, dw);
}

}  // namespace c3::cpu
