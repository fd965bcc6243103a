// The constant (code) channels of a stride-1 'same' conv on the device (backend.h:
// conv2d_code_channels; the CPU version is native/cpu/conv_const.cc).
//
// Along one axis, positions with the same range of in-image taps form a class: with more than
// 2 pad + 1 positions there are pad left-border classes (one position each), one interior class
// (every tap) and pad right-border classes; shorter axes give every position its own class. A
// position's class pair (row class, column class) fixes which taps see the code, so
//   forward:  y[n, k, h, w] += bias[n, k, class(h, w)],  bias = code[n, :] . wsum[k, class, :],
//             wsum[k, class, j] = the code weights w[k, c0 + j, r, s] summed over that class's taps;
//   backward: E[n, k, class] = sum of dy[n, k] over the class's positions (a block per plane),
//             D[n, k, r, s] = sum of E over the classes that see tap (r, s) (the box sum of dy
//             where the tap is inside), then dw[k, c0 + j] = sum_n code[n, j] D[n, k] and
//             dcode[n, j] = sum_{k,r,s} w[k, c0 + j, r, s] D[n, k, r, s].
// Every sum is in double in a fixed order: deterministic, no atomics.
//
// The index logic below is C3_HD (plain C++ outside nvcc): the host tests run it against the
// CPU loops (test_cuda_vs_cpu.cc, cuda_host_code_channels_*).
#pragma once
#include <cstdint>

#include "../core/backend.h"
#include "hd.cuh"

namespace c3::cuda {

void conv2d_code_channels(bool backward, const Conv2dParams& p, int64_t Kc, const float* code, const float* w,
                          const float* dy, float* y, float* dw, float* dcode);

namespace codech {

// One axis: `out` positions (the image extent, stride 1 'same'), `taps` kernel taps, padding
// pad = (taps - 1) / 2. Position o sees taps [max(0, pad - o), min(taps, out + pad - o)).
struct Axis {
  int out, taps, pad;

  C3_HD bool has_interior() const { return out > 2 * pad + 1; }
  C3_HD int classes() const { return has_interior() ? 2 * pad + 1 : out; }
  // the class of position o: o itself on short axes and on the left border, pad in the interior
  C3_HD int cls(int o) const {
    if (!has_interior() || o < pad) return o;
    return o < out - pad ? pad : o - out + 2 * pad + 1;
  }
  // the class's positions are [first(c), end(c))
  C3_HD int first(int c) const { return !has_interior() || c <= pad ? c : c - 2 * pad - 1 + out; }
  C3_HD int end(int c) const { return has_interior() && c == pad ? out - pad : first(c) + 1; }
  // the taps [tap_lo(c), tap_hi(c)) that every position of class c sees inside the image
  C3_HD int tap_lo(int c) const {
    const int lo = pad - first(c);
    return lo > 0 ? lo : 0;
  }
  C3_HD int tap_hi(int c) const {
    const int hi = out + pad - first(c), lo = tap_lo(c);
    const int h = hi < taps ? hi : taps;
    return h > lo ? h : lo;
  }
  C3_HD bool sees(int c, int t) const { return tap_lo(c) <= t && t < tap_hi(c); }
};

struct Plan {
  Axis row, col;
  int N, K, C, Kc, c0, RS;  // c0 = C - Kc: the first code channel

  C3_HD int classes() const { return row.classes() * col.classes(); }
  // class index of position (h, w) in a plane's class table
  C3_HD int class_at(int h, int w) const { return row.cls(h) * col.classes() + col.cls(w); }
};

inline Plan make_plan(const Conv2dParams& p, int64_t Kc) {
  Plan q{};
  q.row = {static_cast<int>(p.OH), static_cast<int>(p.R), static_cast<int>(p.pad)};
  q.col = {static_cast<int>(p.OW), static_cast<int>(p.S), static_cast<int>(p.pad)};
  q.N = static_cast<int>(p.N), q.K = static_cast<int>(p.K), q.C = static_cast<int>(p.C);
  q.Kc = static_cast<int>(Kc), q.c0 = static_cast<int>(p.C - Kc), q.RS = static_cast<int>(p.R * p.S);
  return q;
}

// ---- forward ----

// wsum entry i = (k * classes + class) * Kc + j: the code weights of channel c0 + j summed
// over the taps that class sees (rows outer, columns inner)
C3_HD double wsum_at(const Plan& q, const float* w, int i) {
  const int ncls = q.classes(), j = i % q.Kc, rest = i / q.Kc, cls = rest % ncls, k = rest / ncls;
  const int cr = cls / q.col.classes(), cs = cls % q.col.classes();
  const float* wk = w + (static_cast<int64_t>(k) * q.C + q.c0 + j) * q.RS;
  const int r1 = q.row.tap_hi(cr), s0 = q.col.tap_lo(cs), s1 = q.col.tap_hi(cs);
  double s = 0.0;
  for (int r = q.row.tap_lo(cr); r < r1; ++r)
    for (int t = s0; t < s1; ++t) s += wk[r * q.col.taps + t];
  return s;
}

// bias entry b = (n * K + k) * classes + class is the dot of code row n with wsum row
// (k * classes + class); these give the two row offsets
C3_HD void bias_rows(const Plan& q, int b, int64_t& code_off, int64_t& wsum_off) {
  const int per_n = q.K * q.classes(), n = b / per_n;
  code_off = static_cast<int64_t>(n) * q.Kc;
  wsum_off = static_cast<int64_t>(b - n * per_n) * q.Kc;
}

// element i of y (N, K, OH, OW) takes bias entry bias_index(i); ohw, ow divide by OH*OW, OW
C3_HD int bias_index(const Plan& q, const FastDiv& ohw, const FastDiv& ow, int i) {
  int plane, pos, h, w;
  ohw.divmod(i, plane, pos);
  ow.divmod(pos, h, w);
  return plane * q.classes() + q.class_at(h, w);
}

// ---- backward ----

// Of one row of dy, the sum over column class cs: the interior columns' sum (computed by the
// caller over [col.pad, col.out - col.pad)) or the single border element.
C3_HD double col_class_value(const Axis& col, const float* rowp, int cs, double interior_sum) {
  return col.has_interior() && cs == col.pad ? interior_sum : static_cast<double>(rowp[col.first(cs)]);
}

// D[n, k, t = r * S + s] from the plane's class sums E (row class major): the classes that see
// tap (r, s), row classes outer, column classes inner
C3_HD double tap_sum(const Plan& q, const double* E, int t) {
  const int r = t / q.col.taps, s = t % q.col.taps, ncr = q.row.classes(), ncs = q.col.classes();
  double v = 0.0;
  for (int cr = 0; cr < ncr; ++cr) {
    if (!q.row.sees(cr, r)) continue;
    for (int cs = 0; cs < ncs; ++cs)
      if (q.col.sees(cs, s)) v += E[cr * ncs + cs];
  }
  return v;
}

// dw entry i = (k * Kc + j) * RS + t: sum over n of code[n, j] D[n, k, t] (n in order); `off` is
// its offset in dw (K, C, R, S)
C3_HD double dw_at(const Plan& q, const float* code, const float* D, int i, int64_t& off) {
  const int t = i % q.RS, kj = i / q.RS, j = kj % q.Kc, k = kj / q.Kc;
  off = (static_cast<int64_t>(k) * q.C + q.c0 + j) * q.RS + t;
  const int64_t step = static_cast<int64_t>(q.K) * q.RS, at = static_cast<int64_t>(k) * q.RS + t;
  double s = 0.0;
  for (int n = 0; n < q.N; ++n) s += static_cast<double>(code[static_cast<int64_t>(n) * q.Kc + j]) * D[n * step + at];
  return s;
}

// term u = k * RS + t of dcode[n, j]: w[k, c0 + j, t] D[n, k, t]
C3_HD double dcode_term(const Plan& q, const float* w, const float* D, int n, int j, int u) {
  const int k = u / q.RS, t = u - k * q.RS;
  return static_cast<double>(w[(static_cast<int64_t>(k) * q.C + q.c0 + j) * q.RS + t]) *
         D[static_cast<int64_t>(n) * q.K * q.RS + u];
}

}  // namespace codech

}  // namespace c3::cuda
