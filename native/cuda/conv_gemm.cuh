// Operand and output descriptors of the tile GEMM (tile_gemm.cuh): plain strided matrices and
// the implicit-GEMM views of conv2d (forward, backward data, backward weight), with im2col
// addresses computed on the fly. An operand is a rows x K matrix; element (i, k) lives at
// p[row(i).off + kpart(k).off], and for operands with kBounds it is zero unless
// 0 <= row(i).dh + kpart(k).dh < H and 0 <= row(i).dw + kpart(k).dw < W (the zero padding).
// Everything here is C3_HD, so the host tests check these index maps against the CPU loops.
#pragma once
#include <cstdint>

#include "../core/backend.h"
#include "hd.cuh"

namespace c3::cuda::gemmop {

struct Part {
  int64_t off;
  int32_t dh, dw;
};

// ---- plain matrices ----

// element (i, k) at p[i * rs + k * ks]; kKContig when ks == 1
template <bool KContig>
struct Linear {
  static constexpr bool kKContig = KContig, kTable = false, kBounds = false;
  const float* p;
  int rows;
  int64_t rs, ks;
  int H = 1, W = 1;
  C3_HD Part row(int i) const { return {i * rs, 0, 0}; }
  C3_HD Part kpart(int k) const { return {k * ks, 0, 0}; }
};

// C[m, n] at p[m * sm + n * sn] (sn = 1 for row-major C; swapped strides when the product is
// computed transposed)
struct DenseOut {
  float* p;
  int64_t sm, sn;
  float alpha, beta;
  const float* bias;  // per row m, or null
  C3_HD int64_t offset(int m, int n) const { return m * sm + n * sn; }
};

// ---- conv2d forward: Y[k, (n, oh, ow)] = sum over (c, r, s) of W[k, (c, r, s)] * X_col ----

struct ConvShape {
  int N, C, H, W, K, R, S, OH, OW, stride, pad;
};

inline ConvShape conv_shape(const Conv2dParams& p) {
  return {static_cast<int>(p.N), static_cast<int>(p.C), static_cast<int>(p.H), static_cast<int>(p.W),
          static_cast<int>(p.K), static_cast<int>(p.R), static_cast<int>(p.S), static_cast<int>(p.OH),
          static_cast<int>(p.OW), static_cast<int>(p.stride), static_cast<int>(p.pad)};
}

// im2col of x: rows j = (n, oh, ow), k = (c, r, s). Consecutive rows are consecutive output
// pixels, adjacent in x for stride 1: the tile loader walks rows across threads.
struct ConvFwdX {
  static constexpr bool kKContig = false, kTable = true, kBounds = true;
  const float* p;
  int rows;
  int H, W;
  FastDiv PQ, OW, RS, S;
  int stride, pad, HW;
  int64_t CHW;
  C3_HD Part row(int j) const {
    int n, pq, oh, ow;
    PQ.divmod(j, n, pq);
    OW.divmod(pq, oh, ow);
    const int ih0 = oh * stride - pad, iw0 = ow * stride - pad;
    return {n * CHW + static_cast<int64_t>(ih0) * W + iw0, ih0, iw0};
  }
  C3_HD Part kpart(int k) const {
    int c, rs, r, s;
    RS.divmod(k, c, rs);
    S.divmod(rs, r, s);
    return {static_cast<int64_t>(c) * HW + r * W + s, r, s};
  }
};

inline ConvFwdX conv_fwd_x(const ConvShape& s, const float* x) {
  ConvFwdX o{x, s.N * s.OH * s.OW, s.H, s.W, FastDiv(s.OH * s.OW), FastDiv(s.OW), FastDiv(s.R * s.S), FastDiv(s.S),
             s.stride, s.pad, s.H * s.W, static_cast<int64_t>(s.C) * s.H * s.W};
  return o;
}

// the weight as K x (C R S), row-major
inline Linear<true> conv_weight(const ConvShape& s, const float* w) {
  return Linear<true>{w, s.K, static_cast<int64_t>(s.C) * s.R * s.S, 1};
}

// y[n, k, oh, ow] for m = k, column j = (n, oh, ow); with leaky, LeakyReLU(slope) of the value
struct ConvFwdOut {
  float* p;
  float alpha, beta;
  const float* bias;
  FastDiv PQ;
  int pq;
  int64_t KPQ;
  float slope = 0.0f;
  bool leaky = false;
  C3_HD int64_t offset(int m, int j) const {
    int n, r;
    PQ.divmod(j, n, r);
    return n * KPQ + static_cast<int64_t>(m) * pq + r;
  }
};

// The value an output stores, from its product, bias and beta term: as it is, or through the
// conv's LeakyReLU with the rounding of the separate op (pointwise.cu; one product, no fma)
template <class Out>
C3_HD float activate(const Out&, float v) {
  return v;
}
C3_HD float activate(const ConvFwdOut& o, float v) { return o.leaky && !(v > 0.0f) ? o.slope * v : v; }

// leaky: the conv followed by a LeakyReLU of that slope, in the epilogue
inline ConvFwdOut conv_fwd_out(const ConvShape& s, float* y, const float* bias, const float* leaky_slope = nullptr) {
  return ConvFwdOut{y, 1.0f, 0.0f, bias, FastDiv(s.OH * s.OW), s.OH * s.OW, static_cast<int64_t>(s.K) * s.OH * s.OW,
                    leaky_slope ? *leaky_slope : 0.0f, leaky_slope != nullptr};
}

// ---- conv2d backward weight: dW[k, (c, r, s)] = sum over (n, oh, ow) of dY[k, (n, oh, ow)] * X_col ----

// dy as K x (N OH OW): row k, column (n, pq) at n*K*PQ + k*PQ + pq
struct ConvBwdWDy {
  static constexpr bool kKContig = true, kTable = true, kBounds = false;
  const float* p;
  int rows;
  int H = 1, W = 1;
  FastDiv PQ;
  int pq;
  int64_t KPQ;
  C3_HD Part row(int k) const { return {static_cast<int64_t>(k) * pq, 0, 0}; }
  C3_HD Part kpart(int j) const {
    int n, r;
    PQ.divmod(j, n, r);
    return {n * KPQ + r, 0, 0};
  }
};

inline ConvBwdWDy conv_bwdw_dy(const ConvShape& s, const float* dy) {
  ConvBwdWDy o{dy, s.K, 1, 1, FastDiv(s.OH * s.OW), s.OH * s.OW, static_cast<int64_t>(s.K) * s.OH * s.OW};
  return o;
}

// im2col of x transposed: rows i = (c, r, s), k = (n, oh, ow). Consecutive rows (s) are
// adjacent in x, as are consecutive k (ow) for stride 1.
struct ConvBwdWX {
  static constexpr bool kKContig = false, kTable = true, kBounds = true;
  const float* p;
  int rows;
  int H, W;
  FastDiv PQ, OW, RS, S;
  int stride, pad, HW;
  int64_t CHW;
  C3_HD Part row(int i) const {
    int c, rs, r, s;
    RS.divmod(i, c, rs);
    S.divmod(rs, r, s);
    return {static_cast<int64_t>(c) * HW + r * W + s, r, s};
  }
  C3_HD Part kpart(int j) const {
    int n, pq, oh, ow;
    PQ.divmod(j, n, pq);
    OW.divmod(pq, oh, ow);
    const int ih0 = oh * stride - pad, iw0 = ow * stride - pad;
    return {n * CHW + static_cast<int64_t>(ih0) * W + iw0, ih0, iw0};
  }
};

inline ConvBwdWX conv_bwdw_x(const ConvShape& s, const float* x) {
  ConvBwdWX o{x, s.C * s.R * s.S, s.H, s.W, FastDiv(s.OH * s.OW), FastDiv(s.OW), FastDiv(s.R * s.S), FastDiv(s.S),
              s.stride, s.pad, s.H * s.W, static_cast<int64_t>(s.C) * s.H * s.W};
  return o;
}

// ---- conv2d backward data, one stride phase at a time ----
// dx[n, c, h, w] = sum over (k, r, s) with h + pad - r = oh * stride (and the same for w) of
// W[k, c, r, s] * dy[n, k, oh, ow]. The pixels with (h + pad) % stride == qh and
// (w + pad) % stride == qw form one phase: there r = qh + stride * r', s = qw + stride * s' and
// oh = (h + pad) / stride - r', so each phase is a dense implicit GEMM without wasted taps.

struct Phase {
  int qh, qw;    // residues of h + pad and w + pad
  int h0, w0;    // first h and w of the phase
  int Hp, Wp;    // number of h and w in the phase
  int Rp, Sp;    // number of r and s in the phase
};

inline Phase conv_phase(const ConvShape& s, int qh, int qw) {
  Phase ph;
  ph.qh = qh, ph.qw = qw;
  ph.h0 = ((qh - s.pad) % s.stride + s.stride) % s.stride;
  ph.w0 = ((qw - s.pad) % s.stride + s.stride) % s.stride;
  ph.Hp = s.H > ph.h0 ? (s.H - ph.h0 + s.stride - 1) / s.stride : 0;
  ph.Wp = s.W > ph.w0 ? (s.W - ph.w0 + s.stride - 1) / s.stride : 0;
  ph.Rp = s.R > qh ? (s.R - qh + s.stride - 1) / s.stride : 0;
  ph.Sp = s.S > qw ? (s.S - qw + s.stride - 1) / s.stride : 0;
  return ph;
}

// What tells one phase's descriptors from another's of the same sizes (BwddPhases::uniform): a
// batched launch (tile_gemm_phases) sets it per block.
struct PhaseAt {
  int qh, qw, h0, w0;
};
inline PhaseAt phase_at(const Phase& ph) { return PhaseAt{ph.qh, ph.qw, ph.h0, ph.w0}; }

// Pixels of phases without kernel taps (stride larger than the kernel) get no gradient at
// all: the caller zeroes dx first when this is true.
inline bool bwdd_needs_zero(const ConvShape& s) { return s.stride > s.R || s.stride > s.S; }

// Calls f(phase) for every phase that has pixels and taps; with the zeroing above this covers
// every pixel of dx exactly once.
template <class F>
void for_each_bwdd_phase(const ConvShape& s, F f) {
  for (int qh = 0; qh < s.stride && qh < s.R; ++qh)
    for (int qw = 0; qw < s.stride && qw < s.S; ++qw) {
      const Phase ph = conv_phase(s, qh, qw);
      if (ph.Hp > 0 && ph.Wp > 0) f(ph);
    }
}

// The phases as for_each_bwdd_phase gives them, and whether they all have the same sizes (so
// their products differ only in PhaseAt and one launch can run them all).
struct BwddPhases {
  Phase ph[4];
  int count = 0;
  bool uniform = true;
};
inline BwddPhases bwdd_phases(const ConvShape& s) {
  BwddPhases out;
  bool fits = true;
  for_each_bwdd_phase(s, [&](const Phase& ph) {
    if (out.count == 4) {
      fits = false;
      return;
    }
    const Phase& f = out.count ? out.ph[0] : ph;
    out.uniform = out.uniform && ph.Hp == f.Hp && ph.Wp == f.Wp && ph.Rp == f.Rp && ph.Sp == f.Sp;
    out.ph[out.count++] = ph;
  });
  if (!fits) out.uniform = false, out.count = 0;  // stride over 2: one launch per phase
  return out;
}

// the weight as C x (K Rp Sp): row c, column (k, r', s')
struct ConvBwdDW {
  static constexpr bool kKContig = true, kTable = true, kBounds = false;
  const float* p;
  int rows;
  int H = 1, W = 1;
  FastDiv RpSp, Sp;
  int RS, S, qh, qw, stride;
  int64_t CRS;
  C3_HD void set_phase(const PhaseAt& q) { qh = q.qh, qw = q.qw; }
  C3_HD Part row(int c) const { return {static_cast<int64_t>(c) * RS, 0, 0}; }
  C3_HD Part kpart(int k) const {
    int ko, rs, r, s;
    RpSp.divmod(k, ko, rs);
    Sp.divmod(rs, r, s);
    return {ko * CRS + (qh + stride * r) * S + qw + stride * s, 0, 0};
  }
};

inline ConvBwdDW conv_bwdd_w(const ConvShape& s, const Phase& ph, const float* w) {
  ConvBwdDW o{w, s.C, 1, 1, FastDiv(ph.Rp * ph.Sp > 0 ? ph.Rp * ph.Sp : 1), FastDiv(ph.Sp > 0 ? ph.Sp : 1),
              s.R * s.S, s.S, ph.qh, ph.qw, s.stride, static_cast<int64_t>(s.C) * s.R * s.S};
  return o;
}

// dy gathered for the phase: rows j = (n, a, b) with h = h0 + stride a, w = w0 + stride b;
// k = (k, r', s'); valid while 0 <= oh < OH and 0 <= ow < OW
struct ConvBwdDDy {
  static constexpr bool kKContig = false, kTable = true, kBounds = true;
  const float* p;
  int rows;
  int H, W;  // bounds: OH, OW
  FastDiv HpWp, Wp, RpSp, Sp;
  int h0, w0, stride, pad, OWv, PQ;
  int64_t KPQ;
  C3_HD void set_phase(const PhaseAt& q) { h0 = q.h0, w0 = q.w0; }
  C3_HD Part row(int j) const {
    int n, ab, a, b;
    HpWp.divmod(j, n, ab);
    Wp.divmod(ab, a, b);
    const int ohb = (h0 + stride * a + pad) / stride, owb = (w0 + stride * b + pad) / stride;
    return {n * KPQ + static_cast<int64_t>(ohb) * OWv + owb, ohb, owb};
  }
  C3_HD Part kpart(int k) const {
    int ko, rs, r, s;
    RpSp.divmod(k, ko, rs);
    Sp.divmod(rs, r, s);
    return {static_cast<int64_t>(ko) * PQ - static_cast<int64_t>(r) * OWv - s, -r, -s};
  }
};

inline ConvBwdDDy conv_bwdd_dy(const ConvShape& s, const Phase& ph, const float* dy) {
  ConvBwdDDy o{dy,
               s.N * ph.Hp * ph.Wp,
               s.OH,
               s.OW,
               FastDiv(ph.Hp * ph.Wp > 0 ? ph.Hp * ph.Wp : 1),
               FastDiv(ph.Wp > 0 ? ph.Wp : 1),
               FastDiv(ph.Rp * ph.Sp > 0 ? ph.Rp * ph.Sp : 1),
               FastDiv(ph.Sp > 0 ? ph.Sp : 1),
               ph.h0,
               ph.w0,
               s.stride,
               s.pad,
               s.OW,
               s.OH * s.OW,
               static_cast<int64_t>(s.K) * s.OH * s.OW};
  return o;
}

// dx[n, c, h, w] for m = c, column j = (n, a, b) of the phase
struct ConvBwdDOut {
  float* p;
  float alpha, beta;
  const float* bias;
  FastDiv HpWp, Wp;
  int h0, w0, stride, W, HW;
  int64_t CHW;
  C3_HD void set_phase(const PhaseAt& q) { h0 = q.h0, w0 = q.w0; }
  C3_HD int64_t offset(int c, int j) const {
    int n, ab, a, b;
    HpWp.divmod(j, n, ab);
    Wp.divmod(ab, a, b);
    return n * CHW + static_cast<int64_t>(c) * HW + static_cast<int64_t>(h0 + stride * a) * W + w0 + stride * b;
  }
};

// beta 1: dx += the product (a gradient added into the one already held)
inline ConvBwdDOut conv_bwdd_out(const ConvShape& s, const Phase& ph, float* dx, float beta = 0.0f) {
  return ConvBwdDOut{dx,
                     1.0f,
                     beta,
                     nullptr,
                     FastDiv(ph.Hp * ph.Wp > 0 ? ph.Hp * ph.Wp : 1),
                     FastDiv(ph.Wp > 0 ? ph.Wp : 1),
                     ph.h0,
                     ph.w0,
                     s.stride,
                     s.W,
                     s.H * s.W,
                     static_cast<int64_t>(s.C) * s.H * s.W};
}

// The product the tile kernel computes, as plain loops over the descriptors (host tests):
// out[offset(m, n)] = alpha * sum_k A(m, k) B(n, k) + bias[m] + beta * out[...]
template <class Op>
C3_HD float operand_at(const Op& a, const Part& r, int k) {
  const Part kp = a.kpart(k);
  if (Op::kBounds) {
    const int ih = r.dh + kp.dh, iw = r.dw + kp.dw;
    if (ih < 0 || ih >= a.H || iw < 0 || iw >= a.W) return 0.0f;
  }
  return a.p[r.off + kp.off];
}

template <class OpA, class OpB, class Out>
void reference_product(const OpA& a, const OpB& b, const Out& out, int K) {
  for (int m = 0; m < a.rows; ++m)
    for (int n = 0; n < b.rows; ++n) {
      const Part ra = a.row(m), rb = b.row(n);
      double s = 0;
      for (int k = 0; k < K; ++k) s += static_cast<double>(operand_at(a, ra, k)) * operand_at(b, rb, k);
      float v = out.alpha * static_cast<float>(s);
      if (out.bias) v += out.bias[m];
      float* dst = out.p + out.offset(m, n);
      if (out.beta != 0.0f) v += out.beta * *dst;
      *dst = activate(out, v);
    }
}

}  // namespace c3::cuda::gemmop
