// Winograd F(m x m, 3x3) (Lavin & Gray 2016) for 3x3 stride-1 convolutions, m = 2 or 4, on the
// machinery of winograd_core.h: a tile costs a^2 multiplies per (output, input) channel pair
// instead of 9 m^2 (16 vs 36 for m = 2, 36 vs 144 for m = 4). F(2x2) only adds, subtracts and
// halves (errors within a few ulps of the direct sums, ~6e-7 of the output's scale); F(4x4) has
// transform entries up to 8 and 1/24 and loses about a decimal digit (~5e-6), so it is chosen
// only where it saves at least 30% of F(2x2)'s products (maps of whole 4x4 tiles: 4x4, 8x8, 16x16,
// ...) with 64 tiles or more. native/test/test_speed_paths.cc measures both against the float64
// direct conv.
#include "winograd.h"

#include <cstdlib>
#include <cstring>

#include "winograd_core.h"

namespace c3::cpu {
namespace {

// Where the GEMMs win (measured on Zen 1, one and two threads, alternating with the implicit GEMM
// in one process): forward and backward-data multiply (K x C) by (C x tiles) and need some
// channels and tiles (32: D's 512-channel 4x4 maps at batch 8; at 16 the GEMM wins);
// backward-weight multiplies (C x tiles) by (tiles x K) into C x K products and needs wide
// layers (on 4x4 maps at batch 32 it takes half the implicit GEMM's time).
constexpr int64_t kMinChannels = 16, kMinDepth = 32, kMinChannelSum = 48, kMinTiles = 32;
// F(4x4)'s 36 transformed kernels per pair cost more to make and pack: it needs more tiles. The
// forward and backward-data take it from 32 tiles (D's 512-channel 4x4 maps at batch 32: one tile
// per image, 30% faster than F(2x2) on Zen 4 though its 36 MiB of panels stream from memory);
// backward-weight, whose 36 products per tile are C x K outer-product sums, from 64.
constexpr int64_t kMinTilesF4 = 32, kMinTilesF4Weight = 64;
constexpr int64_t kMinWeightChannels = 128;

bool initial_enabled() {
  const char* e = std::getenv("C3GAN_WINOGRAD");
  return !(e && std::strcmp(e, "0") == 0);
}

bool& enabled_flag() {
  static bool on = initial_enabled();
  return on;
}

// 0: choose by shape; 2 or 4: F(m x m, 3x3) always (set_winograd_tile, or C3GAN_WINOGRAD_TILE=2|4
// for measuring one against the other)
int initial_tile() {
  const char* e = std::getenv("C3GAN_WINOGRAD_TILE");
  const int m = e ? std::atoi(e) : 0;
  return m == 2 || m == 4 ? m : 0;
}
int& forced_tile() {
  static int m = initial_tile();
  return m;
}

// F(4x4) where the maps are whole 4x4 tiles and its 36 products per tile cost less than F(2x2)'s
// 4 x 16 would by a margin (at 6x6 maps they tie), with enough tiles for the GEMMs; else F(2x2).
int tile_size(int64_t N, int64_t OH, int64_t OW, int64_t min_tiles = kMinTilesF4) {
  if (forced_tile()) return forced_tile();
  const wino::Tiles t2(N, OH, OW, 2), t4(N, OH, OW, 4);
  return 36 * t4.total * 10 <= 16 * t2.total * 7 && t4.total >= min_tiles ? 4 : 2;
}

}  // namespace

void set_winograd_enabled(bool on) { enabled_flag() = on; }
bool winograd_enabled() { return enabled_flag(); }
void set_winograd_tile(int m) { forced_tile() = m == 2 || m == 4 ? m : 0; }

bool winograd_applies(const Conv2dParams& p, ConvPass pass) {
  if (!enabled_flag() || p.R != 3 || p.S != 3 || p.stride != 1 || p.pad > 2 || p.N <= 0 || p.OH <= 0 || p.OW <= 0)
    return false;
  const int64_t tiles = wino::Tiles(p.N, p.OH, p.OW, 2).total;
  const int64_t lo = std::min(p.C, p.K), hi = std::max(p.C, p.K);
  if (pass == ConvPass::BackwardWeight) return lo >= kMinWeightChannels && tiles >= kMinTiles && 16 * tiles >= hi;
  // the GEMMs are C deep in the forward, K deep in backward-data: a shallow product loses
  const int64_t depth = pass == ConvPass::BackwardData ? p.K : p.C;
  return depth >= kMinDepth && lo >= kMinChannels && p.C + p.K >= kMinChannelSum && tiles >= kMinTiles;
}

void winograd_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                      float* moments) {
  wino::with_block_moments(1, p.K, p.N, moments, [&](Moments* mp) {
    if (tile_size(p.N, p.OH, p.OW) == 4) wino::forward_m<wino::F43>(p, x, w, bias, y, mp);
    else wino::forward_m<wino::F23>(p, x, w, bias, y, mp);
  });
}

void winograd_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (tile_size(p.N, p.H, p.W) == 4) return wino::backward_data_m<wino::F43>(p, dy, w, dx);
  wino::backward_data_m<wino::F23>(p, dy, w, dx);
}

void winograd_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  if (tile_size(p.N, p.OH, p.OW, kMinTilesF4Weight) == 4) return wino::backward_weight_m<wino::F43>(p, dy, x, dw);
  wino::backward_weight_m<wino::F23>(p, dy, x, dw);
}

}  // namespace c3::cpu
