// Batch norm's affine then GLU in one pass on the device (backend.h's bn_glu_*).
#pragma once
#include <cstdint>

namespace c3::cuda {

void bn_glu_forward(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* invstd, float* y);
void bn_glu_backward(int64_t N, int64_t half, int64_t HW, const float* dy, const float* x, const float* gamma,
                     const float* beta, const float* mean, const float* invstd, float* dz);

}  // namespace c3::cuda
