// AVX2 + FMA reductions and runs of the batch-norm kernels (the table in batchnorm_kernels.h): four 8-lane
// accumulators per sum, kept across the rows of a chunk, and scalar tails; 1/sqrt four doubles at
// a time (vsqrtpd and vdivpd round as their scalar forms do). Compiled with a target attribute,
// not a -m flag, so one binary runs everywhere; batchnorm.cc uses them only after
// __builtin_cpu_supports says yes.
#include <cmath>
#include <cstdint>
#include <utility>

#include "batchnorm_kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define C3_BATCHNORM_AVX2 1
#endif

namespace c3::cpu {

#ifdef C3_BATCHNORM_AVX2
namespace {

#define C3_AVX2 __attribute__((target("avx2,fma")))

C3_AVX2 inline float total(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 s = _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

C3_AVX2 float sum(const float* x, int64_t rows, int64_t len, int64_t ld) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  float t = 0.0f;
  for (int64_t r = 0; r < rows; ++r, x += ld) {
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
      a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
      a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i + 8 <= len; i += 8) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
      std::swap(a0, a1);  // rows of 16 alternate accumulators instead of chaining one
    }
    for (; i < len; ++i) t += x[i];
  }
  return total(a0, a1, a2, a3) + t;
}

C3_AVX2 void shifted_sums(const float* x, int64_t rows, int64_t len, int64_t ld, float a, float* s1, float* s2) {
  const __m256 av = _mm256_set1_ps(a);
  __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
  float t1 = 0.0f, t2 = 0.0f;
  for (int64_t r = 0; r < rows; ++r, x += ld) {
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), av), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), av);
      const __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 16), av);
      const __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 24), av);
      p0 = _mm256_add_ps(p0, d0), q0 = _mm256_fmadd_ps(d0, d0, q0);
      p1 = _mm256_add_ps(p1, d1), q1 = _mm256_fmadd_ps(d1, d1, q1);
      p2 = _mm256_add_ps(p2, d2), q2 = _mm256_fmadd_ps(d2, d2, q2);
      p3 = _mm256_add_ps(p3, d3), q3 = _mm256_fmadd_ps(d3, d3, q3);
    }
    for (; i + 8 <= len; i += 8) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), av);
      p0 = _mm256_add_ps(p0, d), q0 = _mm256_fmadd_ps(d, d, q0);
      std::swap(p0, p1), std::swap(q0, q1);
    }
    for (; i < len; ++i) {
      const float d = x[i] - a;
      t1 += d, t2 += d * d;
    }
  }
  *s1 = total(p0, p1, p2, p3) + t1;
  *s2 = total(q0, q1, q2, q3) + t2;
}

C3_AVX2 void grad_sums(const float* dy, const float* x, int64_t rows, int64_t len, int64_t ld, float m, float* s1,
                       float* s2) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
  float t1 = 0.0f, t2 = 0.0f;
  for (int64_t r = 0; r < rows; ++r, x += ld, dy += ld) {
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      const __m256 g0 = _mm256_loadu_ps(dy + i), g1 = _mm256_loadu_ps(dy + i + 8);
      const __m256 g2 = _mm256_loadu_ps(dy + i + 16), g3 = _mm256_loadu_ps(dy + i + 24);
      p0 = _mm256_add_ps(p0, g0), q0 = _mm256_fmadd_ps(g0, _mm256_sub_ps(_mm256_loadu_ps(x + i), mv), q0);
      p1 = _mm256_add_ps(p1, g1), q1 = _mm256_fmadd_ps(g1, _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv), q1);
      p2 = _mm256_add_ps(p2, g2), q2 = _mm256_fmadd_ps(g2, _mm256_sub_ps(_mm256_loadu_ps(x + i + 16), mv), q2);
      p3 = _mm256_add_ps(p3, g3), q3 = _mm256_fmadd_ps(g3, _mm256_sub_ps(_mm256_loadu_ps(x + i + 24), mv), q3);
    }
    for (; i + 8 <= len; i += 8) {
      const __m256 g = _mm256_loadu_ps(dy + i);
      p0 = _mm256_add_ps(p0, g), q0 = _mm256_fmadd_ps(g, _mm256_sub_ps(_mm256_loadu_ps(x + i), mv), q0);
      std::swap(p0, p1), std::swap(q0, q1);
    }
    for (; i < len; ++i) t1 += dy[i], t2 += dy[i] * (x[i] - m);
  }
  *s1 = total(p0, p1, p2, p3) + t1;
  *s2 = total(q0, q1, q2, q3) + t2;
}

C3_AVX2 void invstd(int64_t n, const double* var, double eps, double* out) {
  const __m256d one = _mm256_set1_pd(1.0), e = _mm256_set1_pd(eps);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    _mm256_storeu_pd(out + i, _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_add_pd(_mm256_loadu_pd(var + i), e))));
  for (; i < n; ++i) out[i] = 1.0 / std::sqrt(var[i] + eps);
}

// Runs at least this long (floats) are written with streaming stores: 64 KiB and more, as in the
// long rows of a 128 px layer, whose outputs leave the caches anyway.
constexpr int64_t kStreamRun = 16384;

// x * a + b rounded twice, as the plain loop and the eval reference compute it (eval outputs are
// bit-identical to the reference): a multiply and an add, never one FMA, so compiled for AVX2
// without FMA (GCC would contract the pair otherwise)
#define C3_AVX2_NO_FMA __attribute__((target("avx2")))
C3_AVX2_NO_FMA inline __m256 affine8(const float* x, __m256 a, __m256 b) {
  return _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x), a), b);
}

C3_AVX2_NO_FMA void affine(const float* x, int64_t n, float a, float b, float* y) {
  const __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
  int64_t i = 0;
  if (n >= kStreamRun) {
    for (; i < n && (reinterpret_cast<uintptr_t>(y + i) & 31); ++i) y[i] = x[i] * a + b;
    for (; i + 16 <= n; i += 16) {
      _mm256_stream_ps(y + i, affine8(x + i, av, bv));
      _mm256_stream_ps(y + i + 8, affine8(x + i + 8, av, bv));
    }
    _mm_sfence();
  }
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(y + i, affine8(x + i, av, bv));
    _mm256_storeu_ps(y + i + 8, affine8(x + i + 8, av, bv));
  }
  for (; i < n; ++i) y[i] = x[i] * a + b;
}

C3_AVX2 void dx(const float* dy, const float* x, int64_t n, float a, float b, float m, float k, float* out) {
  const __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b), mv = _mm256_set1_ps(m), kv = _mm256_set1_ps(k);
  int64_t i = 0;
  if (n >= kStreamRun) {  // long runs: streaming stores, no read of dx's old lines
    for (; i < n && (reinterpret_cast<uintptr_t>(out + i) & 31); ++i) out[i] = std::fma(a, dy[i], std::fma(b, x[i] - m, k));
    for (; i + 16 <= n; i += 16) {
      const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv);
      _mm256_stream_ps(out + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(dy + i), _mm256_fmadd_ps(bv, d0, kv)));
      _mm256_stream_ps(out + i + 8, _mm256_fmadd_ps(av, _mm256_loadu_ps(dy + i + 8), _mm256_fmadd_ps(bv, d1, kv)));
    }
    _mm_sfence();
  }
  for (; i + 16 <= n; i += 16) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv);
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(dy + i), _mm256_fmadd_ps(bv, d0, kv)));
    _mm256_storeu_ps(out + i + 8, _mm256_fmadd_ps(av, _mm256_loadu_ps(dy + i + 8), _mm256_fmadd_ps(bv, d1, kv)));
  }
  for (; i < n; ++i) out[i] = std::fma(a, dy[i], std::fma(b, x[i] - m, k));
}

bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const BatchnormKernels kAvx2 = {"avx2-fma", sum, shifted_sums, grad_sums, invstd, affine, dx};

}  // namespace

const BatchnormKernels* avx2_batchnorm_kernels() {
  static const bool ok = cpu_has_avx2_fma();
  return ok ? &kAvx2 : nullptr;
}

#else

const BatchnormKernels* avx2_batchnorm_kernels() { return nullptr; }

#endif

}  // namespace c3::cpu
