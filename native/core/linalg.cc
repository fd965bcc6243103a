#include "linalg.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "error.h"
#include "threadpool.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define C3_LINALG_AVX2 1
#define C3_LINALG_INLINE inline __attribute__((always_inline))
#else
#define C3_LINALG_INLINE inline
#endif

namespace c3 {

namespace {

// Columns are orthonormalised a panel at a time: each panel is projected off all the columns
// before it, a second time where the first removed most of a column ("twice is enough": the
// second pass removes what rounding left of the first, so the result is orthonormal to working
// precision even for ill-conditioned inputs), then its own columns by Gram-Schmidt. The
// projections read the earlier columns once per panel where plain modified Gram-Schmidt read
// them once per column, and run as AVX2 loops where the CPU has them.
constexpr int64_t kPanel = 32;      // columns per panel
constexpr int64_t kRowBlock = 512;  // rows per block of the dot products: q's and 4 columns' blocks stay in L1
constexpr int64_t kUpdateRows = 64;  // rows per block of the update: the whole panel's block stays in L1
constexpr int kLanes = 8;           // independent partial sums per dot product

// sum over i in [i0, i1) of q[i] * p[c][i] for C columns p[c], added to out[c]. The partial sums
// run in kLanes explicit lanes, so the compiler can vectorise them without reassociating anything
// (a single running sum is a chain of dependent adds); the order is fixed, whatever the threads.
template <int C>
C3_LINALG_INLINE void dots(const double* q, const double* const* p, int64_t i0, int64_t i1, double* out) {
  double acc[C][kLanes] = {};
  int64_t i = i0;
  for (; i + kLanes <= i1; i += kLanes)
    for (int c = 0; c < C; ++c)
      for (int l = 0; l < kLanes; ++l) acc[c][l] += q[i + l] * p[c][i + l];
  for (int c = 0; c < C; ++c) {
    const double* a = acc[c];
    double s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (int64_t t = i; t < i1; ++t) s += q[t] * p[c][t];
    out[c] += s;
  }
}

// r[k][j] += the part over rows [i0, i1) of q_k . p_j for the earlier columns k in [k0, k1);
// Dots4 computes four columns' dot products with one q (dots<4>, or its AVX2 form)
template <void (*Dots4)(const double*, const double* const*, int64_t, int64_t, double*)>
C3_LINALG_INLINE void panel_dots_body(const double* c, int64_t m, int64_t j0, int64_t jb, int64_t k0, int64_t k1,
                                      double* r) {
  for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
    const int64_t i1 = std::min(m, i0 + kRowBlock);
    for (int64_t k = k0; k < k1; ++k) {
      const double* q = c + k * m;
      double* rk = r + k * jb;
      int64_t j = 0;
      for (; j + 4 <= jb; j += 4) {
        const double* p[4] = {c + (j0 + j) * m, c + (j0 + j + 1) * m, c + (j0 + j + 2) * m, c + (j0 + j + 3) * m};
        Dots4(q, p, i0, i1, rk + j);
      }
      for (; j < jb; ++j) {
        const double* p = c + (j0 + j) * m;
        dots<1>(q, &p, i0, i1, rk + j);
      }
    }
  }
}

// p_j -= sum over earlier k of r[k][j] q_k, on the rows of blocks [b0, b1)
C3_LINALG_INLINE void panel_update_body(double* c, int64_t m, int64_t j0, int64_t jb, int64_t b0, int64_t b1,
                                        const double* r) {
  for (int64_t blk = b0; blk < b1; ++blk) {
    const int64_t i0 = blk * kUpdateRows, i1 = std::min(m, i0 + kUpdateRows);
    for (int64_t k = 0; k < j0; ++k) {
      const double* q = c + k * m;
      for (int64_t j = 0; j < jb; ++j) {
        const double rk = r[k * jb + j];
        double* p = c + (j0 + j) * m;
        for (int64_t i = i0; i < i1; ++i) p[i] -= rk * q[i];
      }
    }
  }
}

void panel_dots_base(const double* c, int64_t m, int64_t j0, int64_t jb, int64_t k0, int64_t k1, double* r) {
  panel_dots_body<dots<4>>(c, m, j0, jb, k0, k1, r);
}
void panel_update_base(double* c, int64_t m, int64_t j0, int64_t jb, int64_t b0, int64_t b1, const double* r) {
  panel_update_body(c, m, j0, jb, b0, b1, r);
}

#ifdef C3_LINALG_AVX2
// dots<4> with AVX2 intrinsics: the same 8 lanes per column (two vectors of 4), summed in the
// same order, each lane a fused multiply-add (compilers left to themselves shuffled the lanes)
__attribute__((target("avx2,fma"))) void dots4_avx2(const double* q, const double* const* p, int64_t i0, int64_t i1,
                                                    double* out) {
  __m256d lo[4], hi[4];
  for (int c = 0; c < 4; ++c) lo[c] = hi[c] = _mm256_setzero_pd();
  int64_t i = i0;
  for (; i + kLanes <= i1; i += kLanes) {
    const __m256d q0 = _mm256_loadu_pd(q + i), q1 = _mm256_loadu_pd(q + i + 4);
    for (int c = 0; c < 4; ++c) {
      lo[c] = _mm256_fmadd_pd(q0, _mm256_loadu_pd(p[c] + i), lo[c]);
      hi[c] = _mm256_fmadd_pd(q1, _mm256_loadu_pd(p[c] + i + 4), hi[c]);
    }
  }
  for (int c = 0; c < 4; ++c) {
    double a[kLanes];
    _mm256_storeu_pd(a, lo[c]);
    _mm256_storeu_pd(a + 4, hi[c]);
    double s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (int64_t t = i; t < i1; ++t) s += q[t] * p[c][t];
    out[c] += s;
  }
}

// the loops compiled for AVX2 (4 doubles a vector), used after __builtin_cpu_supports says so
__attribute__((target("avx2,fma"))) void panel_dots_avx2(const double* c, int64_t m, int64_t j0, int64_t jb,
                                                         int64_t k0, int64_t k1, double* r) {
  panel_dots_body<dots4_avx2>(c, m, j0, jb, k0, k1, r);
}
__attribute__((target("avx2,fma"))) void panel_update_avx2(double* c, int64_t m, int64_t j0, int64_t jb, int64_t b0,
                                                           int64_t b1, const double* r) {
  panel_update_body(c, m, j0, jb, b0, b1, r);
}

bool have_avx2() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}
#endif

double dot(const double* x, const double* y, int64_t n) {
  double s = 0;
  dots<1>(x, &y, 0, n, &s);
  return s;
}

// P -= Q (Q^T P) for the panel P = columns [j0, j0 + jb) and Q = columns [0, j0) of the
// column-major m-row matrix c. r: scratch for Q^T P (j0 x jb).
void project_off_earlier(double* c, int64_t m, int64_t j0, int64_t jb, std::vector<double>& r) {
  auto dots_fn = panel_dots_base;
  auto update_fn = panel_update_base;
#ifdef C3_LINALG_AVX2
  if (have_avx2()) dots_fn = panel_dots_avx2, update_fn = panel_update_avx2;
#endif
  r.assign(static_cast<size_t>(j0 * jb), 0.0);
  double* rd = r.data();
  // r = Q^T P: each task its own earlier columns, over the rows block by block
  parallel_for(j0, std::max<int64_t>(1, 65536 / (m * jb)),
               [&](int64_t k0, int64_t k1) { dots_fn(c, m, j0, jb, k0, k1, rd); });
  // P -= Q r: each task its own rows
  parallel_for((m + kUpdateRows - 1) / kUpdateRows, 1,
               [&](int64_t b0, int64_t b1) { update_fn(c, m, j0, jb, b0, b1, rd); });
}

// Gram-Schmidt within the panel: each column projected off the panel's earlier ones twice,
// then normalised (a zero column stays zero)
void orthonormalise_panel(double* c, int64_t m, int64_t j0, int64_t jb) {
  for (int64_t j = j0; j < j0 + jb; ++j) {
    double* p = c + j * m;
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t k = j0; k < j; ++k) {
        const double* q = c + k * m;
        const double s = dot(q, p, m);
        for (int64_t i = 0; i < m; ++i) p[i] -= s * q[i];
      }
    }
    const double norm = std::sqrt(dot(p, p, m));
    const double inv = norm > 0 ? 1.0 / norm : 0.0;
    for (int64_t i = 0; i < m; ++i) p[i] *= inv;
  }
}

}  // namespace

void orthonormal_vectors(double* v, int64_t count, int64_t len) {
  check(len >= 1 && count >= 1 && len >= count, "orthonormal_vectors", "needs len >= count >= 1, got ", count,
        " vectors of ", len);
  const int64_t m = len, n = count;
  double* c = v;  // vector j at c + j * m: the columns of the m x n matrix being factored
  std::vector<double> r;
  std::vector<double> before(static_cast<size_t>(kPanel));
  for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
    const int64_t jb = std::min(kPanel, n - j0);
    double* panel = c + j0 * m;
    if (j0 > 0) {
      for (int64_t j = 0; j < jb; ++j) before[j] = dot(panel + j * m, panel + j * m, m);
      project_off_earlier(c, m, j0, jb, r);
      // a second projection where the first removed most of a column (its squared norm fell
      // below half): there rounding left a part along the earlier columns that is no longer
      // small next to what remains (Daniel, Gragg, Kaufman and Stewart's criterion)
      bool again = false;
      for (int64_t j = 0; j < jb && !again; ++j) again = dot(panel + j * m, panel + j * m, m) < 0.5 * before[j];
      if (again) project_off_earlier(c, m, j0, jb, r);
    }
    orthonormalise_panel(c, m, j0, jb);
  }
}

void orthonormal_columns(double* a, int64_t m, int64_t n) {
  check(m >= 1 && n >= 1 && m >= n, "orthonormal_columns", "needs m >= n >= 1, got ", m, " x ", n);
  // the columns as contiguous vectors, and back, through 32 x 32 tiles (cache-friendly both ways)
  std::vector<double> c(static_cast<size_t>(m * n));
  constexpr int64_t T = 32;
  for (int64_t i0 = 0; i0 < m; i0 += T)
    for (int64_t j0 = 0; j0 < n; j0 += T)
      for (int64_t i = i0; i < std::min(m, i0 + T); ++i)
        for (int64_t j = j0; j < std::min(n, j0 + T); ++j) c[static_cast<size_t>(j * m + i)] = a[i * n + j];
  orthonormal_vectors(c.data(), n, m);
  for (int64_t i0 = 0; i0 < m; i0 += T)
    for (int64_t j0 = 0; j0 < n; j0 += T)
      for (int64_t i = i0; i < std::min(m, i0 + T); ++i)
        for (int64_t j = j0; j < std::min(n, j0 + T); ++j) a[i * n + j] = c[static_cast<size_t>(j * m + i)];
}

}  // namespace c3
