// The conv of a nearest-2x-upsampled input (backend.h's conv2d_up_*) on the device.
#pragma once
#include "../core/backend.h"

namespace c3::cuda {

void conv2d_up_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                       float* moments);
void conv2d_up_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_up_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);

}  // namespace c3::cuda
