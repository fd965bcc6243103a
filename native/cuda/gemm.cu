// GEMM entry: op(A) and op(B) become strided operand descriptors for the tile kernel. With few
// columns and many rows the product is computed transposed (C^T = op(B)^T op(A)^T), so the
// narrow dimension meets the 32-row tile rather than a mostly empty 128-wide one.
#include "gemm.cuh"
#include "runtime.cuh"
#include "tile_gemm.cuh"

namespace c3::cuda {

namespace tile {

__global__ void wgmma_probe_kernel(int* built) { *built = C3_WGMMA_BUILT; }

bool wgmma_built() {
  static const bool built = [] {
    Scratch flag(sizeof(int));
    launch("wgmma probe", wgmma_probe_kernel, 1, 1, 0, flag.as<int>());
    int v = 0;
    check_cuda(cudaMemcpyAsync(&v, flag.as<int>(), sizeof v, cudaMemcpyDeviceToHost, stream()), "wgmma probe");
    check_cuda(cudaStreamSynchronize(stream()), "wgmma probe");
    return v == 1;
  }();
  return built;
}

}  // namespace tile

namespace {

using gemmop::DenseOut;
using gemmop::Linear;

// C = beta C, for K == 0 or alpha == 0 (beta == 0 writes zeros, even over NaN)
__global__ void scale_kernel(int64_t n, float beta, float* c) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    c[i] = beta == 0.0f ? 0.0f : beta * c[i];
}

// op(A) as M x K and op(B) transposed as N x K
Linear<true> a_rows(const float* A, int M, int K) { return Linear<true>{A, M, K, 1}; }
Linear<false> a_cols(const float* A, int M, int) { return Linear<false>{A, M, 1, M}; }
Linear<false> b_cols(const float* B, int N, int) { return Linear<false>{B, N, 1, N}; }
Linear<true> b_rows(const float* B, int N, int K) { return Linear<true>{B, N, K, 1}; }

template <class OpA, class OpB>
void product(const OpA& a, const OpB& b, int M, int N, int K, float alpha, float beta, float* C) {
  if (N <= 32 && M > 32) {
    tile::tile_gemm("gemm", b, a, DenseOut{C, 1, N, alpha, beta, nullptr}, K);
  } else {
    tile::tile_gemm("gemm", a, b, DenseOut{C, N, 1, alpha, beta, nullptr}, K);
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
          float beta, float* C) {
  if (M <= 0 || N <= 0) return;
  need_int32(M, "cuda gemm", "M");
  need_int32(N, "cuda gemm", "N");
  need_int32(K, "cuda gemm", "K");
  if (K <= 0 || alpha == 0.0f) {
    if (beta == 1.0f) return;
    const int64_t n = M * N;
    launch("gemm", scale_kernel, grid_for(n, 256), 256, 0, n, beta, C);
    return;
  }
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  if (!trans_a && !trans_b) product(a_rows(A, m, k), b_cols(B, n, k), m, n, k, alpha, beta, C);
  else if (!trans_a && trans_b) product(a_rows(A, m, k), b_rows(B, n, k), m, n, k, alpha, beta, C);
  else if (trans_a && !trans_b) product(a_cols(A, m, k), b_cols(B, n, k), m, n, k, alpha, beta, C);
  else product(a_cols(A, m, k), b_rows(B, n, k), m, n, k, alpha, beta, C);
}

}  // namespace c3::cuda
