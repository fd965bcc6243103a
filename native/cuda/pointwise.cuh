// Elementwise kernels on the device: GLU, unary maps and gradients, broadcast binary ops,
// expand and sum_to (as native/cpu/pointwise.cc).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/backend.h"

namespace c3::cuda {

void glu_forward(int64_t outer, int64_t half, int64_t inner, const float* x, float* y);
void glu_backward(int64_t outer, int64_t half, int64_t inner, const float* dy, const float* x, float* dx);
void unary_forward(UnaryOp op, size_t n, const float* x, float alpha, float* y);
void unary_backward(UnaryOp op, size_t n, const float* dy, const float* x, const float* y, float alpha, float* dx);
void binary_forward(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y);
void expand(const BroadcastIndex& idx, const float* x, float* y);
void sum_to(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel);

}  // namespace c3::cuda
