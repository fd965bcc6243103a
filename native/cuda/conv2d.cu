// conv2d as implicit GEMM: no im2col buffer, the tile loaders compute the addresses of the
// unfolded input (conv_gemm.cuh). Forward: Y (K x N*OH*OW) = W (K x CRS) X_col. Backward
// weight: dW (K x CRS) = dY (K x N*OH*OW) X_col^T, split over N*OH*OW when the output is small.
// Backward data runs once per stride phase, so a strided convolution's transpose multiplies no
// structural zeros.
#include <cuda_runtime.h>

#include "batchnorm.cuh"
#include "conv2d.cuh"
#include "reduce.cuh"
#include "runtime.cuh"
#include "tile_gemm.cuh"

namespace c3::cuda {

namespace {

using namespace gemmop;

ConvShape checked_shape(const Conv2dParams& p, const char* op) {
  need_int32(p.N * p.C * p.H * p.W, op, "the input");
  need_int32(p.N * p.K * p.OH * p.OW, op, "the output");
  need_int32(p.K * p.C * p.R * p.S, op, "the weight");
  return conv_shape(p);
}

// Channel m's mean and biased variance from its column tiles' (sum, M2) pairs (the epilogue's
// tile_row_moments), merged in double around tile 0's mean: the shifted sums
// s1 = sum n_t (mean_t - ref) and s2 = sum M2_t + n_t (mean_t - ref)^2, added in a fixed order.
__global__ void merge_tile_moments(int M, int cols, int tiles, const float* __restrict__ part, float2* moments) {
  __shared__ double scratch[32];
  const int m = blockIdx.x;
  const float* row = part + 2 * static_cast<int64_t>(m) * tiles;
  const auto count = [&](int t) { return static_cast<double>(min(tile::kTileCols, cols - t * tile::kTileCols)); };
  const double ref = static_cast<double>(row[0]) / count(0);
  double s1 = 0.0, s2 = 0.0;
  for (int t = threadIdx.x; t < tiles; t += blockDim.x) {
    const double n = count(t), d = static_cast<double>(row[2 * t]) / n - ref;
    s1 += n * d;
    s2 += static_cast<double>(row[2 * t + 1]) + n * d * d;
  }
  s1 = block_sum(s1, scratch);
  s2 = block_sum(s2, scratch);
  if (threadIdx.x == 0) {
    const double mean_shift = s1 / cols;
    moments[m] = make_float2(static_cast<float>(ref + mean_shift), static_cast<float>(fmax(s2 / cols - mean_shift * mean_shift, 0.0)));
  }
}

}  // namespace

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                    float* moments) {
  const ConvShape s = checked_shape(p, "cuda conv2d_forward");
  const int crs = s.C * s.R * s.S;
  if (!moments) {
    tile::tile_gemm("conv2d_forward", conv_weight(s, w), conv_fwd_x(s, x), conv_fwd_out(s, y, bias), crs);
    return;
  }
  // the statistics for a batch norm after the conv, from the tile epilogue while the values are
  // in registers; a K split has them only after its reduction, so then a pass over y
  const int cols = s.N * s.OH * s.OW, tiles = (cols + tile::kTileCols - 1) / tile::kTileCols;
  if (cols == 0 || s.K == 0) {
    channel_moments(p.N, p.K, p.OH * p.OW, y, moments);
    return;
  }
  Scratch part(2 * sizeof(float) * static_cast<size_t>(tiles) * s.K);
  if (tile::tile_gemm("conv2d_forward", conv_weight(s, w), conv_fwd_x(s, x), conv_fwd_out(s, y, bias), crs,
                      part.as<float>()))
    launch("conv2d_forward (moments)", merge_tile_moments, s.K, 256, 0, s.K, cols, tiles,
           static_cast<const float*>(part.as<float>()), reinterpret_cast<float2*>(moments));
  else
    channel_moments(p.N, p.K, p.OH * p.OW, y, moments);
}

void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const ConvShape s = checked_shape(p, "cuda conv2d_backward_data");
  if (bwdd_needs_zero(s))
    check_cuda(cudaMemsetAsync(dx, 0, sizeof(float) * static_cast<size_t>(p.N * p.C * p.H * p.W), stream()),
               "conv2d_backward_data");
  for_each_bwdd_phase(s, [&](const Phase& ph) {
    tile::tile_gemm("conv2d_backward_data", conv_bwdd_w(s, ph, w), conv_bwdd_dy(s, ph, dy), conv_bwdd_out(s, ph, dx),
                    s.K * ph.Rp * ph.Sp);
  });
}

void conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const ConvShape s = checked_shape(p, "cuda conv2d_backward_weight");
  const int64_t crs = static_cast<int64_t>(s.C) * s.R * s.S;
  tile::tile_gemm("conv2d_backward_weight", conv_bwdw_dy(s, dy), conv_bwdw_x(s, x),
                  DenseOut{dw, crs, 1, 1.0f, 0.0f, nullptr}, s.N * s.OH * s.OW);
}

}  // namespace c3::cuda
