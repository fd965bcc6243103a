// Elementwise CPU kernels: GLU, unary maps and their gradients, broadcast binary ops, expand and
// sum_to. Broadcast kernels first coalesce the index space (drop size-1 dims, merge dims that are
// contiguous for every operand) so the common cases (same shape, scalar, per-row, per-channel)
// become one or two long inner loops. The GLU, ReLU/LeakyReLU and binary inner loops come from
// the run-time chosen table of pointwise_kernels.h (AVX2 + FMA, else plain loops); the
// *_reference functions at the end are the plain serial loops the tests compare against.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/sum_dims.h"
#include "../core/threadpool.h"
#include "kernels.h"
#include "pointwise_kernels.h"

namespace c3::cpu {

namespace {

constexpr int64_t kGrain = 16384;  // elements per task for cheap elementwise work

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

int64_t index_numel(const BroadcastIndex& idx) {
  int64_t n = 1;
  for (int d = 0; d < idx.ndim; ++d) n *= idx.shape[d];
  return n;
}

// y[i] = f(x[i]) and y[i] = f(p[i], q[i]) on the pool. The pointers and f are copied into locals
// of each chunk: a store through y could otherwise alias a captured float (alpha), which keeps the
// compiler from vectorising.
template <class F>
void map1(size_t n, const float* x, float* y, F f) {
  if (n == 0) return;
  parallel_for(static_cast<int64_t>(n), kGrain, [=](int64_t b, int64_t e) {
    const float* xs = x;
    float* ys = y;
    const F fl = f;
    for (int64_t i = b; i < e; ++i) ys[i] = fl(xs[i]);
  });
}

template <class F>
void map2(size_t n, const float* p, const float* q, float* y, F f) {
  if (n == 0) return;
  parallel_for(static_cast<int64_t>(n), kGrain, [=](int64_t b, int64_t e) {
    const float* ps = p;
    const float* qs = q;
    float* ys = y;
    const F fl = f;
    for (int64_t i = b; i < e; ++i) ys[i] = fl(ps[i], qs[i]);
  });
}

// Contiguous stretches [i, i + len) of [0, n) on the pool, for the table's loops.
template <class F>
void stretches(size_t n, F f) {
  if (n == 0) return;
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) { f(b, e - b); });
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

inline float apply_binary(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0.0f;
}

// Inner stretches with unit or zero strides go to the table; others are plain strided loops.
void binary_walk(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y) {
  const int64_t n = index_numel(idx);
  if (n == 0) return;
  const Walk w = coalesce(idx, true);
  const int64_t sa = w.sa[w.nd - 1], sb = w.sb[w.nd - 1];
  const PointwiseKernels& k = pointwise_kernels();
  const bool unit = (sa == 0 || sa == 1) && (sb == 0 || sb == 1);
  parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    walk_range(w, begin, end, [&](int64_t py, int64_t pa, int64_t pb, int64_t len) {
      if (unit) {
        k.binary(op, len, a + pa, sa, b + pb, sb, y + py);
        return;
      }
      const float* A = a + pa;
      const float* B = b + pb;
      float* Y = y + py;
      for (int64_t j = 0; j < len; ++j) Y[j] = apply_binary(op, A[j * sa], B[j * sb]);
    });
  });
}

// Sum of n contiguous floats in double, four independent partial sums.
inline double sum_contiguous(const float* p, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
  for (; i < n; ++i) s0 += p[i];
  return (s0 + s1) + (s2 + s3);
}

// acc[j] += p[0][j] + ... + p[np-1][j], added left to right, for 1 <= np <= 4; `first` starts
// from acc = 0 without reading it
template <class T>
void add_rows(T* acc, const float* const* p, int np, int64_t n, bool first) {
  const float* a = p[0];
  const float* b = np > 1 ? p[1] : a;
  const float* c = np > 2 ? p[2] : a;
  const float* d = np > 3 ? p[3] : a;
  const T z = 0;
  switch (np) {
    case 4:
      if (first) for (int64_t j = 0; j < n; ++j) acc[j] = (((z + a[j]) + b[j]) + c[j]) + d[j];
      else for (int64_t j = 0; j < n; ++j) acc[j] = (((acc[j] + a[j]) + b[j]) + c[j]) + d[j];
      break;
    case 3:
      if (first) for (int64_t j = 0; j < n; ++j) acc[j] = ((z + a[j]) + b[j]) + c[j];
      else for (int64_t j = 0; j < n; ++j) acc[j] = ((acc[j] + a[j]) + b[j]) + c[j];
      break;
    case 2:
      if (first) for (int64_t j = 0; j < n; ++j) acc[j] = (z + a[j]) + b[j];
      else for (int64_t j = 0; j < n; ++j) acc[j] = (acc[j] + a[j]) + b[j];
      break;
    default:
      if (first) for (int64_t j = 0; j < n; ++j) acc[j] = z + a[j];
      else for (int64_t j = 0; j < n; ++j) acc[j] += a[j];
      break;
  }
}

// ---- the portable table: plain loops (the compiler vectorises the simple ones)

void p_glu_forward(int64_t n, const float* a, const float* b, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * sigmoid(b[i]);
}

void p_glu_backward(int64_t n, const float* g, const float* a, const float* b, float* da, float* db) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = sigmoid(b[i]);
    da[i] = g[i] * s;
    db[i] = g[i] * a[i] * s * (1.0f - s);
  }
}

void p_relu_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void p_relu_backward(int64_t n, const float* dy, const float* x, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

void p_leaky_forward(int64_t n, const float* x, float alpha, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
}

void p_leaky_backward(int64_t n, const float* dy, const float* x, float alpha, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i];
}

void p_tanh_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void p_sigmoid_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]);
}

template <class F>
void p_binary_op(F f, int64_t n, const float* a, int64_t sa, const float* b, int64_t sb, float* y) {
  if (sa && sb) {
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
  } else if (sa) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], bv);
  } else if (sb) {
    const float av = *a;
    for (int64_t i = 0; i < n; ++i) y[i] = f(av, b[i]);
  } else {
    const float v = f(*a, *b);
    for (int64_t i = 0; i < n; ++i) y[i] = v;
  }
}

void p_binary(BinaryOp op, int64_t n, const float* a, int64_t sa, const float* b, int64_t sb, float* y) {
  switch (op) {
    case BinaryOp::Add: p_binary_op([](float u, float v) { return u + v; }, n, a, sa, b, sb, y); break;
    case BinaryOp::Sub: p_binary_op([](float u, float v) { return u - v; }, n, a, sa, b, sb, y); break;
    case BinaryOp::Mul: p_binary_op([](float u, float v) { return u * v; }, n, a, sa, b, sb, y); break;
    case BinaryOp::Div: p_binary_op([](float u, float v) { return u / v; }, n, a, sa, b, sb, y); break;
  }
}

void p_affine_glu_forward(int64_t n, const float* xa, const float* xb, const AffinePair& c, float* y) {
  for (int64_t i = 0, j = 0; i < n; ++i, j += c.step)
    y[i] = std::fma(xa[i], c.sa[j], c.ta[j]) * sigmoid(std::fma(xb[i], c.sb[j], c.tb[j]));
}

void p_affine_glu_backward(int64_t n, const float* g, const float* xa, const float* xb, const AffinePair& c, float* dza,
                           float* dzb) {
  for (int64_t i = 0, j = 0; i < n; ++i, j += c.step) {
    const float za = std::fma(xa[i], c.sa[j], c.ta[j]), s = sigmoid(std::fma(xb[i], c.sb[j], c.tb[j]));
    dza[i] = g[i] * s;
    dzb[i] = g[i] * za * s * (1.0f - s);
  }
}

const PointwiseKernels kPortable = {"portable",      p_glu_forward,   p_glu_backward,  p_relu_forward,
                                    p_relu_backward, p_leaky_forward, p_leaky_backward, p_tanh_forward,
                                    p_sigmoid_forward, p_binary, p_affine_glu_forward, p_affine_glu_backward};

const PointwiseKernels*& active_kernels() {
  static const PointwiseKernels* k = avx2_pointwise_kernels()   ? avx2_pointwise_kernels()
                                     : neon_pointwise_kernels() ? neon_pointwise_kernels()
                                                                : &kPortable;
  return k;
}

}  // namespace

const PointwiseKernels& portable_pointwise_kernels() { return kPortable; }
const PointwiseKernels& pointwise_kernels() { return *active_kernels(); }
void set_pointwise_kernels(const PointwiseKernels& k) { active_kernels() = &k; }

void glu_forward(int64_t outer, int64_t half, int64_t inner, const float* x, float* y) {
  // for each outer index the halves are contiguous stretches of half * inner
  const int64_t len = half * inner;
  if (outer == 0 || len == 0) return;
  const PointwiseKernels& k = pointwise_kernels();
  stretches(static_cast<size_t>(outer * len), [&](int64_t i, int64_t n) {
    for (int64_t end = i + n; i < end;) {
      const int64_t o = i / len, j = i % len, m = std::min(len - j, end - i);
      const float* a = x + o * 2 * len + j;
      k.glu_forward(m, a, a + len, y + i);
      i += m;
    }
  });
}

void glu_backward(int64_t outer, int64_t half, int64_t inner, const float* dy, const float* x, float* dx) {
  const int64_t len = half * inner;
  if (outer == 0 || len == 0) return;
  const PointwiseKernels& k = pointwise_kernels();
  stretches(static_cast<size_t>(outer * len), [&](int64_t i, int64_t n) {
    for (int64_t end = i + n; i < end;) {
      const int64_t o = i / len, j = i % len, m = std::min(len - j, end - i);
      const int64_t off = o * 2 * len + j;
      k.glu_backward(m, dy + i, x + off, x + off + len, dx + off, dx + off + len);
      i += m;
    }
  });
}

void unary_forward(UnaryOp op, size_t n, const float* x, float alpha, float* y) {
  const PointwiseKernels& k = pointwise_kernels();
  switch (op) {
    case UnaryOp::Relu: stretches(n, [&](int64_t i, int64_t m) { k.relu_forward(m, x + i, y + i); }); break;
    case UnaryOp::LeakyRelu:
      stretches(n, [&](int64_t i, int64_t m) { k.leaky_forward(m, x + i, alpha, y + i); });
      break;
    case UnaryOp::Tanh: stretches(n, [&](int64_t i, int64_t m) { k.tanh_forward(m, x + i, y + i); }); break;
    case UnaryOp::Sigmoid: stretches(n, [&](int64_t i, int64_t m) { k.sigmoid_forward(m, x + i, y + i); }); break;
    case UnaryOp::Exp: map1(n, x, y, [](float v) { return std::exp(v); }); break;
    case UnaryOp::Log: map1(n, x, y, [](float v) { return std::log(v); }); break;
    case UnaryOp::Neg: map1(n, x, y, [](float v) { return -v; }); break;
    case UnaryOp::Square: map1(n, x, y, [](float v) { return v * v; }); break;
    case UnaryOp::Sqrt: map1(n, x, y, [](float v) { return std::sqrt(v); }); break;
    case UnaryOp::Abs: map1(n, x, y, [](float v) { return std::fabs(v); }); break;
  }
}

// PyTorch's gradients: relu/leaky use x > 0 (so the gradient at exactly 0 is 0 / alpha), abs uses
// sign(x) (0 at 0), tanh/sigmoid/exp/sqrt use the saved output.
void unary_backward(UnaryOp op, size_t n, const float* dy, const float* x, const float* y, float alpha, float* dx) {
  const PointwiseKernels& k = pointwise_kernels();
  switch (op) {
    case UnaryOp::Relu: stretches(n, [&](int64_t i, int64_t m) { k.relu_backward(m, dy + i, x + i, dx + i); }); break;
    case UnaryOp::LeakyRelu:
      stretches(n, [&](int64_t i, int64_t m) { k.leaky_backward(m, dy + i, x + i, alpha, dx + i); });
      break;
    case UnaryOp::Tanh: map2(n, dy, y, dx, [](float g, float v) { return g * (1.0f - v * v); }); break;
    case UnaryOp::Sigmoid: map2(n, dy, y, dx, [](float g, float v) { return g * v * (1.0f - v); }); break;
    case UnaryOp::Exp: map2(n, dy, y, dx, [](float g, float v) { return g * v; }); break;
    case UnaryOp::Log: map2(n, dy, x, dx, [](float g, float v) { return g / v; }); break;
    case UnaryOp::Neg: map2(n, dy, x, dx, [](float g, float) { return -g; }); break;
    case UnaryOp::Square: map2(n, dy, x, dx, [](float g, float v) { return 2.0f * v * g; }); break;
    case UnaryOp::Sqrt: map2(n, dy, y, dx, [](float g, float v) { return g / (2.0f * v); }); break;
    case UnaryOp::Abs:
      map2(n, dy, x, dx, [](float g, float v) { return v > 0.0f ? g : (v < 0.0f ? -g : 0.0f); });
      break;
  }
}

void binary_forward(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y) {
  binary_walk(op, idx, a, b, y);
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

// Each output element is owned by one task and summed in a fixed order (the same result for any
// thread count): in double, or in float when it adds at most 8 rows. The coalesced dims of x
// alternate between kept (y stride != 0) and reduced ones. When the innermost dim is kept, a task owns a chunk of it and adds whole
// contiguous row pieces per reduced position; when it is reduced, a task owns single outputs and
// sums contiguous runs.
void sum_to(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel) {
  const int64_t xn = index_numel(idx);
  if (xn == 0) {  // else every output is written below
    std::fill(y, y + y_numel, 0.0f);
    return;
  }

  SumDim dims[kMaxDims];
  const int nd = sum_dims(idx, dims);

  SumDim kept[kMaxDims], red[kMaxDims];
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

  // a few rows (the image-by-mask broadcasts) are added in float, as the reference loop does;
  // longer reductions in double
  const bool few = inner_kept && red_count <= 8;
  constexpr int64_t kChunk = 256;
  const int64_t chunks = (inner_len + kChunk - 1) / kChunk;
  const int64_t items = outer * chunks;
  const int64_t per_item = std::max<int64_t>(1, xn / items);
  parallel_for(items, std::max<int64_t>(1, 32768 / per_item), [&](int64_t i0, int64_t i1) {
    double acc[kChunk];
    float facc[kChunk];
    int64_t rc[kMaxDims];
    for (int64_t item = i0; item < i1; ++item) {
      int64_t o = item / chunks, xbase = 0, ybase = 0;
      const int64_t j0 = (item % chunks) * kChunk, jl = std::min(kChunk, inner_len - j0);
      for (int d = nk - 1; d >= 0; --d) {
        const int64_t c = o % kept[d].n;
        o /= kept[d].n;
        xbase += c * kept[d].xs, ybase += c * kept[d].ys;
      }
      acc[0] = 0.0;  // the reduced-inner case; the kept-inner one starts from its first rows
      std::fill(rc, rc + nr, int64_t{0});
      int64_t roff = 0;
      for (int64_t r = 0; r < red_count;) {
        // up to four reduced positions at a time, added in order (the same sums as one by one,
        // with a quarter of the accumulator traffic)
        const float* p[4] = {};
        int np = 0;
        for (; np < 4 && r < red_count; ++np, ++r) {
          p[np] = x + xbase + roff + (inner_kept ? j0 : 0);
          for (int d = nr - 1; d >= 0; --d) {  // odometer over the outer reduced dims
            roff += red[d].xs;
            if (++rc[d] < red[d].n) break;
            roff -= rc[d] * red[d].xs;
            rc[d] = 0;
          }
        }
        if (!inner_kept) {
          for (int q = 0; q < np; ++q) acc[0] += sum_contiguous(p[q], reduce_len);
        } else if (few) {
          add_rows(facc, p, np, jl, r == np);
        } else {
          add_rows(acc, p, np, jl, r == np);
        }
      }
      float* out = y + ybase + j0 * inner_ys;
      if (few) {
        for (int64_t j = 0; j < jl; ++j) out[j * inner_ys] = facc[j];
      } else if (inner_ys == 1) {
        for (int64_t j = 0; j < jl; ++j) out[j] = static_cast<float>(acc[j]);
      } else {
        for (int64_t j = 0; j < jl; ++j) out[j * inner_ys] = static_cast<float>(acc[j]);
      }
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

void glu_forward_reference(int64_t outer, int64_t half, int64_t inner, const float* x, float* y) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t h = 0; h < half; ++h)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t a = (o * 2 * half + h) * inner + i;
        y[(o * half + h) * inner + i] = x[a] * sigmoid(x[a + half * inner]);
      }
}

void glu_backward_reference(int64_t outer, int64_t half, int64_t inner, const float* dy, const float* x, float* dx) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t h = 0; h < half; ++h)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t a = (o * 2 * half + h) * inner + i, b = a + half * inner;
        const float g = dy[(o * half + h) * inner + i], s = sigmoid(x[b]);
        dx[a] = g * s;
        dx[b] = g * x[a] * s * (1.0f - s);
      }
}

void unary_forward_reference(UnaryOp op, size_t n, const float* x, float alpha, float* y) {
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i];
    switch (op) {
      case UnaryOp::Relu: y[i] = v > 0.0f ? v : 0.0f; break;
      case UnaryOp::LeakyRelu: y[i] = v > 0.0f ? v : alpha * v; break;
      case UnaryOp::Tanh: y[i] = std::tanh(v); break;
      case UnaryOp::Sigmoid: y[i] = sigmoid(v); break;
      case UnaryOp::Exp: y[i] = std::exp(v); break;
      case UnaryOp::Log: y[i] = std::log(v); break;
      case UnaryOp::Neg: y[i] = -v; break;
      case UnaryOp::Square: y[i] = v * v; break;
      case UnaryOp::Sqrt: y[i] = std::sqrt(v); break;
      case UnaryOp::Abs: y[i] = std::fabs(v); break;
    }
  }
}

void unary_backward_reference(UnaryOp op, size_t n, const float* dy, const float* x, const float* y, float alpha,
                              float* dx) {
  for (size_t i = 0; i < n; ++i) {
    const float g = dy[i];
    switch (op) {
      case UnaryOp::Relu: dx[i] = x[i] > 0.0f ? g : 0.0f; break;
      case UnaryOp::LeakyRelu: dx[i] = x[i] > 0.0f ? g : alpha * g; break;
      case UnaryOp::Tanh: dx[i] = g * (1.0f - y[i] * y[i]); break;
      case UnaryOp::Sigmoid: dx[i] = g * y[i] * (1.0f - y[i]); break;
      case UnaryOp::Exp: dx[i] = g * y[i]; break;
      case UnaryOp::Log: dx[i] = g / x[i]; break;
      case UnaryOp::Neg: dx[i] = -g; break;
      case UnaryOp::Square: dx[i] = 2.0f * x[i] * g; break;
      case UnaryOp::Sqrt: dx[i] = g / (2.0f * y[i]); break;
      case UnaryOp::Abs: dx[i] = x[i] > 0.0f ? g : (x[i] < 0.0f ? -g : 0.0f); break;
    }
  }
}

}  // namespace c3::cpu
