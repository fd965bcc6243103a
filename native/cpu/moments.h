// Per-channel statistics from parts: count, mean and sum of squared deviations, merged in double
// with Chan, Golub and LeVeque's update in a fixed order, so the result does not depend on how
// the parts were spread over threads. Batch norm's chunks (batchnorm.cc) and the Winograd
// outputs' moments (backend.h conv2d_forward's moments, winograd_core.h) merge this way.
#pragma once
#include <cstdint>

namespace c3::cpu {

struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void add(const Moments& b) {
    if (b.n == 0) return;
    const double nab = n + b.n, delta = b.mean - mean;
    mean += delta * (b.n / nab);
    m2 += b.m2 + delta * delta * (n * b.n / nab);
    n = nab;
  }
};

// moments (C, 2): per channel c the mean and the biased variance of parts[(g * C + c) * per + i]
// merged over g < groups, then i < per
inline void merge_moments(const Moments* parts, int64_t groups, int64_t C, int64_t per, float* moments) {
  for (int64_t c = 0; c < C; ++c) {
    Moments m;
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t i = 0; i < per; ++i) m.add(parts[(g * C + c) * per + i]);
    moments[2 * c] = static_cast<float>(m.mean);
    moments[2 * c + 1] = static_cast<float>(m.n > 0 ? m.m2 / m.n : 0.0);
  }
}

}  // namespace c3::cpu
