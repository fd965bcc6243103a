// Index maps of the broadcast kernels (pointwise.cu): coalesced broadcast walks for binary ops
// and expand, and the kept/reduced split of sum_to with its slice plan. C3_HD, so the host tests
// check them against the CPU's reference loops.
#pragma once
#include <algorithm>
#include <cstdint>

#include "../core/backend.h"
#include "../core/sum_dims.h"
#include "hd.cuh"

namespace c3::cuda::bcast {

// A broadcast space over a contiguous output, size-1 dims dropped and dims contiguous for
// every operand merged (as the CPU coalesces); the innermost dim last.
struct Walk {
  int nd;
  int shape[kMaxDims];
  FastDiv div[kMaxDims];
  int sa[kMaxDims], sb[kMaxDims];
};

inline Walk coalesce(const BroadcastIndex& idx, bool use_b) {
  int64_t shape[kMaxDims], sa[kMaxDims], sb[kMaxDims];
  int nd = 0;
  for (int d = 0; d < idx.ndim; ++d) {
    const int64_t n = idx.shape[d], a = idx.stride_a[d], b = use_b ? idx.stride_b[d] : 0;
    if (n == 1) continue;
    if (nd > 0 && sa[nd - 1] == a * n && sb[nd - 1] == b * n) {
      shape[nd - 1] *= n, sa[nd - 1] = a, sb[nd - 1] = b;
      continue;
    }
    shape[nd] = n, sa[nd] = a, sb[nd] = b;
    ++nd;
  }
  Walk w{};
  w.nd = nd ? nd : 1;
  for (int d = 0; d < kMaxDims; ++d) {
    const bool on = d < nd;
    w.shape[d] = on ? static_cast<int>(shape[d]) : 1;
    w.div[d] = FastDiv(w.shape[d]);
    w.sa[d] = on ? static_cast<int>(sa[d]) : 0;
    w.sb[d] = on ? static_cast<int>(sb[d]) : 0;
  }
  return w;
}

// offsets of output element i in a and b
C3_HD void walk_offsets(const Walk& w, int i, int& oa, int& ob) {
  oa = 0, ob = 0;
  int rem = i;
  C3_UNROLL
  for (int d = kMaxDims - 1; d >= 1; --d) {
    if (d >= w.nd) continue;
    int q, c;
    w.div[d].divmod(rem, q, c);
    oa += c * w.sa[d], ob += c * w.sb[d];
    rem = q;
  }
  oa += rem * w.sa[0], ob += rem * w.sb[0];
}

// sum_to: x's coalesced dims split into kept ones (one output each) and reduced ones, outer
// first. Y outputs, R terms each; the terms are cut into slices of slice_len (summed by a second
// pass in order when there is more than one). `blocks`: a block per output (long contiguous
// reductions), else a thread per output.
struct SumPlan {
  int nk, nr;
  int kxs[kMaxDims], kys[kMaxDims];
  FastDiv kdiv[kMaxDims];
  int rn[kMaxDims], rxs[kMaxDims];
  FastDiv rdiv[kMaxDims];
  int Y, R;
  int slice_len, slices;
  bool blocks;
};

// idx: x's shape with y's strides in x's space (0 where reduced); x has 1..2^31-1 elements.
// sms and threads size the slices.
inline SumPlan sum_plan(const BroadcastIndex& idx, int64_t sms, int threads) {
  SumDim dims[kMaxDims];
  const int nd = sum_dims(idx, dims);
  SumPlan p{};
  p.Y = 1, p.R = 1;
  for (int d = 0; d < nd; ++d) {
    if (dims[d].ys != 0) {
      p.kxs[p.nk] = static_cast<int>(dims[d].xs);
      p.kys[p.nk] = static_cast<int>(dims[d].ys);
      p.kdiv[p.nk] = FastDiv(dims[d].n);
      ++p.nk;
      p.Y *= static_cast<int>(dims[d].n);
    } else {
      p.rn[p.nr] = static_cast<int>(dims[d].n);
      p.rxs[p.nr] = static_cast<int>(dims[d].xs);
      p.rdiv[p.nr] = FastDiv(dims[d].n);
      ++p.nr;
      p.R *= static_cast<int>(dims[d].n);
    }
  }
  p.blocks = nd > 0 && dims[nd - 1].ys == 0 && p.R >= 64;
  // enough parallel work to fill the device, but long slices
  int64_t slices = p.blocks ? (2 * sms + p.Y - 1) / p.Y : (2 * sms * threads + p.Y - 1) / p.Y;
  slices = std::max<int64_t>(1, std::min<int64_t>(slices, p.R / (p.blocks ? 4096 : 64)));
  slices = std::min<int64_t>(slices, 65535);  // grid y
  p.slice_len = static_cast<int>((p.R + slices - 1) / slices);
  p.slices = static_cast<int>((p.R + p.slice_len - 1) / p.slice_len);
  return p;
}

// x offset and y offset of kept index u (innermost kept dim fastest)
C3_HD void kept_offsets(const SumPlan& p, int u, int& xb, int& yb) {
  xb = 0, yb = 0;
  int rem = u;
  C3_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= p.nk) continue;
    int q, c;
    if (d > 0) {
      p.kdiv[d].divmod(rem, q, c);
    } else {
      q = 0, c = rem;
    }
    xb += c * p.kxs[d], yb += c * p.kys[d];
    rem = q;
  }
}

// x offset of reduced index r, and its coordinates into rc when given
C3_HD int reduced_offset(const SumPlan& p, int r, int* rc) {
  int off = 0, rem = r;
  C3_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= p.nr) continue;
    int q, c;
    if (d > 0) {
      p.rdiv[d].divmod(rem, q, c);
    } else {
      q = 0, c = rem;
    }
    off += c * p.rxs[d];
    if (rc) rc[d] = c;
    rem = q;
  }
  return off;
}

// advances (rc, roff) to the next reduced index (an odometer, innermost dim fastest)
C3_HD void next_reduced(const SumPlan& p, int* rc, int& roff) {
  C3_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= p.nr) continue;
    roff += p.rxs[d];
    if (++rc[d] < p.rn[d]) break;
    roff -= p.rn[d] * p.rxs[d];
    rc[d] = 0;
  }
}

}  // namespace c3::cuda::bcast
