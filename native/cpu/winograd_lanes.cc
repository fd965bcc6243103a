// The 8-lane interleave of the Winograd transforms (winograd_core.h): dst[w * 8 + l] = src[l][w]
// and its reverse, as 8x8 transposes in AVX2 registers where the CPU has them (one per 8 pixels
// of 8 images), else plain loops.
#include <cstdint>

#include "gemm_kernels.h"
#include "winograd_core.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define C3_LANES_AVX2 1
#endif

namespace c3::cpu::wino {
namespace {

static_assert(L == 8, "the AVX2 transposes are 8x8");

void interleave_plain(const float* const* src, int64_t n, float* dst) {
  for (int64_t w = 0; w < n; ++w)
    for (int l = 0; l < L; ++l) dst[w * L + l] = src[l][w];
}

void deinterleave_plain(const float* src, int64_t n, float* const* dst) {
  for (int64_t w = 0; w < n; ++w)
    for (int l = 0; l < L; ++l) dst[l][w] = src[w * L + l];
}

#ifdef C3_LANES_AVX2
// r[i] (row i, 8 floats) -> r[i] = column i
__attribute__((target("avx2"))) inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

__attribute__((target("avx2"))) void interleave_avx2(const float* const* src, int64_t n, float* dst) {
  int64_t w = 0;
  for (; w + 8 <= n; w += 8) {
    __m256 r[8];
    for (int l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(src[l] + w);
    transpose8(r);
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (w + i) * L, r[i]);
  }
  for (; w < n; ++w)
    for (int l = 0; l < L; ++l) dst[w * L + l] = src[l][w];
}

__attribute__((target("avx2"))) void deinterleave_avx2(const float* src, int64_t n, float* const* dst) {
  int64_t w = 0;
  for (; w + 8 <= n; w += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (w + i) * L);
    transpose8(r);
    for (int l = 0; l < 8; ++l) _mm256_storeu_ps(dst[l] + w, r[l]);
  }
  for (; w < n; ++w)
    for (int l = 0; l < L; ++l) dst[l][w] = src[w * L + l];
}
#endif

}  // namespace

void interleave_lanes(const float* const* src, int64_t n, float* dst) {
#ifdef C3_LANES_AVX2
  if (use_avx2()) return interleave_avx2(src, n, dst);
#endif
  interleave_plain(src, n, dst);
}

void deinterleave_lanes(const float* src, int64_t n, float* const* dst) {
#ifdef C3_LANES_AVX2
  if (use_avx2()) return deinterleave_avx2(src, n, dst);
#endif
  deinterleave_plain(src, n, dst);
}

}  // namespace c3::cpu::wino
