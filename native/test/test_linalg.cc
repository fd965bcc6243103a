// core/linalg.cc's orthonormal_columns (torch.nn.init.orthogonal_'s QR) against plain modified
// Gram-Schmidt, one column at a time: the same Q to rounding, orthonormal to working precision
// (also where the columns are nearly dependent), a positive diagonal in R = Q^T A, and the same
// bits on any thread count.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.h"
#include "../core/linalg.h"
#include "../core/threadpool.h"
#include "harness.h"

namespace {

using c3::test::expect_true;
using Vd = std::vector<double>;

// Q of the thin QR of the row-major m x n matrix a by modified Gram-Schmidt, column by column
Vd reference_q(const Vd& a, int64_t m, int64_t n) {
  Vd q = a;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t k = 0; k < j; ++k) {
      double s = 0;
      for (int64_t i = 0; i < m; ++i) s += q[i * n + k] * q[i * n + j];
      for (int64_t i = 0; i < m; ++i) q[i * n + j] -= s * q[i * n + k];
    }
    double norm = 0;
    for (int64_t i = 0; i < m; ++i) norm += q[i * n + j] * q[i * n + j];
    norm = std::sqrt(norm);
    for (int64_t i = 0; i < m; ++i) q[i * n + j] /= norm;
  }
  return q;
}

Vd random_matrix(int64_t m, int64_t n, uint64_t seed) {
  const std::vector<float> v = c3::test::random_vec(static_cast<size_t>(m * n), seed);
  return Vd(v.begin(), v.end());
}

// max |Q^T Q - I| and the smallest diagonal entry and largest below-diagonal entry of Q^T A
void check_factor(const Vd& q, const Vd& a, int64_t m, int64_t n, const std::string& what) {
  double ortho = 0, min_diag = 1e300, below = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double qq = 0, qa = 0;
      for (int64_t k = 0; k < m; ++k) qq += q[k * n + i] * q[k * n + j], qa += q[k * n + i] * a[k * n + j];
      ortho = std::max(ortho, std::fabs(qq - (i == j ? 1.0 : 0.0)));
      if (i == j) min_diag = std::min(min_diag, qa);
      if (j < i) below = std::max(below, std::fabs(qa));
    }
  expect_true(ortho < 1e-13, what + ": |Q^T Q - I| = " + std::to_string(ortho));
  expect_true(min_diag > 0, what + ": R has a diagonal entry " + std::to_string(min_diag) + " (must be positive)");
  expect_true(below < 1e-12, what + ": R has " + std::to_string(below) + " below its diagonal");
}

}  // namespace

C3_TEST(linalg_orthonormal_columns_match_gram_schmidt) {
  (void)be;
  // one column, one panel, a panel and one, square, several panels with a remainder
  const int64_t shapes[][2] = {{1, 1}, {5, 3}, {40, 32}, {40, 33}, {100, 100}, {300, 70}, {700, 130}};
  uint64_t seed = 91000;
  for (const auto& s : shapes) {
    const int64_t m = s[0], n = s[1];
    const std::string what = "orthonormal_columns " + std::to_string(m) + " x " + std::to_string(n);
    const Vd a = random_matrix(m, n, ++seed);
    Vd q = a;
    c3::orthonormal_columns(q.data(), m, n);
    const Vd want = reference_q(a, m, n);
    double diff = 0;
    for (size_t i = 0; i < q.size(); ++i) diff = std::max(diff, std::fabs(q[i] - want[i]));
    expect_true(diff < 1e-10, what + ": differs from Gram-Schmidt by " + std::to_string(diff));
    check_factor(q, a, m, n, what);
  }
  // nearly dependent columns (condition number ~1e7): the second projection keeps Q orthonormal
  const int64_t m = 200, n = 90;
  Vd a = random_matrix(m, n, 91100);
  const Vd noise = random_matrix(m, n, 91101);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 1; j < n; ++j) a[i * n + j] = a[i * n] + 1e-7 * noise[i * n + j];
  Vd q = a;
  c3::orthonormal_columns(q.data(), m, n);
  check_factor(q, a, m, n, "orthonormal_columns of nearly dependent columns");
}

// orthonormal_vectors on vectors laid out contiguously is orthonormal_columns on the matrix they
// are the columns of, bit for bit (the rows of torch's wide weights, without transposing them)
C3_TEST(linalg_orthonormal_vectors_are_the_columns_case) {
  (void)be;
  const int64_t m = 333, n = 45;
  const Vd a = random_matrix(m, n, 93000);
  Vd cols = a;
  c3::orthonormal_columns(cols.data(), m, n);
  Vd vecs(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) vecs[static_cast<size_t>(j * m + i)] = a[i * n + j];
  c3::orthonormal_vectors(vecs.data(), n, m);
  bool same = true;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) same = same && vecs[static_cast<size_t>(j * m + i)] == cols[i * n + j];
  expect_true(same, "orthonormal_vectors gives orthonormal_columns' bits");
  bool refused = false;
  try {
    c3::orthonormal_vectors(vecs.data(), m, n);  // more vectors than their length
  } catch (const c3::Error& e) {
    refused = std::string(e.what()).find("needs len >= count") != std::string::npos;
  }
  expect_true(refused, "more vectors than dimensions is refused");
}

C3_TEST(linalg_orthonormal_columns_same_bits_on_any_thread_count) {
  (void)be;
  const int64_t m = 1500, n = 100;
  const Vd a = random_matrix(m, n, 92000);
  const int threads = c3::num_threads();
  std::vector<Vd> got;
  for (int t : {1, 3, 7}) {
    c3::set_num_threads(t);
    Vd q = a;
    c3::orthonormal_columns(q.data(), m, n);
    got.push_back(q);
  }
  c3::set_num_threads(threads);
  expect_true(got[0] == got[1] && got[0] == got[2], "orthonormal_columns gives the same bits on 1, 3 and 7 threads");
}
