// Which engine runs a plain convolution pass (cuda.h CudaConv): the one chosen, or under Auto the
// faster of the tile kernels and cuDNN for that pass, shape and math mode, timed once per process.
#pragma once
#include <cstddef>
#include <functional>

#include "../core/backend.h"

namespace c3::cuda {

enum class ConvPass : int { Forward, ForwardMoments, ForwardLeaky, BackwardData, BackwardDataAccumulate, BackwardWeight };

// Runs the pass on one engine (true: cuDNN) into out (and moments, for ForwardMoments): what the
// call would run, with its outputs moved to the tuner's scratch.
using ConvTrial = std::function<void(bool cudnn, float* out, float* moments)>;

// Whether cuDNN runs this call. Under Auto, the first call of a pass, shape and math mode times
// trial on both engines (a warm-up, then the best of two runs each, into scratch of out_floats
// and moments_floats) and keeps the faster; a shape cuDNN cannot run stays on the tile kernels.
// Empty shapes stay on the tile kernels (their no-op or zero fill).
bool conv_on_cudnn(ConvPass pass, const Conv2dParams& p, size_t out_floats, size_t moments_floats,
                   const ConvTrial& trial);

}  // namespace c3::cuda
