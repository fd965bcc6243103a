// A 3x3 stride-1 pad-1 conv of a nearest-2x-upsampled input (the generator's upsample blocks),
// without the upsampled tensor and with fewer products. Output phase (a, b), positions
// (2i + a, 2j + b), reads the upsampled rows 2i + a - 1 .. 2i + a + 1, which are x's rows
// i - 1, i, i (a = 0) or i, i, i + 1 (a = 1): a 2x2 correlation of x with the kernel's rows summed
// into two, t = 0 <- {0} and t = 1 <- {1, 2} for a = 0, t = 0 <- {0, 1} and t = 1 <- {2} for a = 1
// (columns alike), x padded by 1 - a rows above. So every pass is the stride-1 2x2 machinery of
// winograd_core.h (F(2x2, 2x2) or F(4x4, 2x2)) on x's size:
//   forward:         per phase, one product of the phase's summed kernel with x, scattered into y
//   backward-data:   with Q[k*4 + ab, p, q] = dy_ab[k, p - a, q - b] ((H+1) x (W+1), zero outside),
//                    dx = one 2x2 correlation of Q (4K channels) with each phase's kernel flipped
//   backward-weight: per phase, the 2x2 weight gradient of dy_ab against x, its taps added back
//                    into the 3x3 kernel
// Against Winograd F(4x4, 3x3) on the upsampled map: 4 x 25 products per 4x4 tile of x where
// that takes 4 x 36, transforms of a map a quarter the size, and no upsampled tensor.
#include <cstring>
#include <vector>

#include "../core/threadpool.h"
#include "kernels.h"
#include "winograd.h"
#include "winograd_core.h"
#include "thread_scratch.h"

namespace c3::cpu {
namespace {

// Where the products beat upsampling then the 3x3 path (Zen 4, the generator's shapes, weights
// changing every other call as in training): channels for the GEMMs, tiles for their columns,
// and maps from 8x8 (on 4x4 maps the four phases' 100 transformed taps per channel pair, against
// F(4x4, 3x3)'s 36, cost more to make and stream than the products save: 1.1-1.5x slower).
constexpr int64_t kMinChannels = 32, kMinOutChannels = 16, kMinMap = 8, kMinTiles = 32, kMinTilesF4 = 32,
                  kMinTilesF4Weight = 128;

float* buffer(int which, size_t n) {
  thread_local ScratchBuffer bufs[4];
  return bufs[which].get(n);
}

// The four phases' 2x2 kernels of every (k, c): pk[((ab * K + k) * C + c) * 4 + t * 2 + u], made
// once per transform so the Winograd weight transforms read them as plain 2x2 kernels.
const float* phase_kernels(int64_t K, int64_t C, const float* w) {
  float* pk = buffer(3, static_cast<size_t>(16 * K * C));
  parallel_for(K * C, 1024, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* g = w + i * 9;
      // rows summed per phase: a = 0 -> {r0, r1 + r2}, a = 1 -> {r0 + r1, r2}
      float rows[2][2][3];
      for (int c = 0; c < 3; ++c) {
        rows[0][0][c] = g[c], rows[0][1][c] = g[3 + c] + g[6 + c];
        rows[1][0][c] = g[c] + g[3 + c], rows[1][1][c] = g[6 + c];
      }
      for (int ab = 0; ab < 4; ++ab) {
        const int a = ab >> 1, b = ab & 1;
        float* o = pk + ((ab * K * C) + i) * 4;
        for (int t = 0; t < 2; ++t) {
          const float* r = rows[a][t];
          o[t * 2 + 0] = b ? r[0] + r[1] : r[0];
          o[t * 2 + 1] = b ? r[2] : r[1] + r[2];
        }
      }
    }
  });
  return pk;
}

// dy_ab (4 phases, each (N, K, H, W)) from dy (N, K, 2H, 2W)
void split_output_phases(int64_t NK, int64_t H, int64_t W, const float* dy, float* out) {
  parallel_for(NK, 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int ab = 0; ab < 4; ++ab) {
        const int a = ab >> 1, b = ab & 1;
        float* d = out + (ab * NK + i) * H * W;
        const float* s = dy + i * 4 * H * W + a * 2 * W + b;
        for (int64_t r = 0; r < H; ++r)
          for (int64_t c = 0; c < W; ++c) d[r * W + c] = s[r * 4 * W + 2 * c];
      }
  });
}

// Q (N, 4K, H+1, W+1): Q[k*4 + ab, p, q] = dy[k, 2(p - a) + a, 2(q - b) + b], zero outside
void shifted_phases(int64_t NK, int64_t H, int64_t W, const float* dy, float* Q) {
  const int64_t QH = H + 1, QW = W + 1;
  parallel_for(NK, 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int ab = 0; ab < 4; ++ab) {
        const int a = ab >> 1, b = ab & 1;
        float* d = Q + (i * 4 + ab) * QH * QW;
        const float* s = dy + i * 4 * H * W;
        for (int64_t p = 0; p < QH; ++p) {
          float* row = d + p * QW;
          const int64_t r = p - a;
          if (r < 0 || r >= H) {
            std::memset(row, 0, static_cast<size_t>(QW) * sizeof(float));
            continue;
          }
          const float* sr = s + (2 * r + a) * 2 * W + b;
          row[0] = b ? 0.0f : sr[0];
          for (int64_t q = 1; q < W; ++q) row[q] = sr[2 * (q - b)];
          row[W] = b ? sr[2 * (W - 1)] : 0.0f;
        }
      }
  });
}

// moments: null, or 4 * K * image blocks items (phase-major; winograd_conv's per phase)
template <class F>
void forward_f(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
               Moments* moments) {
  const size_t per_phase = wino::packed_weights_size<F>(p.K, p.C);
  const uint64_t key = wino::cache_key({reinterpret_cast<uintptr_t>(w), 0x5500 + uint64_t(F::M), uint64_t(p.C),
                                        uint64_t(p.K), uint64_t(gemm_micro_kernel().mr)});
  const wino::Packed panels = wino::packed_weights(key, w, p.K * p.C * 9, 4 * per_phase, [&](float* out) {
    const float* pk = phase_kernels(p.K, p.C, w);
    for (int ab = 0; ab < 4; ++ab) {
      const float* ph = pk + ab * p.K * p.C * 4;
      wino::transform_weights<F>(p.K, p.C, [&](int64_t k, int64_t c, float* g) {
        std::memcpy(g, ph + (k * p.C + c) * 4, 4 * sizeof(float));
      }, out + ab * per_phase);
    }
  });
  float* part = buffer(0, static_cast<size_t>(p.N * p.K * p.H * p.W));
  const int64_t OW = 2 * p.W;
  for (int ab = 0; ab < 4; ++ab) {
    const int a = ab >> 1, b = ab & 1;
    wino::winograd_conv<F>(p.N, p.C, p.H, p.W, p.K, 1 - a, 1 - b, p.H, p.W, x, panels->data() + ab * per_phase, bias,
                           part, moments ? moments + ab * p.K * wino::image_blocks(p.N) : nullptr);
    parallel_for(p.N * p.K, 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float* s = part + i * p.H * p.W;
        float* d = y + i * 4 * p.H * p.W + a * OW + b;
        for (int64_t r = 0; r < p.H; ++r)
          for (int64_t c = 0; c < p.W; ++c) d[2 * r * OW + 2 * c] = s[r * p.W + c];
      }
    });
  }
}

template <class F>
void backward_data_f(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const int64_t QC = 4 * p.K;
  float* Q = buffer(0, static_cast<size_t>(p.N * QC * (p.H + 1) * (p.W + 1)));
  shifted_phases(p.N * p.K, p.H, p.W, dy, Q);
  // rows: x's channels c; depth: Q's channels k*4 + ab, whose kernel is phase ab's flipped
  const float* pk = nullptr;  // made only when the panels are (not on a cache hit)
  const wino::Packed Ap = wino::cached_weights<F>(0x55, w, p.K * p.C * 9, p.C, QC, [&](int64_t c, int64_t d, float* g) {
    const float* k2 = pk + (((d % 4) * p.K + d / 4) * p.C + c) * 4;
    for (int e = 0; e < 4; ++e) g[e] = k2[3 - e];
  }, true, [&] { pk = phase_kernels(p.K, p.C, w); });
  wino::winograd_conv<F>(p.N, QC, p.H + 1, p.W + 1, p.C, 0, 0, p.H, p.W, Q, Ap->data(), nullptr, dx);
}

template <class F>
void backward_weight_f(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const int64_t NK = p.N * p.K, plane = NK * p.H * p.W;
  float* phases = buffer(1, static_cast<size_t>(4 * plane));
  float* dw2 = buffer(2, static_cast<size_t>(p.K * p.C * 4));
  split_output_phases(NK, p.H, p.W, dy, phases);
  std::memset(dw, 0, static_cast<size_t>(p.K * p.C * 9) * sizeof(float));
  const int lo[2][2] = {{0, 1}, {0, 2}}, hi[2][2] = {{0, 2}, {1, 2}};
  for (int ab = 0; ab < 4; ++ab) {
    const int a = ab >> 1, b = ab & 1;
    wino::backward_weight_padded<F>(p.N, p.C, p.H, p.W, p.K, 1 - a, 1 - b, p.H, p.W, phases + ab * plane, x, dw2);
    parallel_for(p.K * p.C, 256, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int t = 0; t < 2; ++t)
          for (int u = 0; u < 2; ++u) {
            const float v = dw2[i * 4 + t * 2 + u];
            for (int r = lo[a][t]; r <= hi[a][t]; ++r)
              for (int c = lo[b][u]; c <= hi[b][u]; ++c) dw[i * 9 + r * 3 + c] += v;
          }
    });
  }
}

// The conv of the upsampled input, p its parameters on x: (N, C, 2H, 2W) -> (N, K, 2H, 2W).
Conv2dParams upsampled(const Conv2dParams& p) {
  Conv2dParams q = p;
  q.H = q.OH = 2 * p.H;
  q.W = q.OW = 2 * p.W;
  return q;
}

}  // namespace

bool conv2d_up_applies(const Conv2dParams& p) {
  if (!winograd_s2_enabled() || p.R != 3 || p.S != 3 || p.stride != 1 || p.pad != 1 || p.N <= 0 || p.H <= 0 ||
      p.W <= 0)
    return false;
  return p.C >= kMinChannels && p.K >= kMinOutChannels && p.H >= kMinMap && p.W >= kMinMap &&
         wino::Tiles(p.N, p.H, p.W, 2).total >= kMinTiles;
}

void conv2d_up_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                       float* moments) {
  if (p.N * p.K * p.H * p.W == 0) {
    if (moments) channel_moments(p.N, p.K, 4 * p.H * p.W, y, moments);
    return;
  }
  if (!conv2d_up_applies(p)) {  // upsample, then the 3x3 conv's own path
    const Conv2dParams q = upsampled(p);
    float* u = buffer(0, static_cast<size_t>(q.N * q.C * q.H * q.W));
    upsample2x_forward(p.N * p.C, p.H, p.W, x, u);
    return conv2d_forward(q, u, w, bias, y, moments);
  }
  wino::with_block_moments(4, p.K, p.N, moments, [&](Moments* mp) {
    if (wino::f42_pays(p.N, p.H, p.W, kMinTilesF4)) forward_f<wino::F42>(p, x, w, bias, y, mp);
    else forward_f<wino::F22>(p, x, w, bias, y, mp);
  });
}

void conv2d_up_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (p.N * p.C * p.H * p.W == 0) return;
  if (!conv2d_up_applies(p)) {  // the 3x3 conv's gradient at the upsampled input, then summed 2x2
    const Conv2dParams q = upsampled(p);
    float* du = buffer(0, static_cast<size_t>(q.N * q.C * q.H * q.W));
    conv2d_backward_data(q, dy, w, du);
    return upsample2x_backward(p.N * p.C, p.H, p.W, du, dx);
  }
  if (wino::f42_pays(p.N, p.H, p.W, kMinTilesF4)) return backward_data_f<wino::F42>(p, dy, w, dx);
  backward_data_f<wino::F22>(p, dy, w, dx);
}

void conv2d_up_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  if (p.K * p.C == 0) return;
  if (!conv2d_up_applies(p)) {
    const Conv2dParams q = upsampled(p);
    float* u = buffer(0, static_cast<size_t>(q.N * q.C * q.H * q.W));
    upsample2x_forward(p.N * p.C, p.H, p.W, x, u);
    return conv2d_backward_weight(q, dy, u, dw);
  }
  if (wino::f42_pays(p.N, p.H, p.W, kMinTilesF4Weight)) return backward_weight_f<wino::F42>(p, dy, x, dw);
  backward_weight_f<wino::F22>(p, dy, x, dw);
}

// ---- the plain loops: upsample, then the direct conv's

void conv2d_up_forward_reference(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  const Conv2dParams q = upsampled(p);
  std::vector<float> u(static_cast<size_t>(q.N * q.C * q.H * q.W));
  upsample2x_forward(p.N * p.C, p.H, p.W, x, u.data());
  conv2d_forward_reference(q, u.data(), w, bias, y);
}

void conv2d_up_backward_data_reference(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const Conv2dParams q = upsampled(p);
  std::vector<float> du(static_cast<size_t>(q.N * q.C * q.H * q.W));
  conv2d_backward_data_reference(q, dy, w, du.data());
  upsample2x_backward(p.N * p.C, p.H, p.W, du.data(), dx);
}

void conv2d_up_backward_weight_reference(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const Conv2dParams q = upsampled(p);
  std::vector<float> u(static_cast<size_t>(q.N * q.C * q.H * q.W));
  upsample2x_forward(p.N * p.C, p.H, p.W, x, u.data());
  conv2d_backward_weight_reference(q, dy, u.data(), dw);
}

}  // namespace c3::cpu
