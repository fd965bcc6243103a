// The AVX-512 GEMM micro-kernel: a 6 x 32 tile in 12 zmm accumulators, per k one row of B in two
// registers and a broadcast of each of A's 6 values (the AVX2 kernel's shape at twice the width).
// Compiled with a target attribute, not a -m flag, so one binary runs everywhere; gemm.cc uses it
// only where __builtin_cpu_supports("avx512f") says yes, and by default only where 512-bit FMAs
// are not split in two (gemm_kernels.h).
#include "gemm_kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define C3_GEMM_AVX512 1
#endif

namespace c3::cpu {

#ifdef C3_GEMM_AVX512
namespace {

__attribute__((target("avx512f"))) void kernel_6x32(int64_t kc, const float* a, const float* b, float* acc) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(),
         c11 = _mm512_setzero_ps(), c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(),
         c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c40 = _mm512_setzero_ps(),
         c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
#define C3_STEP(A, B)                                                     \
  {                                                                       \
    const __m512 b0 = _mm512_loadu_ps(B), b1 = _mm512_loadu_ps((B) + 16); \
    __m512 av = _mm512_set1_ps((A)[0]);                                   \
    c00 = _mm512_fmadd_ps(av, b0, c00);                                   \
    c01 = _mm512_fmadd_ps(av, b1, c01);                                   \
    av = _mm512_set1_ps((A)[1]);                                          \
    c10 = _mm512_fmadd_ps(av, b0, c10);                                   \
    c11 = _mm512_fmadd_ps(av, b1, c11);                                   \
    av = _mm512_set1_ps((A)[2]);                                          \
    c20 = _mm512_fmadd_ps(av, b0, c20);                                   \
    c21 = _mm512_fmadd_ps(av, b1, c21);                                   \
    av = _mm512_set1_ps((A)[3]);                                          \
    c30 = _mm512_fmadd_ps(av, b0, c30);                                   \
    c31 = _mm512_fmadd_ps(av, b1, c31);                                   \
    av = _mm512_set1_ps((A)[4]);                                          \
    c40 = _mm512_fmadd_ps(av, b0, c40);                                   \
    c41 = _mm512_fmadd_ps(av, b1, c41);                                   \
    av = _mm512_set1_ps((A)[5]);                                          \
    c50 = _mm512_fmadd_ps(av, b0, c50);                                   \
    c51 = _mm512_fmadd_ps(av, b1, c51);                                   \
  }
  int64_t k = 0;
  // four k per trip; the prefetch runs a few cache lines ahead in B's panel
  for (; k + 4 <= kc; k += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 256), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 272), _MM_HINT_T0);
    C3_STEP(a, b);
    C3_STEP(a + 6, b + 32);
    _mm_prefetch(reinterpret_cast<const char*>(b + 288), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 304), _MM_HINT_T0);
    C3_STEP(a + 12, b + 64);
    C3_STEP(a + 18, b + 96);
    a += 24;
    b += 128;
  }
  for (; k < kc; ++k) {
    C3_STEP(a, b);
    a += 6;
    b += 32;
  }
#undef C3_STEP
  _mm512_storeu_ps(acc + 0, c00);
  _mm512_storeu_ps(acc + 16, c01);
  _mm512_storeu_ps(acc + 32, c10);
  _mm512_storeu_ps(acc + 48, c11);
  _mm512_storeu_ps(acc + 64, c20);
  _mm512_storeu_ps(acc + 80, c21);
  _mm512_storeu_ps(acc + 96, c30);
  _mm512_storeu_ps(acc + 112, c31);
  _mm512_storeu_ps(acc + 128, c40);
  _mm512_storeu_ps(acc + 144, c41);
  _mm512_storeu_ps(acc + 160, c50);
  _mm512_storeu_ps(acc + 176, c51);
}

bool cpu_has_avx512f() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

const MicroKernel kAvx512 = {"avx512f 6x32", 6, 32, kernel_6x32};

}  // namespace

const MicroKernel* avx512_micro_kernel() {
  static const bool ok = cpu_has_avx512f();
  return ok ? &kAvx512 : nullptr;
}

#else

const MicroKernel* avx512_micro_kernel() { return nullptr; }

#endif

}  // namespace c3::cpu
