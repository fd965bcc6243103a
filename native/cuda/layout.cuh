// Data movement on the device: nearest 2x upsampling and the block copy behind concat/slice.
#pragma once
#include <cstdint>

namespace c3::cuda {

void upsample2x_forward(int64_t planes, int64_t H, int64_t W, const float* x, float* y);
void upsample2x_backward(int64_t planes, int64_t H, int64_t W, const float* dy, float* dx);
void copy_block(int64_t outer, int64_t inner, int64_t len, const float* src, int64_t src_dim, int64_t src_off,
                float* dst, int64_t dst_dim, int64_t dst_off);

}  // namespace c3::cuda
