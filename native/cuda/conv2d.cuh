// conv2d on the device (NCHW input, KCRS weight) as implicit GEMMs on the tile kernels.
#pragma once
#include "../core/backend.h"

namespace c3::cuda {

// moments: backend.h's, from the tile kernel's epilogue
void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                    float* moments);
// the conv followed by LeakyReLU(slope), applied in the tile epilogue (and its split-K reduction)
void conv2d_forward_leaky(const Conv2dParams& p, const float* x, const float* w, const float* bias, float slope,
                          float* y);
void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
// dx += the gradient, in the tile epilogue (no pass of its own)
void conv2d_backward_data_accumulate(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);

}  // namespace c3::cuda
