// TileMoments (conv_moments.cuh): the tiles' (sum, M2) pairs merged per row in double.
#include <cuda_runtime.h>

#include "conv_moments.cuh"
#include "reduce.cuh"
#include "tile_gemm.cuh"

namespace c3::cuda {

namespace {

// Row m's mean and biased variance from its tiles' (sum, M2) pairs over `groups` products
// (layout [group][row][tile]), merged in double around the first tile's mean: the shifted sums
// s1 = sum n_t (mean_t - ref) and s2 = sum M2_t + n_t (mean_t - ref)^2, added in a fixed order.
__global__ void merge_tile_moments(int groups, int rows, int cols, int tiles, const float* __restrict__ part,
                                   float2* moments) {
  __shared__ double scratch[32];
  const int m = blockIdx.x;
  const auto count = [&](int t) { return static_cast<double>(min(tile::kTileCols, cols - t * tile::kTileCols)); };
  const float* row0 = part + 2 * static_cast<int64_t>(m) * tiles;
  const double ref = static_cast<double>(row0[0]) / count(0);
  double s1 = 0.0, s2 = 0.0;
  for (int i = threadIdx.x; i < groups * tiles; i += blockDim.x) {
    const int g = i / tiles, t = i % tiles;
    const float* pt = part + 2 * ((static_cast<int64_t>(g) * rows + m) * tiles + t);
    const double n = count(t), d = static_cast<double>(pt[0]) / n - ref;
    s1 += n * d;
    s2 += static_cast<double>(pt[1]) + n * d * d;
  }
  s1 = block_sum(s1, scratch);
  s2 = block_sum(s2, scratch);
  if (threadIdx.x == 0) {
    const double total = static_cast<double>(groups) * cols, shift = s1 / total;
    moments[m] = make_float2(static_cast<float>(ref + shift), static_cast<float>(fmax(s2 / total - shift * shift, 0.0)));
  }
}

}  // namespace

TileMoments::TileMoments(int groups, int tiles, int rows)
    : groups_(groups), tiles_(tiles), rows_(rows),
      part_(2 * sizeof(float) * static_cast<size_t>(groups) * tiles * rows) {}

float* TileMoments::group(int g) const {
  return part_.as<float>() + 2 * static_cast<int64_t>(g) * tiles_ * rows_;
}

void TileMoments::merge(const char* op, int cols, float2* moments) const {
  if (rows_ == 0 || groups_ == 0) return;
  launch(op, merge_tile_moments, rows_, 256, 0, groups_, rows_, cols, tiles_,
         static_cast<const float*>(part_.as<float>()), moments);
}

}  // namespace c3::cuda
