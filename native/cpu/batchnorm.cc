// Batch normalisation over (N, C, HW) with PyTorch's semantics: per-channel statistics across N
// and HW, biased variance for normalising, unbiased variance into the running estimate.
// Statistics are accumulated in double; work is split over channels, and every pass walks
// n-major so that (N, C) inputs (HW = 1) are read contiguously too.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

namespace {

// sum of x[0..n) and of dy*(x - mean), with four partial sums so the adds overlap
double row_sum(const float* x, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) s0 += x[i], s1 += x[i + 1], s2 += x[i + 2], s3 += x[i + 3];
  for (; i < n; ++i) s0 += x[i];
  return (s0 + s1) + (s2 + s3);
}

double row_sqdev(const float* x, int64_t n, double mean) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    double d0 = x[i] - mean, d1 = x[i + 1] - mean, d2 = x[i + 2] - mean, d3 = x[i + 3] - mean;
    s0 += d0 * d0, s1 += d1 * d1, s2 += d2 * d2, s3 += d3 * d3;
  }
  for (; i < n; ++i) s0 += (x[i] - mean) * (x[i] - mean);
  return (s0 + s1) + (s2 + s3);
}

double row_dot_dev(const float* dy, const float* x, int64_t n, double mean) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += dy[i] * (x[i] - mean), s1 += dy[i + 1] * (x[i + 1] - mean);
    s2 += dy[i + 2] * (x[i + 2] - mean), s3 += dy[i + 3] * (x[i + 3] - mean);
  }
  for (; i < n; ++i) s0 += dy[i] * (x[i] - mean);
  return (s0 + s1) + (s2 + s3);
}

// channels per work item: enough that an item reads ~16K floats
int64_t channel_grain(int64_t N, int64_t HW) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, N * HW)); }

// y = x * scale[c] + shift[c] for channels [c0, c1)
void apply_affine(int64_t N, int64_t C, int64_t HW, int64_t c0, int64_t c1, const float* x, const float* scale,
                  const float* shift, float* y) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t off = (n * C + c) * HW;
      const float a = scale[c - c0], b = shift[c - c0];
      for (int64_t i = 0; i < HW; ++i) y[off + i] = x[off + i] * a + b;
    }
}

}  // namespace

void batchnorm_forward_train(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                             float* running_mean, float* running_var, float momentum, float eps, float* y,
                             float* save_mean, float* save_invstd) {
  const int64_t count = N * HW;
  if (count == 0) return;
  parallel_for(C, channel_grain(N, HW), [&](int64_t c0, int64_t c1) {
    const int64_t nc = c1 - c0;
    std::vector<double> mean(nc, 0.0), sq(nc, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) mean[c - c0] += row_sum(x + (n * C + c) * HW, HW);
    for (int64_t j = 0; j < nc; ++j) mean[j] /= count;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) sq[c - c0] += row_sqdev(x + (n * C + c) * HW, HW, mean[c - c0]);
    std::vector<float> scale(nc), shift(nc);
    for (int64_t j = 0; j < nc; ++j) {
      const int64_t c = c0 + j;
      const double var = sq[j] / count;
      const double invstd = 1.0 / std::sqrt(var + eps);
      if (save_mean) save_mean[c] = static_cast<float>(mean[j]);
      if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
      if (running_mean) running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean[j]);
      if (running_var) {
        // PyTorch's unbiased estimate; a single value per channel has none, keep the biased one
        const double unbiased = count > 1 ? var * count / (count - 1) : var;
        running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
      }
      const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
      scale[j] = static_cast<float>(g * invstd);
      shift[j] = static_cast<float>(b - mean[j] * g * invstd);
    }
    apply_affine(N, C, HW, c0, c1, x, scale.data(), shift.data(), y);
  });
}

void batchnorm_forward_eval(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y) {
  parallel_for(C, channel_grain(N, HW), [&](int64_t c0, int64_t c1) {
    const int64_t nc = c1 - c0;
    std::vector<float> scale(nc), shift(nc);
    for (int64_t j = 0; j < nc; ++j) {
      const int64_t c = c0 + j;
      const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
      const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
      scale[j] = static_cast<float>(g * invstd);
      shift[j] = static_cast<float>(b - running_mean[c] * g * invstd);
    }
    apply_affine(N, C, HW, c0, c1, x, scale.data(), shift.data(), y);
  });
}

void batchnorm_backward(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                        float* dgamma, float* dbeta) {
  const int64_t count = N * HW;
  parallel_for(C, channel_grain(N, HW), [&](int64_t c0, int64_t c1) {
    const int64_t nc = c1 - c0;
    std::vector<double> sum_dy(nc, 0.0), sum_dy_dev(nc, 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t off = (n * C + c) * HW;
        sum_dy[c - c0] += row_sum(dy + off, HW);
        sum_dy_dev[c - c0] += row_dot_dev(dy + off, x + off, HW, save_mean[c]);
      }
    // dx = a*dy + b*(x - mean) + k: training subtracts the mean of dy and the projection on xhat
    std::vector<float> a(nc), b(nc), k(nc), mean(nc);
    for (int64_t j = 0; j < nc; ++j) {
      const int64_t c = c0 + j;
      const double invstd = save_invstd[c];
      const double sum_dy_xhat = sum_dy_dev[j] * invstd;
      if (dgamma) dgamma[c] = static_cast<float>(sum_dy_xhat);
      if (dbeta) dbeta[c] = static_cast<float>(sum_dy[j]);
      const double ga = (gamma ? gamma[c] : 1.0) * invstd;
      a[j] = static_cast<float>(ga);
      mean[j] = save_mean[c];
      if (training && count > 0) {
        b[j] = static_cast<float>(-ga * invstd * sum_dy_xhat / count);
        k[j] = static_cast<float>(-ga * sum_dy[j] / count);
      } else {
        b[j] = 0.0f;
        k[j] = 0.0f;
      }
    }
    if (!dx) return;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t off = (n * C + c) * HW, j = c - c0;
        const float aj = a[j], bj = b[j], kj = k[j], mj = mean[j];
        for (int64_t i = 0; i < HW; ++i) dx[off + i] = aj * dy[off + i] + bj * (x[off + i] - mj) + kj;
      }
  });
}

}  // namespace c3::cpu
