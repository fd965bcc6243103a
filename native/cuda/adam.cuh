// The fused Adam step on the device (as native/cpu/adam.cc).
#pragma once
#include <cstddef>
#include <cstdint>

namespace c3::cuda {

void adam_step(size_t n, float* param, const float* grad, float* m, float* v, double lr, double beta1, double beta2,
               double eps, double weight_decay, int64_t step);

}  // namespace c3::cuda
