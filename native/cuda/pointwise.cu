// Elementwise kernels: GLU, unary maps and their gradients, broadcast binary ops, expand and
// sum_to. Broadcast index spaces are coalesced on the host as the CPU does (size-1 dims
// dropped, dims contiguous for every operand merged), then each element finds its operands
// with one fast division per remaining dim. sum_to gives each output one owner (a thread, or a
// block for long contiguous reductions) that sums in double in a fixed order, so results are
// the same on every run; a second pass adds the slices of a long reduction in order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "broadcast.cuh"
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

// ---- broadcast ----

using bcast::SumPlan;
using bcast::Walk;

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
    bcast::walk_offsets(w, i, oa, ob);
    y[i] = binary_f(op, a[oa], b[ob]);
  }
}

__global__ void expand_kernel(int n, Walk w, const float* __restrict__ x, float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int oa, ob;
    bcast::walk_offsets(w, i, oa, ob);
    y[i] = x[oa];
  }
}

int64_t index_numel(const BroadcastIndex& idx) {
  int64_t n = 1;
  for (int d = 0; d < idx.ndim; ++d) n *= idx.shape[d];
  return n;
}

// ---- sum_to ----

// one thread per output, walking its reduction with an odometer (no divisions per term)
__global__ void sum_to_threads(SumPlan p, const float* __restrict__ x, double* __restrict__ part,
                               float* __restrict__ y) {
  const int slice = blockIdx.y;
  const int r0 = slice * p.slice_len, r1 = min(p.R, r0 + p.slice_len);
  for (int u = blockIdx.x * blockDim.x + threadIdx.x; u < p.Y; u += gridDim.x * blockDim.x) {
    int xb, yb;
    bcast::kept_offsets(p, u, xb, yb);
    int rc[kMaxDims] = {};
    int roff = bcast::reduced_offset(p, r0, rc);
    double acc = 0.0;
    for (int r = r0; r < r1; ++r) {
      acc += x[xb + roff];
      bcast::next_reduced(p, rc, roff);
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
  for (int r = r0 + threadIdx.x; r < r1; r += blockDim.x) acc += x[xb + bcast::reduced_offset(p, r, nullptr)];
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
  launch("binary", binary_kernel, grid_for(n, kThreads), kThreads, 0, op, static_cast<int>(n),
         bcast::coalesce(idx, true), a, b, y);
}

void expand(const BroadcastIndex& idx, const float* x, float* y) {
  const int64_t n = index_numel(idx);
  if (n == 0) return;
  need_int32(n, "cuda expand", "the output");
  launch("expand", expand_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         bcast::coalesce(idx, false), x, y);
}

void sum_to(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel) {
  const int64_t xn = index_numel(idx);
  if (y_numel == 0) return;
  if (xn == 0) {
    check_cuda(cudaMemsetAsync(y, 0, y_numel * sizeof(float), stream()), "sum_to");
    return;
  }
  need_int32(xn, "cuda sum_to", "the input");
  const SumPlan p = bcast::sum_plan(idx, sm_count(), kThreads);
  const int64_t slices = p.slices;
  Scratch part(slices > 1 ? sizeof(double) * static_cast<size_t>(slices) * p.Y : 0);
  double* pp = slices > 1 ? part.as<double>() : nullptr;
  if (p.blocks) {
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
