// Eight floats in vector registers, for the direct conv loops (conv_direct.cc): one AVX2 register
// on x86, two Advanced SIMD registers on AArch64. The loops are written once against these
// helpers. Every multiply-add is fused (one rounding) on both, and hsum adds the lanes in one fixed
// order, so a loop gives the same bits on either architecture.
//
// On x86 the helpers carry target("avx2,fma") and are always inlined, so they may be called only
// from functions compiled for AVX2+FMA (C3_VEC8_TARGET), after a run-time check of the CPU.
// Advanced SIMD is architectural on AArch64: no check, no attribute.
#pragma once

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define C3_VEC8 1
#define C3_VEC8_X86 1
#define C3_VEC8_TARGET __attribute__((target("avx2,fma")))
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#define C3_VEC8 1
#define C3_VEC8_NEON 1
#define C3_VEC8_TARGET
#endif

#ifdef C3_VEC8
#define C3_VEC8_INLINE C3_VEC8_TARGET inline __attribute__((always_inline))

namespace c3::cpu::vec8 {

#ifdef C3_VEC8_X86

struct V8 {
  __m256 v;
};

C3_VEC8_INLINE V8 zero() { return {_mm256_setzero_ps()}; }
C3_VEC8_INLINE V8 splat(float a) { return {_mm256_set1_ps(a)}; }
// *p in every lane
C3_VEC8_INLINE V8 broadcast(const float* p) { return {_mm256_broadcast_ss(p)}; }
C3_VEC8_INLINE V8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
// p[0..3] in lanes 0-3, q[0..3] in lanes 4-7
C3_VEC8_INLINE V8 load_halves(const float* p, const float* q) {
  return {_mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), _mm_loadu_ps(q), 1)};
}
C3_VEC8_INLINE void store(float* p, V8 a) { _mm256_storeu_ps(p, a.v); }
// a * b + c, rounded once
C3_VEC8_INLINE V8 fma(V8 a, V8 b, V8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
C3_VEC8_INLINE float hsum(V8 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

#else  // C3_VEC8_NEON

struct V8 {
  float32x4_t lo, hi;
};

C3_VEC8_INLINE V8 zero() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
C3_VEC8_INLINE V8 splat(float a) { return {vdupq_n_f32(a), vdupq_n_f32(a)}; }
C3_VEC8_INLINE V8 broadcast(const float* p) {
  const float32x4_t b = vld1q_dup_f32(p);
  return {b, b};
}
C3_VEC8_INLINE V8 load(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
C3_VEC8_INLINE V8 load_halves(const float* p, const float* q) { return {vld1q_f32(p), vld1q_f32(q)}; }
C3_VEC8_INLINE void store(float* p, V8 a) {
  vst1q_f32(p, a.lo);
  vst1q_f32(p + 4, a.hi);
}
C3_VEC8_INLINE V8 fma(V8 a, V8 b, V8 c) { return {vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; }
// the same order as the AVX2 hsum
C3_VEC8_INLINE float hsum(V8 a) {
  const float32x4_t s = vaddq_f32(a.lo, a.hi);                       // l0+l4, l1+l5, l2+l6, l3+l7
  const float32x2_t t = vadd_f32(vget_low_f32(s), vget_high_f32(s));  // (l0+l4)+(l2+l6), (l1+l5)+(l3+l7)
  return vget_lane_f32(t, 0) + vget_lane_f32(t, 1);
}

#endif

}  // namespace c3::cpu::vec8

#endif  // C3_VEC8
