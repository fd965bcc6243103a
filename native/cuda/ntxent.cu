// NT-Xent over (2N, D), rows i and i+N positives. Forward: z = normalize(x) (rows.cu), then one
// block per row computes that row's similarities (a warp per column, double dot products),
// its softmax over the 2N-1 other columns and its loss term; a fixed-order mean gives the loss.
// Backward: one block per row k forms coef[c] = (p[k][c] + p[c][k] - 2 [c == pos]) dloss / (2N T)
// and dz = sum_c coef[c] z_c (threads along D, c in order), then goes back through the
// normalisation. All sums in double, as the CPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "ntxent.cuh"
#include "reduce.cuh"
#include "rows.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

constexpr float kNormEps = 1e-12f;  // F.normalize's default
constexpr int kThreads = 256;

// sim: (2N, 2N) doubles of scratch; row r of it is owned by block r
__global__ void ntxent_rows_kernel(int N2, int64_t D, const float* __restrict__ z, double inv_t,
                                   double* __restrict__ sim, float* __restrict__ p, double* __restrict__ row_loss) {
  __shared__ double scratch[32];
  const int r = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const float* zr = z + static_cast<int64_t>(r) * D;
  double* sr = sim + static_cast<int64_t>(r) * N2;
  for (int c = warp; c < N2; c += warps) {
    if (c == r) continue;
    const float* zc = z + static_cast<int64_t>(c) * D;
    double d = 0.0;
    for (int64_t j = lane; j < D; j += 32) d += static_cast<double>(zr[j]) * zc[j];
    d = warp_sum(d);
    if (lane == 0) sr[c] = d * inv_t;
  }
  __syncthreads();  // the row's similarities are written (global memory, same block)
  double m = -INFINITY;
  for (int c = threadIdx.x; c < N2; c += blockDim.x)
    if (c != r) m = fmax(m, sr[c]);
  m = block_max(m, scratch);
  double s = 0.0;
  for (int c = threadIdx.x; c < N2; c += blockDim.x)
    if (c != r) s += exp(sr[c] - m);
  s = block_sum(s, scratch);
  const double lse = m + log(s);
  for (int c = threadIdx.x; c < N2; c += blockDim.x)
    p[static_cast<int64_t>(r) * N2 + c] = c == r ? 0.0f : static_cast<float>(exp(sr[c] - lse));
  if (threadIdx.x == 0) row_loss[r] = lse - sr[(r + N2 / 2) % N2];
}

// coef: (2N, 2N) doubles of scratch, dz: (2N, D) doubles of scratch; block k owns row k of both
__global__ void ntxent_backward_kernel(int N2, int64_t D, const float* __restrict__ dloss,
                                       const float* __restrict__ z, const float* __restrict__ norms,
                                       const float* __restrict__ p, double temperature, double* __restrict__ coef,
                                       double* __restrict__ dz, float* __restrict__ dx) {
  __shared__ double scratch[32];
  const int k = blockIdx.x, pos = (k + N2 / 2) % N2;
  const double g = static_cast<double>(dloss[0]) / static_cast<double>(N2) / temperature;
  double* ck = coef + static_cast<int64_t>(k) * N2;
  for (int c = threadIdx.x; c < N2; c += blockDim.x) {
    // G[k][c] + G[c][k]; pos(c) == k exactly when c == pos(k)
    double v = 0.0;
    if (c != k) v = (static_cast<double>(p[static_cast<int64_t>(k) * N2 + c]) + p[static_cast<int64_t>(c) * N2 + k] -
                     (c == pos ? 2.0 : 0.0)) * g;
    ck[c] = v;
  }
  __syncthreads();
  const float* zk = z + static_cast<int64_t>(k) * D;
  double* dk = dz + static_cast<int64_t>(k) * D;
  double zdz = 0.0;
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
    double acc = 0.0;
    for (int c = 0; c < N2; ++c) acc = __dadd_rn(acc, __dmul_rn(ck[c], z[static_cast<int64_t>(c) * D + j]));
    dk[j] = acc;
    zdz += zk[j] * acc;
  }
  zdz = block_sum(zdz, scratch);
  const double norm = norms[k];
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
    const double v = dk[j];
    dx[static_cast<int64_t>(k) * D + j] =
        norm > kNormEps ? static_cast<float>(__dsub_rn(v, __dmul_rn(zk[j], zdz)) / norm) : static_cast<float>(v / kNormEps);
  }
}

}  // namespace

void ntxent_forward(int64_t N2, int64_t D, const float* x, float temperature, float* loss, float* save_z,
                    float* save_norms, float* save_p) {
  need_int32(N2 * N2, "cuda nt_xent", "the similarity matrix");
  l2norm_forward(N2, D, x, kNormEps, save_z, save_norms);
  const int n2 = static_cast<int>(N2);
  Scratch sim(sizeof(double) * static_cast<size_t>(N2 * N2)), row_loss(sizeof(double) * static_cast<size_t>(N2));
  launch("nt_xent", ntxent_rows_kernel, n2, kThreads, 0, n2, D, static_cast<const float*>(save_z),
         1.0 / static_cast<double>(temperature), sim.as<double>(), save_p, row_loss.as<double>());
  mean_to_scalar(row_loss.as<double>(), N2, loss, "nt_xent");
}

void ntxent_backward(int64_t N2, int64_t D, const float* dloss, const float* x, const float* save_z,
                     const float* save_norms, const float* save_p, float temperature, float* dx) {
  need_int32(N2 * N2, "cuda nt_xent_backward", "the similarity matrix");
  const int n2 = static_cast<int>(N2);
  Scratch coef(sizeof(double) * static_cast<size_t>(N2 * N2)), dz(sizeof(double) * static_cast<size_t>(N2 * D));
  launch("nt_xent_backward", ntxent_backward_kernel, n2, kThreads, 0, n2, D, dloss, save_z, save_norms, save_p,
         static_cast<double>(temperature), coef.as<double>(), dz.as<double>(), dx);
}

}  // namespace c3::cuda
