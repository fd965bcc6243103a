// conv2d as implicit GEMM: no im2col buffer, the tile loaders compute the addresses of the
// unfolded input (conv_gemm.cuh). Forward: Y (K x N*OH*OW) = W (K x CRS) X_col. Backward
// weight: dW (K x CRS) = dY (K x N*OH*OW) X_col^T, split over N*OH*OW when the output is small.
// Backward data runs once per stride phase, so a strided convolution's transpose multiplies no
// structural zeros; the four phases of a stride-2 conv, all of one size, run in one launch.
#include <cuda_runtime.h>

#include "batchnorm.cuh"
#include "conv2d.cuh"
#include "conv_cudnn.cuh"
#include "conv_moments.cuh"
#include "conv_tune.cuh"
#include "gemm.cuh"
#include "memory.cuh"
#include "pointwise.cuh"
#include "runtime.cuh"
#include "tile_gemm.cuh"

namespace c3::cuda {

namespace {

using namespace gemmop;

ConvShape checked_shape(const Conv2dParams& p, const char* op) {
  need_int32(p.N * p.C * p.H * p.W, op, "the input");
  need_int32(p.N * p.K * p.OH * p.OW, op, "the output");
  need_int32(p.K * p.C * p.R * p.S, op, "the weight");
  return conv_shape(p);
}

size_t input_floats(const Conv2dParams& p) { return static_cast<size_t>(p.N * p.C * p.H * p.W); }
size_t output_floats(const Conv2dParams& p) { return static_cast<size_t>(p.N * p.K * p.OH * p.OW); }
size_t weight_floats(const Conv2dParams& p) { return static_cast<size_t>(p.K * p.C * p.R * p.S); }

void forward_on(bool cudnn, const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                float* moments) {
  if (cudnn) {
    cudnn_conv2d_forward(p, x, w, bias, y);
    if (moments) channel_moments(p.N, p.K, p.OH * p.OW, y, moments);
    return;
  }
  const ConvShape s = checked_shape(p, "cuda conv2d_forward");
  // the statistics for a batch norm after the conv, from the tile epilogue while the values are
  // in registers; a K split (or an empty product) has none, so then a pass over y
  const int cols = s.N * s.OH * s.OW, tiles = (cols + tile::kTileCols - 1) / tile::kTileCols;
  const TileMoments tm(moments ? 1 : 0, tiles, s.K);
  const bool formed = tile::tile_gemm("conv2d_forward", conv_weight(s, w), conv_fwd_x(s, x), conv_fwd_out(s, y, bias),
                                      s.C * s.R * s.S, moments ? tm.group(0) : nullptr);
  if (!moments) return;
  if (formed) tm.merge("conv2d_forward (moments)", cols, reinterpret_cast<float2*>(moments));
  else channel_moments(p.N, p.K, p.OH * p.OW, y, moments);
}

void forward_leaky_on(bool cudnn, const Conv2dParams& p, const float* x, const float* w, const float* bias, float slope,
                      float* y) {
  if (cudnn) {  // the conv, then LeakyReLU in place: the two ops' bits
    cudnn_conv2d_forward(p, x, w, bias, y);
    unary_forward(UnaryOp::LeakyRelu, output_floats(p), y, slope, y);
    return;
  }
  const ConvShape s = checked_shape(p, "cuda conv2d_forward");
  tile::tile_gemm("conv2d_forward", conv_weight(s, w), conv_fwd_x(s, x), conv_fwd_out(s, y, bias, &slope),
                  s.C * s.R * s.S);
}

// dx = the product (beta 0) or dx += it (beta 1: the epilogue adds the value held, as axpy would)
void backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx, float beta) {
  const ConvShape s = checked_shape(p, "cuda conv2d_backward_data");
  if (s.OH == 1 && s.OW == 1 && s.pad == 0 && s.H == s.R && s.W == s.S) {
    // a kernel covering the whole unpadded input (D's last 4x4 conv to a 1x1 map, stride 4):
    // dx (N x CRS) = dy (N x K) W (K x CRS), one product where the stride phases took R*S
    gemm(false, false, s.N, static_cast<int64_t>(s.C) * s.R * s.S, s.K, 1.0f, dy, w, beta, dx);
    return;
  }
  // pixels no phase covers (stride over the kernel) get no gradient: zeros, or dx as held
  if (bwdd_needs_zero(s) && beta == 0.0f)
    check_cuda(cudaMemsetAsync(dx, 0, sizeof(float) * static_cast<size_t>(p.N * p.C * p.H * p.W), stream()),
               "conv2d_backward_data");
  const BwddPhases phases = bwdd_phases(s);
  if (phases.uniform && phases.count == 4) {  // a 2x2 grid of phases of the same sizes: one launch
    const Phase& ph = phases.ph[0];
    tile::Phases<4> ps{};
    for (int i = 0; i < 4; ++i) ps.at[i] = phase_at(phases.ph[i]);
    tile::tile_gemm_phases("conv2d_backward_data", conv_bwdd_w(s, ph, w), conv_bwdd_dy(s, ph, dy),
                           conv_bwdd_out(s, ph, dx, beta), ps, s.K * ph.Rp * ph.Sp);
    return;
  }
  for_each_bwdd_phase(s, [&](const Phase& ph) {
    tile::tile_gemm("conv2d_backward_data", conv_bwdd_w(s, ph, w), conv_bwdd_dy(s, ph, dy),
                    conv_bwdd_out(s, ph, dx, beta), s.K * ph.Rp * ph.Sp);
  });
}

void backward_data_on(bool cudnn, const Conv2dParams& p, const float* dy, const float* w, float* dx, bool accumulate) {
  if (!cudnn) return backward_data(p, dy, w, dx, accumulate ? 1.0f : 0.0f);
  if (!accumulate) return cudnn_conv2d_backward_data(p, dy, w, dx);
  // into scratch, then added: the bits of backward data then axpy, which cuDNN's beta = 1 does
  // not promise (an algorithm may add partial sums into dx in its own order)
  const Scratch g(input_floats(p) * sizeof(float));
  cudnn_conv2d_backward_data(p, dy, w, g.as<float>());
  axpy(input_floats(p), 1.0f, g.as<float>(), dx);
}

void backward_weight_on(bool cudnn, const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  if (cudnn) return cudnn_conv2d_backward_weight(p, dy, x, dw);
  const ConvShape s = checked_shape(p, "cuda conv2d_backward_weight");
  const int64_t crs = static_cast<int64_t>(s.C) * s.R * s.S;
  tile::tile_gemm("conv2d_backward_weight", conv_bwdw_dy(s, dy), conv_bwdw_x(s, x),
                  DenseOut{dw, crs, 1, 1.0f, 0.0f, nullptr}, s.N * s.OH * s.OW);
}

}  // namespace

// Each entry asks conv_tune which engine runs it (cuda.h CudaConv), handing it the same call with
// its outputs moved, for Auto's trials.

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                    float* moments) {
  const ConvPass pass = moments ? ConvPass::ForwardMoments : ConvPass::Forward;
  const bool cudnn =
      conv_on_cudnn(pass, p, output_floats(p), moments ? 2 * static_cast<size_t>(p.K) : 0,
                    [&](bool c, float* out, float* m) { forward_on(c, p, x, w, bias, out, moments ? m : nullptr); });
  forward_on(cudnn, p, x, w, bias, y, moments);
}

void conv2d_forward_leaky(const Conv2dParams& p, const float* x, const float* w, const float* bias, float slope,
                          float* y) {
  const bool cudnn = conv_on_cudnn(ConvPass::ForwardLeaky, p, output_floats(p), 0,
                                   [&](bool c, float* out, float*) { forward_leaky_on(c, p, x, w, bias, slope, out); });
  forward_leaky_on(cudnn, p, x, w, bias, slope, y);
}

void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const bool cudnn = conv_on_cudnn(ConvPass::BackwardData, p, input_floats(p), 0,
                                   [&](bool c, float* out, float*) { backward_data_on(c, p, dy, w, out, false); });
  backward_data_on(cudnn, p, dy, w, dx, false);
}

void conv2d_backward_data_accumulate(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  // (the trials add into scratch that holds no gradient: the same work, their sums unused)
  const bool cudnn = conv_on_cudnn(ConvPass::BackwardDataAccumulate, p, input_floats(p), 0,
                                   [&](bool c, float* out, float*) { backward_data_on(c, p, dy, w, out, true); });
  backward_data_on(cudnn, p, dy, w, dx, true);
}

void conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const bool cudnn = conv_on_cudnn(ConvPass::BackwardWeight, p, weight_floats(p), 0,
                                   [&](bool c, float* out, float*) { backward_weight_on(c, p, dy, x, out); });
  backward_weight_on(cudnn, p, dy, x, dw);
}

}  // namespace c3::cuda
