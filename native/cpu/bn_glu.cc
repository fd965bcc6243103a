// Batch norm's affine and the GLU after it in one pass (the generator's conv -> BN -> GLU blocks):
// the statistics come from batchnorm_forward_train without its normalising pass, and this pass
// reads x once and writes the GLU's half-size output, where BN then GLU wrote and re-read the
// full-size normalised tensor. The backward recomputes the normalised values from x and gives
// their gradient, which batchnorm_backward takes as its dy.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/threadpool.h"
#include "host_alloc.h"
#include "kernels.h"
#include "pointwise_kernels.h"

namespace c3::cpu {
namespace {

// Per channel of the C = 2 * half: z = x * s + t, in double then rounded once (backend.h).
void coefficients(int64_t C, const float* gamma, const float* beta, const float* mean, const float* invstd, float* s,
                  float* t) {
  for (int64_t c = 0; c < C; ++c) {
    const double g = static_cast<double>(gamma[c]) * invstd[c];
    s[c] = static_cast<float>(g);
    t[c] = static_cast<float>(beta[c] - static_cast<double>(mean[c]) * g);
  }
}

// Rows shorter than this are laid side by side: one run per sample with per-element coefficients.
constexpr int64_t kShortRow = 16;
constexpr int64_t kGrain = 16384;  // floats of output per parallel task

// Calls run(n, j, len, coefficients) over the output's runs: (sample n, channel j) rows of HW, or
// for short rows whole samples of half * HW with the coefficients spread along them.
template <class Run>
void over_runs(int64_t N, int64_t half, int64_t HW, const float* gamma, const float* beta, const float* mean,
               const float* invstd, Run run) {
  std::vector<float> s(2 * half), t(2 * half);
  coefficients(2 * half, gamma, beta, mean, invstd, s.data(), t.data());
  if (HW >= kShortRow) {
    parallel_for(N * half, std::max<int64_t>(1, kGrain / HW), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t j = r % half;
        run(r / half, j, HW, AffinePair{&s[j], &t[j], &s[half + j], &t[half + j], 0});
      }
    });
    return;
  }
  const int64_t len = half * HW;
  std::vector<float> col(4 * len);
  for (int64_t i = 0; i < len; ++i) {
    const int64_t j = i / HW;
    col[i] = s[j], col[len + i] = t[j], col[2 * len + i] = s[half + j], col[3 * len + i] = t[half + j];
  }
  const AffinePair c{col.data(), col.data() + len, col.data() + 2 * len, col.data() + 3 * len, 1};
  parallel_for(N, std::max<int64_t>(1, kGrain / len), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) run(n, 0, len, c);
  });
}

}  // namespace

void bn_glu_forward(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* invstd, float* y) {
  if (N * half * HW == 0) return;
  const PointwiseKernels& k = pointwise_kernels();
  const int64_t len = half * HW;
  over_runs(N, half, HW, gamma, beta, mean, invstd, [&](int64_t n, int64_t j, int64_t m, const AffinePair& c) {
    const float* xa = x + n * 2 * len + j * HW;
    k.affine_glu_forward(m, xa, xa + len, c, y + n * len + j * HW);
  });
}

void bn_glu_backward(int64_t N, int64_t half, int64_t HW, const float* dy, const float* x, const float* gamma,
                     const float* beta, const float* mean, const float* invstd, float* dz) {
  if (N * half * HW == 0) return;
  const PointwiseKernels& k = pointwise_kernels();
  const int64_t len = half * HW;
  over_runs(N, half, HW, gamma, beta, mean, invstd, [&](int64_t n, int64_t j, int64_t m, const AffinePair& c) {
    const int64_t off = n * 2 * len + j * HW;
    k.affine_glu_backward(m, dy + n * len + j * HW, x + off, x + off + len, c, dz + off, dz + off + len);
  });
}

void bn_glu_forward_train(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                          float* running_mean, float* running_var, float momentum, float eps, const float* moments,
                          float* y, float* save_mean, float* save_invstd) {
  batchnorm_forward_train(N, 2 * half, HW, x, gamma, beta, running_mean, running_var, momentum, eps, nullptr,
                          save_mean, save_invstd, moments);
  bn_glu_forward(N, half, HW, x, gamma, beta, save_mean, save_invstd, y);
}

void bn_glu_batchnorm_backward(int64_t N, int64_t half, int64_t HW, bool training, const float* dy, const float* x,
                               const float* gamma, const float* beta, const float* mean, const float* invstd,
                               float* dx, float* dgamma, float* dbeta) {
  const HostFloats dz(static_cast<size_t>(N * 2 * half * HW));
  bn_glu_backward(N, half, HW, dy, x, gamma, beta, mean, invstd, dz.get());
  batchnorm_backward(N, 2 * half, HW, training, dz.get(), x, gamma, mean, invstd, dx, dgamma, dbeta);
}

// ---- the plain loops: z in double from the statistics, the sigmoid in double

void bn_glu_forward_reference(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma,
                              const float* beta, const float* mean, const float* invstd, float* y) {
  auto z = [&](int64_t c, float v) { return (v - static_cast<double>(mean[c])) * invstd[c] * gamma[c] + beta[c]; };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t i = 0; i < HW; ++i) {
        const float* xa = x + (n * 2 * half + j) * HW + i;
        const double a = z(j, *xa), b = z(half + j, xa[half * HW]);
        y[(n * half + j) * HW + i] = static_cast<float>(a / (1.0 + std::exp(-b)));
      }
}

void bn_glu_backward_reference(int64_t N, int64_t half, int64_t HW, const float* dy, const float* x,
                               const float* gamma, const float* beta, const float* mean, const float* invstd,
                               float* dz) {
  auto z = [&](int64_t c, float v) { return (v - static_cast<double>(mean[c])) * invstd[c] * gamma[c] + beta[c]; };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t ia = (n * 2 * half + j) * HW + i, ib = ia + half * HW;
        const double a = z(j, x[ia]), s = 1.0 / (1.0 + std::exp(-z(half + j, x[ib])));
        const double g = dy[(n * half + j) * HW + i];
        dz[ia] = static_cast<float>(g * s);
        dz[ib] = static_cast<float>(g * a * s * (1.0 - s));
      }
}

}  // namespace c3::cpu
