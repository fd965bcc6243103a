// The constant channels of a stride-1 'same' conv (backend.h: conv2d_code_channels). Channel
// c0 + j of the input is code[n, j] everywhere inside the image and zero in the padding, so its
// part of the output is a per-position bias: at (h, w) the code meets exactly the taps (r, s)
// that fall inside the image,
//   y[n, k, h, w] += sum over those taps of G[n, k, r, s],  G = sum_j code[n, j] w[k, c0 + j, r, s]
// and its gradients need only box sums of dy, one per tap (the positions where that tap is inside):
//   D[n, k, r, s] = sum of dy[n, k, h, w] over those positions,
//   dw[k, c0 + j, r, s] = sum_n code[n, j] D[n, k, r, s],   dcode[n, j] = sum_{k,r,s} w[k, c0 + j, r, s] D[n, k, r, s].
// That is a few small GEMMs and O(N K H W) adds instead of the conv's O(N K H W Kc R S) MACs.
#include <algorithm>
#include <vector>

#include "../core/threadpool.h"
#include "gemm_kernels.h"
#include "kernels.h"

namespace c3::cpu {

namespace {

// Taps [lo, hi) of a size-`taps` kernel that are inside an image of extent `size` at output o
// (stride 1, padding pad).
inline void inside_taps(int64_t o, int64_t size, int64_t taps, int64_t pad, int64_t& lo, int64_t& hi) {
  lo = std::max<int64_t>(0, pad - o);
  hi = std::min<int64_t>(taps, size + pad - o);
  if (hi < lo) hi = lo;
}

// Outputs [lo, hi) of extent `out` at which tap t is inside an image of extent `size`; within
// [0, out] even when the padding exceeds the map (the prefix sums are indexed with both ends).
inline void tap_outputs(int64_t t, int64_t size, int64_t out, int64_t pad, int64_t& lo, int64_t& hi) {
  lo = std::min<int64_t>(out, std::max<int64_t>(0, pad - t));
  hi = std::min<int64_t>(out, size + pad - t);
  if (hi < lo) hi = lo;
}

// wt (Kc x K*R*S): wt[j, (k, r, s)] = w[k, c0 + j, r, s]
std::vector<float> code_weights(const Conv2dParams& p, int64_t Kc, const float* w) {
  const int64_t RS = p.R * p.S, c0 = p.C - Kc, krs = p.K * RS;
  std::vector<float> wt(static_cast<size_t>(Kc * krs));
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t j = 0; j < Kc; ++j)
      std::copy(w + (k * p.C + c0 + j) * RS, w + (k * p.C + c0 + j + 1) * RS, wt.data() + j * krs + k * RS);
  return wt;
}

void forward(const Conv2dParams& p, int64_t Kc, const float* code, const float* w, float* y) {
  const int64_t RS = p.R * p.S, krs = p.K * RS, OHW = p.OH * p.OW;
  const std::vector<float> wt = code_weights(p, Kc, w);
  std::vector<float> G(static_cast<size_t>(p.N * krs));  // (N, K, R, S)
  gemm_strided(false, false, p.N, krs, Kc, 1.0f, code, Kc, wt.data(), krs, 0.0f, G.data(), krs);
  parallel_for(p.N * p.K, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, OHW)), [&](int64_t i0, int64_t i1) {
    std::vector<double> col(static_cast<size_t>(p.S));
    for (int64_t i = i0; i < i1; ++i) {
      const float* g = G.data() + i * RS;
      float* plane = y + i * OHW;
      for (int64_t h = 0; h < p.OH; ++h) {
        int64_t rlo, rhi;
        inside_taps(h, p.H, p.R, p.pad, rlo, rhi);
        // col[s]: the inside rows of tap column s; then each w adds the inside columns
        for (int64_t s = 0; s < p.S; ++s) {
          double v = 0;
          for (int64_t r = rlo; r < rhi; ++r) v += g[r * p.S + s];
          col[s] = v;
        }
        double all = 0;
        for (int64_t s = 0; s < p.S; ++s) all += col[s];
        float* row = plane + h * p.OW;
        const float interior = static_cast<float>(all);
        for (int64_t x = 0; x < p.OW; ++x) {
          int64_t slo, shi;
          inside_taps(x, p.W, p.S, p.pad, slo, shi);
          if (slo == 0 && shi == p.S) {
            row[x] += interior;
          } else {
            double v = 0;
            for (int64_t s = slo; s < shi; ++s) v += col[s];
            row[x] += static_cast<float>(v);
          }
        }
      }
    }
  });
}

void backward(const Conv2dParams& p, int64_t Kc, const float* code, const float* w, const float* dy, float* dw,
              float* dcode) {
  const int64_t RS = p.R * p.S, krs = p.K * RS, OHW = p.OH * p.OW;
  std::vector<float> D(static_cast<size_t>(p.N * krs));  // (N, K, R, S)
  // D by prefix sums (in double): over w within each row, then over rows
  parallel_for(p.N * p.K, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, OHW)), [&](int64_t i0, int64_t i1) {
    std::vector<double> prefix(static_cast<size_t>(p.OW + 1));
    std::vector<double> rows(static_cast<size_t>((p.OH + 1) * p.S));  // rows[h+1][s] = sum over h' <= h
    for (int64_t i = i0; i < i1; ++i) {
      const float* plane = dy + i * OHW;
      std::fill(rows.begin(), rows.begin() + p.S, 0.0);
      for (int64_t h = 0; h < p.OH; ++h) {
        prefix[0] = 0;
        for (int64_t x = 0; x < p.OW; ++x) prefix[x + 1] = prefix[x] + plane[h * p.OW + x];
        for (int64_t s = 0; s < p.S; ++s) {
          int64_t lo, hi;
          tap_outputs(s, p.W, p.OW, p.pad, lo, hi);
          rows[(h + 1) * p.S + s] = rows[h * p.S + s] + (prefix[hi] - prefix[lo]);
        }
      }
      float* d = D.data() + i * RS;
      for (int64_t r = 0; r < p.R; ++r) {
        int64_t lo, hi;
        tap_outputs(r, p.H, p.OH, p.pad, lo, hi);
        for (int64_t s = 0; s < p.S; ++s) d[r * p.S + s] = static_cast<float>(rows[hi * p.S + s] - rows[lo * p.S + s]);
      }
    }
  });
  if (dw) {  // T (Kc x KRS) = code^T D, then into dw's [k, c0 + j, r, s]
    std::vector<float> T(static_cast<size_t>(Kc * krs));
    gemm_strided(true, false, Kc, krs, p.N, 1.0f, code, Kc, D.data(), krs, 0.0f, T.data(), krs);
    const int64_t c0 = p.C - Kc;
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t j = 0; j < Kc; ++j)
        std::copy(T.data() + j * krs + k * RS, T.data() + j * krs + (k + 1) * RS, dw + (k * p.C + c0 + j) * RS);
  }
  if (dcode) {  // dcode (N x Kc) = D (N x KRS) wt^T
    const std::vector<float> wt = code_weights(p, Kc, w);
    gemm_strided(false, true, p.N, Kc, krs, 1.0f, D.data(), krs, wt.data(), krs, 0.0f, dcode, Kc);
  }
}

}  // namespace

void conv2d_code_channels(bool backward_pass, const Conv2dParams& p, int64_t Kc, const float* code, const float* w,
                          const float* dy, float* y, float* dw, float* dcode) {
  if (p.N == 0 || p.K == 0 || Kc == 0) {
    if (backward_pass && dcode) std::fill(dcode, dcode + p.N * Kc, 0.0f);
    if (backward_pass && dw)  // an empty batch: no gradient
      for (int64_t k = 0; k < p.K; ++k)
        std::fill(dw + (k * p.C + p.C - Kc) * p.R * p.S, dw + (k + 1) * p.C * p.R * p.S, 0.0f);
    return;
  }
  if (backward_pass) backward(p, Kc, code, w, dy, dw, dcode);
  else forward(p, Kc, code, w, y);
}

}  // namespace c3::cpu
