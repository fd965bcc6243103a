#include "linalg.h"

#include <cmath>
#include <vector>

#include "error.h"
#include "threadpool.h"

namespace c3 {

void orthonormal_columns(double* a, int64_t m, int64_t n) {
  check(m >= 1 && n >= 1 && m >= n, "orthonormal_columns", "needs m >= n >= 1, got ", m, " x ", n);
  // columns contiguous, so every dot product and update streams through memory
  std::vector<double> c(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[j * m + i] = a[i * n + j];
  for (int64_t i = 0; i < n; ++i) {
    double* ci = &c[i * m];
    double norm = 0;
    for (int64_t k = 0; k < m; ++k) norm += ci[k] * ci[k];
    norm = std::sqrt(norm);
    const double inv = norm > 0 ? 1.0 / norm : 0.0;
    for (int64_t k = 0; k < m; ++k) ci[k] *= inv;
    parallel_for(n - i - 1, std::max<int64_t>(1, 65536 / m), [&](int64_t b, int64_t e) {
      for (int64_t j = i + 1 + b; j < i + 1 + e; ++j) {
        double* cj = &c[j * m];
        double r = 0;
        for (int64_t k = 0; k < m; ++k) r += ci[k] * cj[k];
        for (int64_t k = 0; k < m; ++k) cj[k] -= r * ci[k];
      }
    });
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) a[i * n + j] = c[j * m + i];
}

}  // namespace c3
