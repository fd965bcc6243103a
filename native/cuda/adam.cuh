// The fused multi-tensor Adam step on the device (as native/cpu/adam.cc).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/backend.h"

namespace c3::cuda {

void adam_step(const AdamTensor* ts, size_t count, double lr, double beta1, double beta2, double eps,
               double weight_decay);

}  // namespace c3::cuda
