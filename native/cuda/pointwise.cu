// Elementwise kernels: GLU, unary maps and their gradients, broadcast binary ops, expand and
// sum_to. Broadcast index spaces are coalesced on the host as the CPU does (size-1 dims
// dropped, dims contiguous for every operand merged), then each element finds its operands
// with one fast division per remaining dim. sum_to gives each output one owner (a thread, or a
// block for long contiguous reductions) that sums in double in a fixed order, so results are
// the same on every run; a second pass adds the slices of a long reduction in order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "hd.cuh"
#include "pointwise.cuh"
#include "reduce.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoidf_(float v) { return 1.0f / (1.0f + expf(-v)); }

// ---- GLU: x viewed as (outer, 2 half, inner), y = a * sigmoid(b) ----

__global__ void glu_forward_kernel(int n, FastDiv inner, FastDiv half, int half_v, int inner_v,
                                   const float* __restrict__ x, float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int r, j, o, h;
    inner.divmod(i, r, j);
    half.divmod(r, o, h);
    const int64_t a = (static_cast<int64_t>(o) * 2 * half_v + h) * inner_v + j;
    y[i] = __fmul_rn(x[a], sigmoidf_(x[a + static_cast<int64_t>(half_v) * inner_v]));
  }
}

__global__ void glu_backward_kernel(int n, FastDiv inner, FastDiv half, int half_v, int inner_v,
                                    const float* __restrict__ dy, const float* __restrict__ x,
                                    float* __restrict__ dx) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int r, j, o, h;
    inner.divmod(i, r, j);
    half.divmod(r, o, h);
    const int64_t a = (static_cast<int64_t>(o) * 2 * half_v + h) * inner_v + j;
    const int64_t b = a + static_cast<int64_t>(half_v) * inner_v;
    const float s = sigmoidf_(x[b]), g = dy[i];
    dx[a] = __fmul_rn(g, s);
    dx[b] = __fmul_rn(__fmul_rn(__fmul_rn(g, x[a]), s), __fsub_rn(1.0f, s));
  }
}

// ---- unary ----

__device__ __forceinline__ float unary_f(UnaryOp op, float x, float alpha) {
  switch (op) {
    case UnaryOp::Relu: return x > 0.0f ? x : 0.0f;
    case UnaryOp::LeakyRelu: return x > 0.0f ? x : __fmul_rn(alpha, x);
    case UnaryOp::Tanh: return tanhf(x);
    case UnaryOp::Sigmoid: return sigmoidf_(x);
    case UnaryOp::Exp: return expf(x);
    case UnaryOp::Log: return logf(x);
    case UnaryOp::Neg: return -x;
    case UnaryOp::Square: return __fmul_rn(x, x);
    case UnaryOp::Sqrt: return sqrtf(x);
    case UnaryOp::Abs: return fabsf(x);
  }
  return 0.0f;
}

// PyTorch's gradients, as the CPU: relu/leaky use x > 0, abs uses sign(x) (0 at 0),
// tanh/sigmoid/exp/sqrt the saved output
__device__ __forceinline__ float unary_df(UnaryOp op, float g, float x, float y, float alpha) {
  switch (op) {
    case UnaryOp::Relu: return x > 0.0f ? g : 0.0f;
    case UnaryOp::LeakyRelu: return x > 0.0f ? g : __fmul_rn(alpha, g);
    case UnaryOp::Tanh: return __fmul_rn(g, __fsub_rn(1.0f, __fmul_rn(y, y)));
    case UnaryOp::Sigmoid: return __fmul_rn(__fmul_rn(g, y), __fsub_rn(1.0f, y));
    case UnaryOp::Exp: return __fmul_rn(g, y);
    case UnaryOp::Log: return __fdiv_rn(g, x);
    case UnaryOp::Neg: return -g;
    case UnaryOp::Square: return __fmul_rn(__fmul_rn(2.0f, x), g);
    case UnaryOp::Sqrt: return __fdiv_rn(g, __fmul_rn(2.0f, y));
    case UnaryOp::Abs: return x > 0.0f ? g : (x < 0.0f ? -g : 0.0f);
  }
  return 0.0f;
}

// in place allowed (y == x), so no __restrict__
__global__ void unary_forward_kernel(UnaryOp op, int64_t n, const float* x, float alpha, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = unary_f(op, x[i], alpha);
}

__global__ void unary_backward_kernel(UnaryOp op, int64_t n, const float* dy, const float* x, const float* y,
                                      float alpha, float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = unary_df(op, dy[i], x[i], y[i], alpha);
}

// ---- broadcast index spaces ----

struct Walk {
  int nd;
  int shape[kMaxDims];
  FastDiv div[kMaxDims];
  int sa[kMaxDims], sb[kMaxDims];
};

Walk coalesce(const BroadcastIndex& idx, bool use_b) {
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
__device__ __forceinline__ void walk_offsets(const Walk& w, int i, int& oa, int& ob) {
  oa = 0, ob = 0;
  int rem = i;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 1; --d) {
    if (d >= w.nd) continue;
    int q, c;
    w.div[d].divmod(rem, q, c);
    oa += c * w.sa[d], ob += c * w.sb[d];
    rem = q;
  }
  oa += rem * w.sa[0], ob += rem * w.sb[0];
}

__device__ __forceinline__ float binary_f(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0.0f;
}

// y may alias a or b (same shape), so no __restrict__
__global__ void binary_kernel(BinaryOp op, int n, Walk w, const float* a, const float* b, float* y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int oa, ob;
    walk_offsets(w, i, oa, ob);
    y[i] = binary_f(op, a[oa], b[ob]);
  }
}

__global__ void expand_kernel(int n, Walk w, const float* __restrict__ x, float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int oa, ob;
    walk_offsets(w, i, oa, ob);
    y[i] = x[oa];
  }
}

int64_t index_numel(const BroadcastIndex& idx) {
  int64_t n = 1;
  for (int d = 0; d < idx.ndim; ++d) n *= idx.shape[d];
  return n;
}

// ---- sum_to ----

// x's coalesced dims split into kept ones (one output each) and reduced ones, outer first.
struct SumPlan {
  int nk, nr;
  int kxs[kMaxDims], kys[kMaxDims];
  FastDiv kdiv[kMaxDims];
  int rn[kMaxDims], rxs[kMaxDims];
  FastDiv rdiv[kMaxDims];
  int Y, R;
  int slice_len;
};

// x offset and y offset of kept index u (innermost kept dim fastest)
__device__ __forceinline__ void kept_offsets(const SumPlan& p, int u, int& xb, int& yb) {
  xb = 0, yb = 0;
  int rem = u;
#pragma unroll
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

// x offset of reduced index r; coordinates into rc when asked
__device__ __forceinline__ int reduced_offset(const SumPlan& p, int r, int* rc) {
  int off = 0, rem = r;
#pragma unroll
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

// one thread per output, walking its reduction with an odometer (no divisions per term)
__global__ void sum_to_threads(SumPlan p, const float* __restrict__ x, double* __restrict__ part,
                               float* __restrict__ y) {
  const int slice = blockIdx.y;
  const int r0 = slice * p.slice_len, r1 = min(p.R, r0 + p.slice_len);
  for (int u = blockIdx.x * blockDim.x + threadIdx.x; u < p.Y; u += gridDim.x * blockDim.x) {
    int xb, yb;
    kept_offsets(p, u, xb, yb);
    int rc[kMaxDims];
    int roff = reduced_offset(p, r0, rc);
    double acc = 0.0;
    for (int r = r0; r < r1; ++r) {
      acc += x[xb + roff];
#pragma unroll
      for (int d = kMaxDims - 1; d >= 0; --d) {
        if (d >= p.nr) continue;
        roff += p.rxs[d];
        if (++rc[d] < p.rn[d]) break;
        roff -= p.rn[d] * p.rxs[d];
        rc[d] = 0;
      }
    }
    if (part) part[static_cast<int64_t>(slice) * p.Y + yb] = acc;
    else y[yb] = static_cast<float>(acc);
  }
}

// one block per output (x: output, y: slice) when the innermost dim is a long reduction
__global__ void sum_to_blocks(SumPlan p, const float* __restrict__ x, double* __restrict__ part,
                              float* __restrict__ y) {
  __shared__ double scratch[32];
  const int u = blockIdx.x, slice = blockIdx.y;
  const int r0 = slice * p.slice_len, r1 = min(p.R, r0 + p.slice_len);
  int xb, yb;
  kept_offsets(p, u, xb, yb);
  double acc = 0.0;
  for (int r = r0 + threadIdx.x; r < r1; r += blockDim.x) acc += x[xb + reduced_offset(p, r, nullptr)];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) {
    if (part) part[static_cast<int64_t>(slice) * p.Y + yb] = acc;
    else y[yb] = static_cast<float>(acc);
  }
}

__global__ void sum_slices(int Y, int slices, const double* __restrict__ part, float* __restrict__ y) {
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < Y; j += gridDim.x * blockDim.x) {
    double s = 0.0;
    for (int k = 0; k < slices; ++k) s += part[static_cast<int64_t>(k) * Y + j];
    y[j] = static_cast<float>(s);
  }
}

}  // namespace

void glu_forward(int64_t outer, int64_t half, int64_t inner, const float* x, float* y) {
  const int64_t n = outer * half * inner;
  if (n == 0) return;
  need_int32(2 * n, "cuda glu", "the input");
  launch("glu", glu_forward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n), FastDiv(inner),
         FastDiv(half), static_cast<int>(half), static_cast<int>(inner), x, y);
}

void glu_backward(int64_t outer, int64_t half, int64_t inner, const float* dy, const float* x, float* dx) {
  const int64_t n = outer * half * inner;
  if (n == 0) return;
  need_int32(2 * n, "cuda glu_backward", "the input");
  launch("glu_backward", glu_backward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         FastDiv(inner), FastDiv(half), static_cast<int>(half), static_cast<int>(inner), dy, x, dx);
}

void unary_forward(UnaryOp op, size_t n, const float* x, float alpha, float* y) {
  const int64_t m = static_cast<int64_t>(n);
  launch("unary", unary_forward_kernel, grid_for(m, kThreads), kThreads, 0, op, m, x, alpha, y);
}

void unary_backward(UnaryOp op, size_t n, const float* dy, const float* x, const float* y, float alpha, float* dx) {
  const int64_t m = static_cast<int64_t>(n);
  launch("unary_backward", unary_backward_kernel, grid_for(m, kThreads), kThreads, 0, op, m, dy, x, y, alpha, dx);
}

void binary_forward(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y) {
  const int64_t n = index_numel(idx);
  if (n == 0) return;
  need_int32(n, "cuda binary", "the output");
  launch("binary", binary_kernel, grid_for(n, kThreads), kThreads, 0, op, static_cast<int>(n), coalesce(idx, true), a,
         b, y);
}

void expand(const BroadcastIndex& idx, const float* x, float* y) {
  const int64_t n = index_numel(idx);
  if (n == 0) return;
  need_int32(n, "cuda expand", "the output");
  launch("expand", expand_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n), coalesce(idx, false), x, y);
}

void sum_to(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel) {
  const int64_t xn = index_numel(idx);
  if (y_numel == 0) return;
  if (xn == 0) {
    check_cuda(cudaMemsetAsync(y, 0, y_numel * sizeof(float), stream()), "sum_to");
    return;
  }
  need_int32(xn, "cuda sum_to", "the input");
  // coalesce x's dims as the CPU does: drop size 1, merge neighbours contiguous in x and y
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
  const bool inner_reduced = nd > 0 && dims[nd - 1].ys == 0;
  const bool blocks = inner_reduced && p.R >= 64;
  const int64_t sms = sm_count();
  // slices of the reduction: enough parallel work to fill the device, but long slices
  int64_t slices = blocks ? (2 * sms + p.Y - 1) / p.Y : (2 * sms * kThreads + p.Y - 1) / p.Y;
  slices = std::max<int64_t>(1, std::min<int64_t>(slices, p.R / (blocks ? 4096 : 64)));
  slices = std::min<int64_t>(slices, 65535);  // grid y
  p.slice_len = static_cast<int>((p.R + slices - 1) / slices);
  slices = (p.R + p.slice_len - 1) / p.slice_len;
  Scratch part(slices > 1 ? sizeof(double) * static_cast<size_t>(slices) * p.Y : 0);
  double* pp = slices > 1 ? part.as<double>() : nullptr;
  if (blocks) {
    launch("sum_to", sum_to_blocks, dim3(p.Y, static_cast<unsigned>(slices)), kThreads, 0, p, x, pp, y);
  } else {
    const unsigned gx = std::min<unsigned>((p.Y + kThreads - 1) / kThreads, 65535u * 4);
    launch("sum_to", sum_to_threads, dim3(gx, static_cast<unsigned>(slices)), kThreads, 0, p, x, pp, y);
  }
  if (slices > 1)
    launch("sum_to", sum_slices, grid_for(p.Y, kThreads), kThreads, 0, p.Y, static_cast<int>(slices),
           static_cast<const double*>(pp), y);
}

}  // namespace c3::cuda
