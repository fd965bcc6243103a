// NT-Xent on the device (as native/cpu/ntxent.cc): fused similarity, softmax and loss forward,
// and the fused backward through the normalisation.
#pragma once
#include <cstdint>

namespace c3::cuda {

void ntxent_forward(int64_t N2, int64_t D, const float* x, float temperature, float* loss, float* save_z,
                    float* save_norms, float* save_p);
void ntxent_backward(int64_t N2, int64_t D, const float* dloss, const float* x, const float* save_z,
                     const float* save_norms, const float* save_p, float temperature, float* dx);

}  // namespace c3::cuda
