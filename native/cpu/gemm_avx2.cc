// The AVX2 + FMA GEMM micro-kernel: a 6 x 16 tile in 12 ymm accumulators, per k one row of B in
// two registers and a broadcast of each of A's 6 values (BLIS's Haswell/Zen shape: 12 FMAs per
// 2 loads + 6 broadcasts). Compiled for AVX2 with a target attribute, not a -m flag, so one
// binary runs everywhere; gemm.cc calls it only after __builtin_cpu_supports says yes.
#include "gemm_kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define C3_GEMM_AVX2 1
#endif

namespace c3::cpu {

#ifdef C3_GEMM_AVX2
namespace {

__attribute__((target("avx2,fma"))) void kernel_6x16(int64_t kc, const float* a, const float* b, float* acc) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
         c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
         c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
         c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#define C3_STEP(A, B)                                          \
  {                                                            \
    const __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps((B) + 8); \
    __m256 av = _mm256_broadcast_ss(A);                        \
    c00 = _mm256_fmadd_ps(av, b0, c00);                        \
    c01 = _mm256_fmadd_ps(av, b1, c01);                        \
    av = _mm256_broadcast_ss((A) + 1);                         \
    c10 = _mm256_fmadd_ps(av, b0, c10);                        \
    c11 = _mm256_fmadd_ps(av, b1, c11);                        \
    av = _mm256_broadcast_ss((A) + 2);                         \
    c20 = _mm256_fmadd_ps(av, b0, c20);                        \
    c21 = _mm256_fmadd_ps(av, b1, c21);                        \
    av = _mm256_broadcast_ss((A) + 3);                         \
    c30 = _mm256_fmadd_ps(av, b0, c30);                        \
    c31 = _mm256_fmadd_ps(av, b1, c31);                        \
    av = _mm256_broadcast_ss((A) + 4);                         \
    c40 = _mm256_fmadd_ps(av, b0, c40);                        \
    c41 = _mm256_fmadd_ps(av, b1, c41);                        \
    av = _mm256_broadcast_ss((A) + 5);                         \
    c50 = _mm256_fmadd_ps(av, b0, c50);                        \
    c51 = _mm256_fmadd_ps(av, b1, c51);                        \
  }
  int64_t k = 0;
  // four k per trip; the prefetch runs a few cache lines ahead in B's panel (A's is small and hot)
  for (; k + 4 <= kc; k += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 128), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 144), _MM_HINT_T0);
    C3_STEP(a, b);
    C3_STEP(a + 6, b + 16);
    _mm_prefetch(reinterpret_cast<const char*>(b + 160), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + 176), _MM_HINT_T0);
    C3_STEP(a + 12, b + 32);
    C3_STEP(a + 18, b + 48);
    a += 24;
    b += 64;
  }
  for (; k < kc; ++k) {
    C3_STEP(a, b);
    a += 6;
    b += 16;
  }
#undef C3_STEP
  _mm256_storeu_ps(acc + 0, c00);
  _mm256_storeu_ps(acc + 8, c01);
  _mm256_storeu_ps(acc + 16, c10);
  _mm256_storeu_ps(acc + 24, c11);
  _mm256_storeu_ps(acc + 32, c20);
  _mm256_storeu_ps(acc + 40, c21);
  _mm256_storeu_ps(acc + 48, c30);
  _mm256_storeu_ps(acc + 56, c31);
  _mm256_storeu_ps(acc + 64, c40);
  _mm256_storeu_ps(acc + 72, c41);
  _mm256_storeu_ps(acc + 80, c50);
  _mm256_storeu_ps(acc + 88, c51);
}

bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const MicroKernel kAvx2 = {"avx2-fma 6x16", 6, 16, kernel_6x16};

}  // namespace

const MicroKernel* avx2_micro_kernel() {
  static const bool ok = cpu_has_avx2_fma();
  return ok ? &kAvx2 : nullptr;
}

#else

const MicroKernel* avx2_micro_kernel() { return nullptr; }

#endif

}  // namespace c3::cpu
