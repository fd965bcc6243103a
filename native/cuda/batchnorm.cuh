// Batch normalisation on the device with PyTorch's semantics (as native/cpu/batchnorm.cc).
#pragma once
#include <cstdint>

#include "../core/backend.h"

namespace c3::cuda {

void batchnorm_forward_train(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                             float* running_mean, float* running_var, float momentum, float eps, float* y,
                             float* save_mean, float* save_invstd, const float* moments,
                             const BnEpilogue& epi = BnEpilogue{});
// per channel of x (N, C, HW): mean and biased variance into moments (C, 2), as batch norm forms them
void channel_moments(int64_t N, int64_t C, int64_t HW, const float* x, float* moments);
void batchnorm_forward_eval(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y,
                            const BnEpilogue& epi);
void batchnorm_backward(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                        float* dgamma, float* dbeta);
void batchnorm_leaky_backward(int64_t N, int64_t C, int64_t HW, bool training, float slope, const float* dy,
                              const float* y, const float* x, const float* gamma, const float* save_mean,
                              const float* save_invstd, float* dx, float* dgamma, float* dbeta);

}  // namespace c3::cuda
