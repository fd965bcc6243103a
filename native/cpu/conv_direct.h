// Direct AVX2 convolution for narrow stride-1 layers (conv_direct.cc): G's last layers have 1-16
// channels, where a GEMM has too few rows to reuse its packed panels and packing dominates.
// conv2d.cc routes the shapes where it pays (direct_conv_applies) here.
#pragma once
#include "winograd.h"

namespace c3::cpu {

// Stride 1, kernel at most 3x3, AVX2+FMA on this CPU, and few output channels of the pass
// (forward: K; backward-data: C; backward-weight: K * C small). C3GAN_DIRECT_CONV=0 in the
// environment turns the path off.
bool direct_conv_applies(const Conv2dParams& p, ConvPass pass);

void direct_conv_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
void direct_conv_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void direct_conv_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);

// For tests and benchmarks: whether direct_conv_applies may say yes.
void set_direct_conv_enabled(bool on);
bool direct_conv_enabled();

}  // namespace c3::cpu
