// NT-Xent (SimCLR / the official C3-GAN form) over (2N, D): rows i and i+N are a positive pair.
// z = normalize(x), sim = z z^T / T without the diagonal; each row's logits are its positive and
// its 2N-2 negatives, and the loss is the mean over rows of cross-entropy with the positive as the
// target. Softmax over the 2N-1 off-diagonal entries of a row is the same thing with the positive
// at its own column, which is what save_p holds (diagonal 0).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {
namespace {

constexpr float kNormEps = 1e-12f;  // F.normalize's default

// double dot product with four partial sums
double dot(const float* a, const float* b, int64_t D) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t j = 0;
  for (; j + 4 <= D; j += 4) {
    s0 += static_cast<double>(a[j]) * b[j];
    s1 += static_cast<double>(a[j + 1]) * b[j + 1];
    s2 += static_cast<double>(a[j + 2]) * b[j + 2];
    s3 += static_cast<double>(a[j + 3]) * b[j + 3];
  }
  for (; j < D; ++j) s0 += static_cast<double>(a[j]) * b[j];
  return (s0 + s1) + (s2 + s3);
}

int64_t grain_rows(int64_t N2, int64_t D) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(N2 * D, 1)); }

}  // namespace

void ntxent_forward(int64_t N2, int64_t D, const float* x, float temperature, float* loss, float* save_z,
                    float* save_norms, float* save_p) {
  const int64_t half = N2 / 2;
  l2norm_forward(N2, D, x, kNormEps, save_z, save_norms);
  std::vector<double> row_loss(static_cast<size_t>(N2));
  const double inv_t = 1.0 / temperature;
  parallel_for(N2, grain_rows(N2, D), [&](int64_t r0, int64_t r1) {
    std::vector<double> s(static_cast<size_t>(N2));
    for (int64_t r = r0; r < r1; ++r) {
      const float* zr = save_z + r * D;
      double m = -INFINITY;
      for (int64_t c = 0; c < N2; ++c) {
        if (c == r) continue;
        s[c] = dot(zr, save_z + c * D, D) * inv_t;
        m = std::max(m, s[c]);
      }
      double sum = 0;
      for (int64_t c = 0; c < N2; ++c)
        if (c != r) sum += std::exp(s[c] - m);
      const double lse = m + std::log(sum);
      float* pr = save_p + r * N2;
      for (int64_t c = 0; c < N2; ++c) pr[c] = c == r ? 0.0f : static_cast<float>(std::exp(s[c] - lse));
      row_loss[r] = lse - s[(r + half) % N2];
    }
  });
  double total = 0;
  for (double v : row_loss) total += v;
  loss[0] = static_cast<float>(total / static_cast<double>(N2));
}

// G[r][c] = (p[r][c] - [c == pos(r)]) * dloss / 2N is dL/dsim off the diagonal (0 on it);
// dL/dz = (G + G^T) z / T, then back through the normalisation as l2norm_backward.
void ntxent_backward(int64_t N2, int64_t D, const float* dloss, const float* x, const float* save_z,
                     const float* save_norms, const float* save_p, float temperature, float* dx) {
  const int64_t half = N2 / 2;
  const double g = static_cast<double>(dloss[0]) / static_cast<double>(N2) / temperature;
  parallel_for(N2, grain_rows(N2, D), [&](int64_t k0, int64_t k1) {
    std::vector<double> dz(static_cast<size_t>(D));
    for (int64_t k = k0; k < k1; ++k) {
      std::fill(dz.begin(), dz.end(), 0.0);
      const int64_t pos = (k + half) % N2;
      for (int64_t c = 0; c < N2; ++c) {
        if (c == k) continue;
        // G[k][c] + G[c][k]; pos(c) == k exactly when c == pos(k)
        double coef = static_cast<double>(save_p[k * N2 + c]) + save_p[c * N2 + k] - (c == pos ? 2.0 : 0.0);
        coef *= g;
        const float* zc = save_z + c * D;
        for (int64_t j = 0; j < D; ++j) dz[j] += coef * zc[j];
      }
      const float* zk = save_z + k * D;
      float* dk = dx + k * D;
      const double norm = save_norms[k];
      if (norm > kNormEps) {
        double zdz = 0;
        for (int64_t j = 0; j < D; ++j) zdz += zk[j] * dz[j];
        for (int64_t j = 0; j < D; ++j) dk[j] = static_cast<float>((dz[j] - zk[j] * zdz) / norm);
      } else {
        for (int64_t j = 0; j < D; ++j) dk[j] = static_cast<float>(dz[j] / kNormEps);
      }
    }
  });
}

}  // namespace c3::cpu
