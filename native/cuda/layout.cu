// Nearest 2x upsampling (a thread per output element; the backward sums each 2x2 block in the
// CPU's order, so it matches bit for bit) and the strided block copy of concat and slice.
#include <cuda_runtime.h>

#include "hd.cuh"
#include "layout.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void upsample_forward_kernel(int n, FastDiv OW, FastDiv OH, int H, int W, const float* __restrict__ x,
                                        float* __restrict__ y) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int t, ow, p, oh;
    OW.divmod(i, t, ow);
    OH.divmod(t, p, oh);
    y[i] = x[(static_cast<int64_t>(p) * H + (oh >> 1)) * W + (ow >> 1)];
  }
}

__global__ void upsample_backward_kernel(int n, FastDiv Wd, FastDiv Hd, int W, const float* __restrict__ dy,
                                         float* __restrict__ dx) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int t, j, p, r;
    Wd.divmod(i, t, j);
    Hd.divmod(t, p, r);
    const float* a = dy + (static_cast<int64_t>(p) * Hd.d * 2 + 2 * r) * (2 * W);
    const float* b = a + 2 * W;
    dx[i] = (a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]);
  }
}

__global__ void copy_block_kernel(int64_t n, int64_t run, int64_t inner, const float* __restrict__ src,
                                  int64_t src_dim, int64_t src_off, float* __restrict__ dst, int64_t dst_dim,
                                  int64_t dst_off) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = i / run, j = i - o * run;
    dst[(o * dst_dim + dst_off) * inner + j] = src[(o * src_dim + src_off) * inner + j];
  }
}

// the same with 32-bit fast division, for copies under 2^31 elements
__global__ void copy_block_kernel32(int n, FastDiv run, int64_t inner, const float* __restrict__ src,
                                    int64_t src_dim, int64_t src_off, float* __restrict__ dst, int64_t dst_dim,
                                    int64_t dst_off) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int o, j;
    run.divmod(i, o, j);
    dst[(o * dst_dim + dst_off) * inner + j] = src[(o * src_dim + src_off) * inner + j];
  }
}

}  // namespace

void upsample2x_forward(int64_t planes, int64_t H, int64_t W, const float* x, float* y) {
  const int64_t n = planes * 4 * H * W;
  if (n == 0) return;
  need_int32(n, "cuda upsample2x", "the output");
  launch("upsample2x", upsample_forward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         FastDiv(2 * W), FastDiv(2 * H), static_cast<int>(H), static_cast<int>(W), x, y);
}

void upsample2x_backward(int64_t planes, int64_t H, int64_t W, const float* dy, float* dx) {
  const int64_t n = planes * H * W;
  if (n == 0) return;
  need_int32(4 * n, "cuda upsample2x_backward", "dy");
  launch("upsample2x_backward", upsample_backward_kernel, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n),
         FastDiv(W), FastDiv(H), static_cast<int>(W), dy, dx);
}

void copy_block(int64_t outer, int64_t inner, int64_t len, const float* src, int64_t src_dim, int64_t src_off,
                float* dst, int64_t dst_dim, int64_t dst_off) {
  const int64_t run = len * inner;  // the len rows of one outer index are contiguous on both sides
  if (run <= 0 || outer <= 0) return;
  const int64_t n = outer * run;
  if (n <= kMaxIndex) {
    launch("copy_block", copy_block_kernel32, grid_for(n, kThreads), kThreads, 0, static_cast<int>(n), FastDiv(run),
           inner, src, src_dim, src_off, dst, dst_dim, dst_off);
    return;
  }
  launch("copy_block", copy_block_kernel, grid_for(n, kThreads), kThreads, 0, n, run, inner, src, src_dim, src_off,
         dst, dst_dim, dst_off);
}

}  // namespace c3::cuda
