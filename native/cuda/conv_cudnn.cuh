// conv2d's three passes through cuDNN (cuda.h CudaConv::Cudnn): the same contract as conv2d.cuh's
// entries, which call these when cuDNN runs the convolutions.
#pragma once
#include "../core/backend.h"

namespace c3::cuda {

// y = conv(x, w) (+ bias per output channel)
void cudnn_conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
// dx = the input gradient (beta 0: written whole)
void cudnn_conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
// dw = the weight gradient
void cudnn_conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);

}  // namespace c3::cuda
