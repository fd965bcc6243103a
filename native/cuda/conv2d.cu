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

// Whether cuDNN runs this conv (cuda.h CudaConv): when chosen, for every non-empty shape (an
// empty one is the tile path's no-op or zero fill)
bool on_cudnn(const Conv2dParams& p) {
  return conv_engine() == CudaConv::Cudnn && p.N > 0 && p.C > 0 && p.K > 0 && p.OH > 0 && p.OW > 0;
}

}  // namespace

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                    float* moments) {
  if (on_cudnn(p)) {
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

void conv2d_forward_leaky(const Conv2dParams& p, const float* x, const float* w, const float* bias, float slope,
                          float* y) {
  if (on_cudnn(p)) {  // the conv, then LeakyReLU in place: the two ops' bits
    cudnn_conv2d_forward(p, x, w, bias, y);
    unary_forward(UnaryOp::LeakyRelu, static_cast<size_t>(p.N * p.K * p.OH * p.OW), y, slope, y);
    return;
  }
  const ConvShape s = checked_shape(p, "cuda conv2d_forward");
  tile::tile_gemm("conv2d_forward", conv_weight(s, w), conv_fwd_x(s, x), conv_fwd_out(s, y, bias, &slope),
                  s.C * s.R * s.S);
}

namespace {

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

}  // namespace

void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (on_cudnn(p)) return cudnn_conv2d_backward_data(p, dy, w, dx);
  backward_data(p, dy, w, dx, 0.0f);
}

void conv2d_backward_data_accumulate(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (on_cudnn(p)) {
    // into scratch, then added: the bits of backward data then axpy, which cuDNN's beta = 1 does
    // not promise (an algorithm may add partial sums into dx in its own order)
    const size_t n = static_cast<size_t>(p.N * p.C * p.H * p.W);
    const Scratch g(n * sizeof(float));
    cudnn_conv2d_backward_data(p, dy, w, g.as<float>());
    axpy(n, 1.0f, g.as<float>(), dx);
    return;
  }
  backward_data(p, dy, w, dx, 1.0f);
}

void conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  if (on_cudnn(p)) return cudnn_conv2d_backward_weight(p, dy, x, dw);
  const ConvShape s = checked_shape(p, "cuda conv2d_backward_weight");
  const int64_t crs = static_cast<int64_t>(s.C) * s.R * s.S;
  tile::tile_gemm("conv2d_backward_weight", conv_bwdw_dy(s, dy), conv_bwdw_x(s, x),
                  DenseOut{dw, crs, 1, 1.0f, 0.0f, nullptr}, s.N * s.OH * s.OW);
}

}  // namespace c3::cuda
