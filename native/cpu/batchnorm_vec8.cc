// Vector reductions and runs of the batch-norm kernels (the table in batchnorm_kernels.h): four
// eight-lane accumulators per sum, kept across the rows of a chunk, and scalar tails, written once
// on vec8.h, so x86 (AVX2 + FMA, after __builtin_cpu_supports says yes) and AArch64 (Advanced
// SIMD) sum in the same order to the same bits. x86 also has 1/sqrt four doubles at a time
// (vsqrtpd and vdivpd round as their scalar forms do) and an FMA-free affine pass; AArch64's table
// takes the plain loops for those two.
#include <cmath>
#include <cstdint>
#include <utility>

#include "batchnorm_kernels.h"
#include "vec8.h"

namespace c3::cpu {

#ifdef C3_VEC8
namespace {

using namespace vec8;

C3_VEC8_INLINE float total(V8 a, V8 b, V8 c, V8 d) { return hsum(add(add(a, b), add(c, d))); }

C3_VEC8_TARGET float sum(const float* x, int64_t rows, int64_t len, int64_t ld) {
  V8 a0 = zero(), a1 = a0, a2 = a0, a3 = a0;
  float t = 0.0f;
  for (int64_t r = 0; r < rows; ++r, x += ld) {
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      a0 = add(a0, load(x + i));
      a1 = add(a1, load(x + i + 8));
      a2 = add(a2, load(x + i + 16));
      a3 = add(a3, load(x + i + 24));
    }
    for (; i + 8 <= len; i += 8) {
      a0 = add(a0, load(x + i));
      std::swap(a0, a1);  // rows of 16 alternate accumulators instead of chaining one
    }
    for (; i < len; ++i) t += x[i];
  }
  return total(a0, a1, a2, a3) + t;
}

C3_VEC8_TARGET void shifted_sums(const float* x, int64_t rows, int64_t len, int64_t ld, float a, float* s1,
                                 float* s2) {
  const V8 av = splat(a);
  V8 p0 = zero(), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
  float t1 = 0.0f, t2 = 0.0f;
  for (int64_t r = 0; r < rows; ++r, x += ld) {
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      const V8 d0 = sub(load(x + i), av), d1 = sub(load(x + i + 8), av);
      const V8 d2 = sub(load(x + i + 16), av), d3 = sub(load(x + i + 24), av);
      p0 = add(p0, d0), q0 = fma(d0, d0, q0);
      p1 = add(p1, d1), q1 = fma(d1, d1, q1);
      p2 = add(p2, d2), q2 = fma(d2, d2, q2);
      p3 = add(p3, d3), q3 = fma(d3, d3, q3);
    }
    for (; i + 8 <= len; i += 8) {
      const V8 d = sub(load(x + i), av);
      p0 = add(p0, d), q0 = fma(d, d, q0);
      std::swap(p0, p1), std::swap(q0, q1);
    }
    for (; i < len; ++i) {
      const float d = x[i] - a;
      t1 += d, t2 = std::fma(d, d, t2);  // one rounding, as the x86 build fused it: explicit, so both agree
    }
  }
  *s1 = total(p0, p1, p2, p3) + t1;
  *s2 = total(q0, q1, q2, q3) + t2;
}

C3_VEC8_TARGET void grad_sums(const float* dy, const float* x, int64_t rows, int64_t len, int64_t ld, float m,
                              float* s1, float* s2) {
  const V8 mv = splat(m);
  V8 p0 = zero(), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
  float t1 = 0.0f, t2 = 0.0f;
  for (int64_t r = 0; r < rows; ++r, x += ld, dy += ld) {
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
      const V8 g0 = load(dy + i), g1 = load(dy + i + 8), g2 = load(dy + i + 16), g3 = load(dy + i + 24);
      p0 = add(p0, g0), q0 = fma(g0, sub(load(x + i), mv), q0);
      p1 = add(p1, g1), q1 = fma(g1, sub(load(x + i + 8), mv), q1);
      p2 = add(p2, g2), q2 = fma(g2, sub(load(x + i + 16), mv), q2);
      p3 = add(p3, g3), q3 = fma(g3, sub(load(x + i + 24), mv), q3);
    }
    for (; i + 8 <= len; i += 8) {
      const V8 g = load(dy + i);
      p0 = add(p0, g), q0 = fma(g, sub(load(x + i), mv), q0);
      std::swap(p0, p1), std::swap(q0, q1);
    }
    for (; i < len; ++i) t1 += dy[i], t2 = std::fma(dy[i], x[i] - m, t2);
  }
  *s1 = total(p0, p1, p2, p3) + t1;
  *s2 = total(q0, q1, q2, q3) + t2;
}

// Runs at least this long (floats) are written with streaming stores where there are any (x86):
// 64 KiB and more, as in the long rows of a 128 px layer, whose outputs leave the caches anyway.
constexpr int64_t kStreamRun = 16384;

C3_VEC8_INLINE V8 dx8(const float* dy, const float* x, V8 a, V8 b, V8 m, V8 k) {
  return fma(a, load(dy), fma(b, sub(load(x), m), k));
}

C3_VEC8_TARGET void dx(const float* dy, const float* x, int64_t n, float a, float b, float m, float k, float* out) {
  const V8 av = splat(a), bv = splat(b), mv = splat(m), kv = splat(k);
  int64_t i = 0;
  if (n >= kStreamRun) {  // long runs: streaming stores, no read of dx's old lines
    for (; i < n && (reinterpret_cast<uintptr_t>(out + i) & 31); ++i) out[i] = std::fma(a, dy[i], std::fma(b, x[i] - m, k));
    for (; i + 16 <= n; i += 16) {
      store_stream(out + i, dx8(dy + i, x + i, av, bv, mv, kv));
      store_stream(out + i + 8, dx8(dy + i + 8, x + i + 8, av, bv, mv, kv));
    }
    stream_fence();
  }
  for (; i + 16 <= n; i += 16) {
    store(out + i, dx8(dy + i, x + i, av, bv, mv, kv));
    store(out + i + 8, dx8(dy + i + 8, x + i + 8, av, bv, mv, kv));
  }
  for (; i < n; ++i) out[i] = std::fma(a, dy[i], std::fma(b, x[i] - m, k));
}

#ifdef C3_VEC8_X86
#define C3_AVX2 __attribute__((target("avx2,fma")))

C3_AVX2 void invstd(int64_t n, const double* var, double eps, double* out) {
  const __m256d one = _mm256_set1_pd(1.0), e = _mm256_set1_pd(eps);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    _mm256_storeu_pd(out + i, _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_add_pd(_mm256_loadu_pd(var + i), e))));
  for (; i < n; ++i) out[i] = 1.0 / std::sqrt(var[i] + eps);
}

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

const BatchnormKernels kAvx2 = {"avx2-fma", sum, shifted_sums, grad_sums, invstd, affine, dx};
#endif  // C3_VEC8_X86

}  // namespace
#endif  // C3_VEC8

const BatchnormKernels* avx2_batchnorm_kernels() {
#ifdef C3_VEC8_X86
  return vec8::available() ? &kAvx2 : nullptr;
#else
  return nullptr;
#endif
}

const BatchnormKernels* neon_batchnorm_kernels() {
#ifdef C3_VEC8_NEON
  // the sums and the backward's pass on vectors; 1/sqrt and the affine pass the plain loops
  static const BatchnormKernels k = [] {
    BatchnormKernels t = portable_batchnorm_kernels();
    t.name = "neon";
    t.sum = sum;
    t.shifted_sums = shifted_sums;
    t.grad_sums = grad_sums;
    t.dx = dx;
    return t;
  }();
  return &k;
#else
  return nullptr;
#endif
}

}  // namespace c3::cpu
