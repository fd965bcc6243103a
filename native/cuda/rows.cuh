// Row-wise kernels on the device over (N, D): L2 normalisation, softmax / log-softmax,
// cross-entropy (as native/cpu/rows.cc).
#pragma once
#include <cstdint>

namespace c3::cuda {

void l2norm_forward(int64_t N, int64_t D, const float* x, float eps, float* y, float* norms);
void l2norm_backward(int64_t N, int64_t D, const float* dy, const float* x, const float* norms, float eps, float* dx);
void softmax_forward(int64_t N, int64_t D, const float* x, bool log, float* y);
void softmax_backward(int64_t N, int64_t D, const float* dy, const float* y, bool log, float* dx);
void cross_entropy_forward(int64_t N, int64_t D, const float* logits, const int32_t* targets, float* loss,
                           float* probs);
void cross_entropy_backward(int64_t N, int64_t D, const float* probs, const int32_t* targets, const float* dloss,
                            float* dlogits);

// out[0] = float(sum of values[0..n) / n), summed in a fixed order (the losses' batch means)
void mean_to_scalar(const double* values, int64_t n, float* out, const char* op);

}  // namespace c3::cuda
