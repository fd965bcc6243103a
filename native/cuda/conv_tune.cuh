// Which engine runs a plain convolution pass (cuda.h CudaConv): the one chosen, or under Auto the
// faster of the tile kernels and cuDNN for that pass, shape and math mode, timed once per process.
#pragma once
#include <cstddef>
#include <functional>

#include "../core/backend.h"
#include "runtime.cuh"

namespace c3::cuda {

enum class ConvPass : int { Forward, ForwardMoments, ForwardLeaky, BackwardData, BackwardDataAccumulate, BackwardWeight };

// Runs the pass on one engine (true: cuDNN) into out (and moments, for ForwardMoments): what the
// call would run, with its outputs moved to the tuner's scratch.
using ConvTrial = std::function<void(bool cudnn, float* out, float* moments)>;

// Auto's choice for this pass, shape and math mode: at its first call, trial timed on both engines
// (a warm-up, then the best of two runs each, into scratch of out_floats and moments_floats) and
// the faster kept; a shape cuDNN cannot run stays on the tile kernels.
bool auto_conv_on_cudnn(ConvPass pass, const Conv2dParams& p, size_t out_floats, size_t moments_floats,
                        const ConvTrial& trial);

// Whether cuDNN runs this call: the engine chosen, or Auto's choice. Empty shapes stay on the tile
// kernels (their no-op or zero fill). (A template, so the fixed engines make no std::function.)
template <class Trial>
bool conv_on_cudnn(ConvPass pass, const Conv2dParams& p, size_t out_floats, size_t moments_floats,
                   const Trial& trial) {
  if (p.N <= 0 || p.C <= 0 || p.K <= 0 || p.OH <= 0 || p.OW <= 0) return false;
  const CudaConv engine = conv_engine();
  if (engine != CudaConv::Auto) return engine == CudaConv::Cudnn;
  return auto_conv_on_cudnn(pass, p, out_floats, moments_floats, ConvTrial(trial));
}

}  // namespace c3::cuda
