// Row-wise CPU kernels over (N, D): L2 normalisation, softmax / log-softmax, cross-entropy.
// Rows are independent, so tasks own whole rows; reductions along a row run in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {
namespace {

// rows per task so that a task touches about this many elements
int64_t row_grain(int64_t D) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)); }

template <class F>
void for_rows(int64_t N, int64_t D, F f) {
  if (N <= 0) return;
  parallel_for(N, row_grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) f(r);
  });
}

float row_max(const float* x, int64_t D) {
  float m = -INFINITY;
  for (int64_t j = 0; j < D; ++j) m = std::max(m, x[j]);
  return m;
}

// sum_j exp(x_j - m)
double row_sum_exp(const float* x, int64_t D, float m) {
  double s = 0;
  for (int64_t j = 0; j < D; ++j) s += std::exp(static_cast<double>(x[j] - m));
  return s;
}

}  // namespace

// F.normalize(x, p=2, dim=1, eps): y = x / max(||x||, eps); norms are the unclamped ||x||.
void l2norm_forward(int64_t N, int64_t D, const float* x, float eps, float* y, float* norms) {
  for_rows(N, D, [&](int64_t r) {
    const float* xr = x + r * D;
    double ss = 0;
    for (int64_t j = 0; j < D; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const double norm = std::sqrt(ss);
    const double inv = 1.0 / std::max(norm, static_cast<double>(eps));
    float* yr = y + r * D;
    for (int64_t j = 0; j < D; ++j) yr[j] = static_cast<float>(xr[j] * inv);
    norms[r] = static_cast<float>(norm);
  });
}

// norm > eps: dx = (dy - y (y . dy)) / norm with y = x / norm; otherwise the divisor is the
// constant eps and dx = dy / eps.
void l2norm_backward(int64_t N, int64_t D, const float* dy, const float* x, const float* norms, float eps,
                     float* dx) {
  for_rows(N, D, [&](int64_t r) {
    const float* xr = x + r * D;
    const float* gr = dy + r * D;
    float* dr = dx + r * D;
    const double norm = norms[r];
    if (norm > eps) {
      double dot = 0;
      for (int64_t j = 0; j < D; ++j) dot += static_cast<double>(xr[j]) * gr[j];
      const double inv = 1.0 / norm, k = dot * inv * inv * inv;
      for (int64_t j = 0; j < D; ++j) dr[j] = static_cast<float>(gr[j] * inv - xr[j] * k);
    } else {
      const double inv = 1.0 / eps;
      for (int64_t j = 0; j < D; ++j) dr[j] = static_cast<float>(gr[j] * inv);
    }
  });
}

void softmax_forward(int64_t N, int64_t D, const float* x, bool log, float* y) {
  for_rows(N, D, [&](int64_t r) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    const float m = row_max(xr, D);
    const double s = row_sum_exp(xr, D, m);
    if (log) {
      const double ls = std::log(s);
      for (int64_t j = 0; j < D; ++j) yr[j] = static_cast<float>((xr[j] - m) - ls);
    } else {
      const double inv = 1.0 / s;
      for (int64_t j = 0; j < D; ++j) yr[j] = static_cast<float>(std::exp(static_cast<double>(xr[j] - m)) * inv);
    }
  });
}

// softmax: dx = y (dy - sum(dy y)); log-softmax: dx = dy - exp(y) sum(dy)
void softmax_backward(int64_t N, int64_t D, const float* dy, const float* y, bool log, float* dx) {
  for_rows(N, D, [&](int64_t r) {
    const float* gr = dy + r * D;
    const float* yr = y + r * D;
    float* dr = dx + r * D;
    double s = 0;
    if (log) {
      for (int64_t j = 0; j < D; ++j) s += gr[j];
      for (int64_t j = 0; j < D; ++j) dr[j] = static_cast<float>(gr[j] - std::exp(static_cast<double>(yr[j])) * s);
    } else {
      for (int64_t j = 0; j < D; ++j) s += static_cast<double>(gr[j]) * yr[j];
      for (int64_t j = 0; j < D; ++j) dr[j] = static_cast<float>(yr[j] * (gr[j] - s));
    }
  });
}

// loss = mean_r (logsumexp(x_r) - x_r[t_r]); per-row terms are summed in row order so the result
// does not depend on the thread count.
void cross_entropy_forward(int64_t N, int64_t D, const float* logits, const int32_t* targets, float* loss,
                           float* probs) {
  std::vector<double> row_loss(static_cast<size_t>(std::max<int64_t>(N, 0)));
  for_rows(N, D, [&](int64_t r) {
    const float* xr = logits + r * D;
    float* pr = probs + r * D;
    const float m = row_max(xr, D);
    const double s = row_sum_exp(xr, D, m);
    const double inv = 1.0 / s;
    for (int64_t j = 0; j < D; ++j) pr[j] = static_cast<float>(std::exp(static_cast<double>(xr[j] - m)) * inv);
    row_loss[r] = std::log(s) - static_cast<double>(xr[targets[r]] - m);
  });
  double total = 0;
  for (double v : row_loss) total += v;
  loss[0] = static_cast<float>(total / static_cast<double>(N));
}

// dlogits = (probs - onehot(target)) * dloss / N
void cross_entropy_backward(int64_t N, int64_t D, const float* probs, const int32_t* targets, const float* dloss,
                            float* dlogits) {
  const float g = dloss[0] / static_cast<float>(N);
  for_rows(N, D, [&](int64_t r) {
    const float* pr = probs + r * D;
    float* dr = dlogits + r * D;
    for (int64_t j = 0; j < D; ++j) dr[j] = pr[j] * g;
    dr[targets[r]] = (pr[targets[r]] - 1.0f) * g;
  });
}

}  // namespace c3::cpu
