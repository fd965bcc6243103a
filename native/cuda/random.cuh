// Random fills on the device: Philox4x32-10 element i = counter offset + i (philox.cuh), the
// same numbers as the CPU backend.
#pragma once
#include <cstddef>
#include <cstdint>

namespace c3::cuda {

void rand_normal(float* y, size_t n, uint64_t key, uint64_t offset, float mean, float std);
void rand_uniform(float* y, size_t n, uint64_t key, uint64_t offset, float lo, float hi);

}  // namespace c3::cuda
