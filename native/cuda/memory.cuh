// Memory entries of the CUDA backend table: the caching allocator (allocator.cu), the copies
// through pinned staging (runtime.cu) and the streaming kernels fill, axpy, sum_into, affine (memory.cu).
#pragma once
#include <cstddef>

#include "../core/backend.h"

namespace c3::cuda {

void* alloc(size_t bytes);
void free(void* p);
void upload(float* dst, const float* host, size_t n);
void download(float* host, const float* src, size_t n);  // waits for the stream
void copy(float* dst, const float* src, size_t n);
void fill(float* x, size_t n, float v);
void synchronize();
int64_t held_bytes();  // the caching allocator's in-use plus cached bytes (no CUDA call)
void axpy(size_t n, float alpha, const float* x, float* y);
void sum_into(const SumInto* ts, size_t count);  // one launch over a table (as adam.cu's)
void affine(size_t n, const float* x, float scale, float shift, float* y);

}  // namespace c3::cuda
