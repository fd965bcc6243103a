// Elementwise CPU kernels: GLU, unary maps and their gradients, broadcast binary ops, expand and
// sum_to. Broadcast kernels first coalesce the index space (drop size-1 dims, merge dims that are
// contiguous for every operand) so the common cases (same shape, scalar, per-row, per-channel)
// become one or two long inner loops; the *_reference functions below are the plain loops.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

// Plain multi-index loops: the meaning of the broadcast kernels (checked against them in tests).
void binary_forward_reference(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y);
void expand_reference(const BroadcastIndex& idx, const float* x, float* y);
void sum_to_reference(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel);

namespace {

constexpr int64_t kGrain = 16384;  // elements per task for cheap elementwise work

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

int64_t index_numel(const BroadcastIndex& idx) {
  int64_t n = 1;
  for (int d = 0; d < idx.ndim; ++d) n *= idx.shape[d];
  return n;
}

// Calls f(i) for i in [0, n) on the pool.
template <class F>
void for_each(size_t n, F f) {
  if (n == 0) return;
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(i);
  });
}

// A coalesced broadcast space over a contiguous output; innermost dim last.
struct Walk {
  int nd = 0;
  int64_t shape[kMaxDims];
  int64_t sa[kMaxDims];
  int64_t sb[kMaxDims];
};

Walk coalesce(const BroadcastIndex& idx, bool use_b) {
  Walk w;
  for (int d = 0; d < idx.ndim; ++d) {
    const int64_t n = idx.shape[d], a = idx.stride_a[d], b = use_b ? idx.stride_b[d] : 0;
    if (n == 1) continue;
    if (w.nd > 0) {
      const int k = w.nd - 1;
      if (w.sa[k] == a * n && w.sb[k] == b * n) {
        w.shape[k] *= n, w.sa[k] = a, w.sb[k] = b;
        continue;
      }
    }
    w.shape[w.nd] = n, w.sa[w.nd] = a, w.sb[w.nd] = b;
    ++w.nd;
  }
  if (w.nd == 0) w.nd = 1, w.shape[0] = 1, w.sa[0] = 0, w.sb[0] = 0;
  return w;
}

// Visits output positions [begin, end) as stretches along the innermost dim:
// run(y_offset, a_offset, b_offset, length).
template <class Run>
void walk_range(const Walk& w, int64_t begin, int64_t end, Run run) {
  const int in = w.nd - 1;
  int64_t coord[kMaxDims];
  int64_t rem = begin, oa = 0, ob = 0;
  for (int d = in; d >= 0; --d) {
    coord[d] = rem % w.shape[d];
    rem /= w.shape[d];
    oa += coord[d] * w.sa[d];
    ob += coord[d] * w.sb[d];
  }
  int64_t pos = begin;
  while (pos < end) {
    const int64_t len = std::min(w.shape[in] - coord[in], end - pos);
    run(pos, oa, ob, len);
    pos += len;
    coord[in] += len;
    oa += len * w.sa[in];
    ob += len * w.sb[in];
    for (int d = in; d > 0 && coord[d] == w.shape[d]; --d) {
      oa -= coord[d] * w.sa[d];
      ob -= coord[d] * w.sb[d];
      coord[d] = 0;
      ++coord[d - 1];
      oa += w.sa[d - 1];
      ob += w.sb[d - 1];
    }
  }
}

template <class F>
void binary_walk(F f, const BroadcastIndex& idx, const float* a, const float* b, float* y) {
  const int64_t n = index_numel(idx);
  if (n == 0) return;
  const Walk w = coalesce(idx, true);
  const int64_t sa = w.sa[w.nd - 1], sb = w.sb[w.nd - 1];
  parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    walk_range(w, begin, end, [&](int64_t py, int64_t pa, int64_t pb, int64_t len) {
      const float* A = a + pa;
      const float* B = b + pb;
      float* Y = y + py;
      if (sa == 1 && sb == 1) {
        for (int64_t j = 0; j < len; ++j) Y[j] = f(A[j], B[j]);
      } else if (sa == 1 && sb == 0) {
        const float bv = *B;
        for (int64_t j = 0; j < len; ++j) Y[j] = f(A[j], bv);
      } else if (sa == 0 && sb == 1) {
        const float av = *A;
        for (int64_t j = 0; j < len; ++j) Y[j] = f(av, B[j]);
      } else {
        for (int64_t j = 0; j < len; ++j) Y[j] = f(A[j * sa], B[j * sb]);
      }
    });
  });
}

inline float apply_binary(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0.0f;
}

// Sum of n contiguous floats in double, four independent partial sums.
inline double sum_contiguous(const float* p, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
  for (; i < n; ++i) s0 += p[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

void glu_forward(int64_t outer, int64_t half, int64_t inner, const float* x, float* y) {
  const int64_t rows = outer * half;
  if (rows == 0 || inner == 0) return;
  parallel_for(rows, std::max<int64_t>(1, kGrain / inner), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r / half, h = r % half;
      const float* a = x + (o * 2 * half + h) * inner;
      const float* b = a + half * inner;
      float* out = y + r * inner;
      for (int64_t i = 0; i < inner; ++i) out[i] = a[i] * sigmoid(b[i]);
    }
  });
}

void glu_backward(int64_t outer, int64_t half, int64_t inner, const float* dy, const float* x, float* dx) {
  const int64_t rows = outer * half;
  if (rows == 0 || inner == 0) return;
  parallel_for(rows, std::max<int64_t>(1, kGrain / inner), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r / half, h = r % half;
      const int64_t off = (o * 2 * half + h) * inner;
      const float* a = x + off;
      const float* b = a + half * inner;
      float* da = dx + off;
      float* db = da + half * inner;
      const float* g = dy + r * inner;
      for (int64_t i = 0; i < inner; ++i) {
        const float s = sigmoid(b[i]);
        da[i] = g[i] * s;
        db[i] = g[i] * a[i] * s * (1.0f - s);
      }
    }
  });
}

void unary_forward(UnaryOp op, size_t n, const float* x, float alpha, float* y) {
  switch (op) {
    case UnaryOp::Relu: for_each(n, [&](int64_t i) { y[i] = x[i] > 0.0f ? x[i] : 0.0f; }); break;
    case UnaryOp::LeakyRelu: for_each(n, [&](int64_t i) { y[i] = x[i] > 0.0f ? x[i] : alpha * x[i]; }); break;
    case UnaryOp::Tanh: for_each(n, [&](int64_t i) { y[i] = std::tanh(x[i]); }); break;
    case UnaryOp::Sigmoid: for_each(n, [&](int64_t i) { y[i] = sigmoid(x[i]); }); break;
    case UnaryOp::Exp: for_each(n, [&](int64_t i) { y[i] = std::exp(x[i]); }); break;
    case UnaryOp::Log: for_each(n, [&](int64_t i) { y[i] = std::log(x[i]); }); break;
    case UnaryOp::Neg: for_each(n, [&](int64_t i) { y[i] = -x[i]; }); break;
    case UnaryOp::Square: for_each(n, [&](int64_t i) { y[i] = x[i] * x[i]; }); break;
    case UnaryOp::Sqrt: for_each(n, [&](int64_t i) { y[i] = std::sqrt(x[i]); }); break;
    case UnaryOp::Abs: for_each(n, [&](int64_t i) { y[i] = std::fabs(x[i]); }); break;
  }
}

// PyTorch's gradients: relu/leaky use x > 0 (so the gradient at exactly 0 is 0 / alpha), abs uses
// sign(x) (0 at 0), tanh/sigmoid/exp/sqrt use the saved output.
void unary_backward(UnaryOp op, size_t n, const float* dy, const float* x, const float* y, float alpha, float* dx) {
  switch (op) {
    case UnaryOp::Relu: for_each(n, [&](int64_t i) { dx[i] = x[i] > 0.0f ? dy[i] : 0.0f; }); break;
    case UnaryOp::LeakyRelu: for_each(n, [&](int64_t i) { dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i]; }); break;
    case UnaryOp::Tanh: for_each(n, [&](int64_t i) { dx[i] = dy[i] * (1.0f - y[i] * y[i]); }); break;
    case UnaryOp::Sigmoid: for_each(n, [&](int64_t i) { dx[i] = dy[i] * y[i] * (1.0f - y[i]); }); break;
    case UnaryOp::Exp: for_each(n, [&](int64_t i) { dx[i] = dy[i] * y[i]; }); break;
    case UnaryOp::Log: for_each(n, [&](int64_t i) { dx[i] = dy[i] / x[i]; }); break;
    case UnaryOp::Neg: for_each(n, [&](int64_t i) { dx[i] = -dy[i]; }); break;
    case UnaryOp::Square: for_each(n, [&](int64_t i) { dx[i] = 2.0f * x[i] * dy[i]; }); break;
    case UnaryOp::Sqrt: for_each(n, [&](int64_t i) { dx[i] = dy[i] / (2.0f * y[i]); }); break;
    case UnaryOp::Abs:
      for_each(n, [&](int64_t i) { dx[i] = x[i] > 0.0f ? dy[i] : (x[i] < 0.0f ? -dy[i] : 0.0f); });
      break;
  }
}

void binary_forward(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y) {
  switch (op) {
    case BinaryOp::Add: binary_walk([](float u, float v) { return u + v; }, idx, a, b, y); break;
    case BinaryOp::Sub: binary_walk([](float u, float v) { return u - v; }, idx, a, b, y); break;
    case BinaryOp::Mul: binary_walk([](float u, float v) { return u * v; }, idx, a, b, y); break;
    case BinaryOp::Div: binary_walk([](float u, float v) { return u / v; }, idx, a, b, y); break;
  }
}

void expand(const BroadcastIndex& idx, const float* x, float* y) {
  const int64_t n = index_numel(idx);
  if (n == 0) return;
  const Walk w = coalesce(idx, false);
  const int64_t sa = w.sa[w.nd - 1];
  parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    walk_range(w, begin, end, [&](int64_t py, int64_t pa, int64_t, int64_t len) {
      if (sa == 1) {
        std::memcpy(y + py, x + pa, static_cast<size_t>(len) * sizeof(float));
      } else if (sa == 0) {
        std::fill(y + py, y + py + len, x[pa]);
      } else {
        for (int64_t j = 0; j < len; ++j) y[py + j] = x[pa + j * sa];
      }
    });
  });
}

// Each output element is owned by one task and summed in double in a fixed order (the same
// result for any thread count). The coalesced dims of x alternate between kept (y stride != 0)
// and reduced ones. When the innermost dim is kept, a task owns a chunk of it and adds whole
// contiguous row pieces per reduced position; when it is reduced, a task owns single outputs and
// sums contiguous runs.
void sum_to(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel) {
  std::fill(y, y + y_numel, 0.0f);
  const int64_t xn = index_numel(idx);
  if (xn == 0) return;

  struct Dim {
    int64_t n, xs, ys;
  };
  Dim dims[kMaxDims];
  int nd = 0;
  int64_t xstride[kMaxDims];
  for (int64_t d = idx.ndim - 1, s = 1; d >= 0; --d) xstride[d] = s, s *= idx.shape[d];
  for (int d = 0; d < idx.ndim; ++d) {
    const int64_t n = idx.shape[d], ys = idx.stride_a[d];
    if (n == 1) continue;
    if (nd > 0 && dims[nd - 1].ys == ys * n && dims[nd - 1].xs == xstride[d] * n) {
      dims[nd - 1].n *= n, dims[nd - 1].xs = xstride[d], dims[nd - 1].ys = ys;
      continue;
    }
    dims[nd++] = {n, xstride[d], ys};
  }

  Dim kept[kMaxDims], red[kMaxDims];
  int nk = 0, nr = 0;
  for (int d = 0; d < nd; ++d) (dims[d].ys != 0 ? kept[nk++] : red[nr++]) = dims[d];
  const bool inner_kept = nd > 0 && dims[nd - 1].ys != 0;
  int64_t inner_len = 1, inner_ys = 0, reduce_len = 1;
  if (inner_kept) {
    inner_len = kept[nk - 1].n, inner_ys = kept[nk - 1].ys;
    --nk;
  } else if (nr > 0) {
    reduce_len = red[nr - 1].n;  // innermost x dim: stride 1
    --nr;
  }
  int64_t outer = 1, red_count = 1;
  for (int d = 0; d < nk; ++d) outer *= kept[d].n;
  for (int d = 0; d < nr; ++d) red_count *= red[d].n;

  constexpr int64_t kChunk = 256;
  const int64_t chunks = (inner_len + kChunk - 1) / kChunk;
  const int64_t items = outer * chunks;
  const int64_t per_item = std::max<int64_t>(1, xn / items);
  parallel_for(items, std::max<int64_t>(1, 32768 / per_item), [&](int64_t i0, int64_t i1) {
    double acc[kChunk];
    int64_t rc[kMaxDims];
    for (int64_t item = i0; item < i1; ++item) {
      int64_t o = item / chunks, xbase = 0, ybase = 0;
      const int64_t j0 = (item % chunks) * kChunk, jl = std::min(kChunk, inner_len - j0);
      for (int d = nk - 1; d >= 0; --d) {
        const int64_t c = o % kept[d].n;
        o /= kept[d].n;
        xbase += c * kept[d].xs, ybase += c * kept[d].ys;
      }
      std::fill(acc, acc + jl, 0.0);
      std::fill(rc, rc + nr, int64_t{0});
      int64_t roff = 0;
      for (int64_t r = 0; r < red_count; ++r) {
        const float* p = x + xbase + roff;
        if (inner_kept) {
          p += j0;
          for (int64_t j = 0; j < jl; ++j) acc[j] += p[j];
        } else {
          acc[0] += sum_contiguous(p, reduce_len);
        }
        for (int d = nr - 1; d >= 0; --d) {  // odometer over the outer reduced dims
          roff += red[d].xs;
          if (++rc[d] < red[d].n) break;
          roff -= rc[d] * red[d].xs;
          rc[d] = 0;
        }
      }
      for (int64_t j = 0; j < jl; ++j) y[ybase + (j0 + j) * inner_ys] = static_cast<float>(acc[j]);
    }
  });
}

void binary_forward_reference(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y) {
  const int64_t n = index_numel(idx);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int d = idx.ndim - 1; d >= 0; --d) {
      const int64_t c = rem % idx.shape[d];
      rem /= idx.shape[d];
      oa += c * idx.stride_a[d], ob += c * idx.stride_b[d];
    }
    y[i] = apply_binary(op, a[oa], b[ob]);
  }
}

void expand_reference(const BroadcastIndex& idx, const float* x, float* y) {
  const int64_t n = index_numel(idx);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, oa = 0;
    for (int d = idx.ndim - 1; d >= 0; --d) {
      oa += (rem % idx.shape[d]) * idx.stride_a[d];
      rem /= idx.shape[d];
    }
    y[i] = x[oa];
  }
}

void sum_to_reference(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel) {
  const int64_t n = index_numel(idx);
  std::fill(y, y + y_numel, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, oy = 0;
    for (int d = idx.ndim - 1; d >= 0; --d) {
      oy += (rem % idx.shape[d]) * idx.stride_a[d];
      rem /= idx.shape[d];
    }
    y[oy] += x[i];
  }
}

}  // namespace c3::cpu
