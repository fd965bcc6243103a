// affine_grid and bilinear grid_sample on the device (as native/cpu/grid_sample.cc).
#pragma once
#include <cstdint>

namespace c3::cuda {

void affine_grid_forward(int64_t N, int64_t H, int64_t W, const float* theta, float* grid);
void affine_grid_backward(int64_t N, int64_t H, int64_t W, const float* dgrid, float* dtheta);
void grid_sample_forward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* x,
                         const float* grid, float* y);
void grid_sample_backward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* dy,
                          const float* x, const float* grid, float* dx, float* dgrid);

}  // namespace c3::cuda
