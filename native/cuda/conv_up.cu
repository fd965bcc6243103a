// The conv of a nearest-2x-upsampled input on the device: upsample into stream-ordered scratch,
// then the 3x3 conv's own kernels (the CPU runs it on the four output phases, native/cpu/conv_up.cc;
// a phase-split tensor-core kernel is a later step here).
#include <cuda_runtime.h>

#include "conv2d.cuh"
#include "conv_up.cuh"
#include "layout.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

// the 3x3 conv of the upsampled input, p its parameters on x
Conv2dParams upsampled(const Conv2dParams& p) {
  Conv2dParams q = p;
  q.H = q.OH = 2 * p.H;
  q.W = q.OW = 2 * p.W;
  return q;
}

size_t upsampled_bytes(const Conv2dParams& p) { return sizeof(float) * static_cast<size_t>(p.N * p.C * 4 * p.H * p.W); }

}  // namespace

void conv2d_up_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                       float* moments) {
  Scratch u(upsampled_bytes(p));
  upsample2x_forward(p.N * p.C, p.H, p.W, x, u.as<float>());
  conv2d_forward(upsampled(p), u.as<float>(), w, bias, y, moments);
}

void conv2d_up_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  Scratch du(upsampled_bytes(p));
  conv2d_backward_data(upsampled(p), dy, w, du.as<float>());
  upsample2x_backward(p.N * p.C, p.H, p.W, du.as<float>(), dx);
}

void conv2d_up_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  Scratch u(upsampled_bytes(p));
  upsample2x_forward(p.N * p.C, p.H, p.W, x, u.as<float>());
  conv2d_backward_weight(upsampled(p), dy, u.as<float>(), dw);
}

}  // namespace c3::cuda
