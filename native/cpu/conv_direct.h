// Direct convolution loops for narrow stride-1 layers (conv_direct.cc): G's last layers have 1-16
// channels, where a GEMM has too few rows to reuse its packed panels and packing dominates.
// conv2d.cc routes the shapes where it pays (direct_conv_applies) here.
#pragma once
#include "winograd.h"

namespace c3::cpu {

// Stride 1, kernel at most 3x3, the loops' vectors on this CPU (direct_loops_available), and few
// output channels of the pass (forward: K <= 32; backward-data: C <= 16; backward-weight:
// K * C <= 1024). conv2d.cc asks
// Winograd first in the forward (it wins on small maps) and the direct loops first in
// backward-data. C3GAN_DIRECT_CONV=0 in the environment turns the path off.
bool direct_conv_applies(const Conv2dParams& p, ConvPass pass);

// moments: null, or (K, 2) for each output channel's mean and biased variance (conv2d_forward's),
// formed while each band of output rows is in cache
void direct_conv_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                         float* moments = nullptr);
void direct_conv_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void direct_conv_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);

// The blocked forward for strided convs (D's 4x4 stride-2 convs): the GEMM micro-kernel's 6 x 16
// register tile fed straight from a zero-padded phase layout of the input, no packing. Needs
// the vectors, output rows of a multiple of 16, 8 or 4 columns and at least 6 output channels.
bool blocked_forward_applies(const Conv2dParams& p);
void blocked_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);

// Backward-data of 4x4 stride-2 convs on the same tiles: four stride-1 2x2 convs, one per phase
// of dx, fed from a zero-padded copy of dy (no packing, no col2im). Needs the vectors, phases of a
// multiple of 16, 8 or 4 columns, and at least 6 input channels.
bool blocked_backward_data_applies(const Conv2dParams& p);
void blocked_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);

// Whether this CPU runs the loops' eight-float vectors: AVX2+FMA on x86, Advanced SIMD on AArch64
// (vec8.h); without them none of the *_applies says yes.
bool direct_loops_available();

// For tests and benchmarks: whether direct_conv_applies and blocked_*_applies may say yes.
void set_direct_conv_enabled(bool on);
bool direct_conv_enabled();
// Whether the direct forward and weight-gradient loops use the blocks of 4 (forward) and 2
// (weight gradient) output channels that need AVX-512VL's 32 vector registers; on by default
// where the CPU has them, and setting it on elsewhere leaves it off.
void set_direct_wide_registers(bool on);
bool direct_wide_registers();

}  // namespace c3::cpu
