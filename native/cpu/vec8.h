// Eight floats in vector registers, for the direct conv loops (conv_direct.cc), the exp-based
// elementwise kernels (pointwise_vec8.cc), batch norm's sums (batchnorm_vec8.cc) and the Winograd
// lane transposes (winograd_lanes.cc): one AVX2 register on x86, two Advanced SIMD registers on
// AArch64. The loops are written once against these helpers. fma rounds once on both, round_even
// rounds to nearest even on both, a NaN passes through clamp and fails select_lt on both, and hsum
// adds the lanes in one fixed order, so a loop gives the same bits on either architecture (checked
// with GCC for every loop built on this; scalar tails that multiply and add call std::fma, since
// GCC fuses a scalar a * b + c on AArch64 and, inside FMA-target functions, on x86).
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

// Whether this CPU runs the vectors: AVX2 and FMA on x86 (asked once), always on AArch64. Plain
// code, callable anywhere; the C3_VEC8_TARGET functions only after it says yes.
inline bool available() {
#ifdef C3_VEC8_X86
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
#else
  return true;
#endif
}

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
C3_VEC8_INLINE V8 add(V8 a, V8 b) { return {_mm256_add_ps(a.v, b.v)}; }
C3_VEC8_INLINE V8 sub(V8 a, V8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
C3_VEC8_INLINE V8 mul(V8 a, V8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
C3_VEC8_INLINE V8 div(V8 a, V8 b) { return {_mm256_div_ps(a.v, b.v)}; }
// c - a * b, rounded once
C3_VEC8_INLINE V8 fnma(V8 a, V8 b, V8 c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
// min(max(x, lo), hi) for lo <= hi; NaN stays NaN (minps/maxps return their second operand on a NaN)
C3_VEC8_INLINE V8 clamp(V8 x, float lo, float hi) {
  return {_mm256_max_ps(_mm256_set1_ps(lo), _mm256_min_ps(_mm256_set1_ps(hi), x.v))};
}
// to the nearest integer, ties to even
C3_VEC8_INLINE V8 round_even(V8 a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
// 2^n for integral n in [-126, 127]
C3_VEC8_INLINE V8 pow2(V8 n) {
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23))};
}
C3_VEC8_INLINE V8 abs(V8 a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
// a with the sign bit of s or-ed in
C3_VEC8_INLINE V8 or_sign(V8 a, V8 s) { return {_mm256_or_ps(a.v, _mm256_and_ps(_mm256_set1_ps(-0.0f), s.v))}; }
// per lane: a < b ? t : f (false for NaN)
C3_VEC8_INLINE V8 select_lt(V8 a, V8 b, V8 t, V8 f) { return {_mm256_blendv_ps(f.v, t.v, _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ))}; }
// acc + w[I] * v, w[I] in every lane: broadcast from memory here (ws unused); the AArch64 twin
// takes lane I of ws = load(w), so six weights cost two registers instead of six
template <int I>
C3_VEC8_INLINE V8 fma_lane(const float* w, V8 ws, V8 v, V8 acc) {
  (void)ws;
  return fma(broadcast(w + I), v, acc);
}
// a store that bypasses the caches (p 32-byte aligned), for long runs whose outputs are not read
// again soon; stream_fence orders them before later stores
C3_VEC8_INLINE void store_stream(float* p, V8 a) { _mm256_stream_ps(p, a.v); }
C3_VEC8_INLINE void stream_fence() { _mm_sfence(); }
// r[i] (row i of an 8x8 block) -> r[i] = column i
C3_VEC8_INLINE void transpose8(V8 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0].v, r[1].v), t1 = _mm256_unpackhi_ps(r[0].v, r[1].v);
  const __m256 t2 = _mm256_unpacklo_ps(r[2].v, r[3].v), t3 = _mm256_unpackhi_ps(r[2].v, r[3].v);
  const __m256 t4 = _mm256_unpacklo_ps(r[4].v, r[5].v), t5 = _mm256_unpackhi_ps(r[4].v, r[5].v);
  const __m256 t6 = _mm256_unpacklo_ps(r[6].v, r[7].v), t7 = _mm256_unpackhi_ps(r[6].v, r[7].v);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0].v = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1].v = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2].v = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3].v = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4].v = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5].v = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6].v = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7].v = _mm256_permute2f128_ps(s3, s7, 0x31);
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
C3_VEC8_INLINE V8 add(V8 a, V8 b) { return {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
C3_VEC8_INLINE V8 sub(V8 a, V8 b) { return {vsubq_f32(a.lo, b.lo), vsubq_f32(a.hi, b.hi)}; }
C3_VEC8_INLINE V8 mul(V8 a, V8 b) { return {vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
C3_VEC8_INLINE V8 div(V8 a, V8 b) { return {vdivq_f32(a.lo, b.lo), vdivq_f32(a.hi, b.hi)}; }
C3_VEC8_INLINE V8 fnma(V8 a, V8 b, V8 c) { return {vfmsq_f32(c.lo, a.lo, b.lo), vfmsq_f32(c.hi, a.hi, b.hi)}; }
// NaN stays NaN (fmin/fmax propagate it)
C3_VEC8_INLINE V8 clamp(V8 x, float lo, float hi) {
  const float32x4_t l = vdupq_n_f32(lo), h = vdupq_n_f32(hi);
  return {vmaxq_f32(l, vminq_f32(h, x.lo)), vmaxq_f32(l, vminq_f32(h, x.hi))};
}
C3_VEC8_INLINE V8 round_even(V8 a) { return {vrndnq_f32(a.lo), vrndnq_f32(a.hi)}; }
C3_VEC8_INLINE float32x4_t pow2_4(float32x4_t n) {
  return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23));
}
C3_VEC8_INLINE V8 pow2(V8 n) { return {pow2_4(n.lo), pow2_4(n.hi)}; }
C3_VEC8_INLINE V8 abs(V8 a) { return {vabsq_f32(a.lo), vabsq_f32(a.hi)}; }
C3_VEC8_INLINE float32x4_t or_sign_4(float32x4_t a, float32x4_t s) {
  const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(s), vdupq_n_u32(0x80000000u));
  return vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(a), sign));
}
C3_VEC8_INLINE V8 or_sign(V8 a, V8 s) { return {or_sign_4(a.lo, s.lo), or_sign_4(a.hi, s.hi)}; }
C3_VEC8_INLINE V8 select_lt(V8 a, V8 b, V8 t, V8 f) {
  return {vbslq_f32(vcltq_f32(a.lo, b.lo), t.lo, f.lo), vbslq_f32(vcltq_f32(a.hi, b.hi), t.hi, f.hi)};
}
template <int I>
C3_VEC8_INLINE V8 fma_lane(const float* w, V8 ws, V8 v, V8 acc) {
  (void)w;
  const float32x4_t q = I < 4 ? ws.lo : ws.hi;
  return {vfmaq_laneq_f32(acc.lo, v.lo, q, I & 3), vfmaq_laneq_f32(acc.hi, v.hi, q, I & 3)};
}
// no streaming store here: an ordinary one
C3_VEC8_INLINE void store_stream(float* p, V8 a) { store(p, a); }
C3_VEC8_INLINE void stream_fence() {}
// rows a, b, c, d of a 4x4 block -> its columns
C3_VEC8_INLINE void transpose4(float32x4_t& a, float32x4_t& b, float32x4_t& c, float32x4_t& d) {
  const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(a, b)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(a, b));
  const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(c, d)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(c, d));
  a = vreinterpretq_f32_f64(vtrn1q_f64(t0, t2));
  b = vreinterpretq_f32_f64(vtrn1q_f64(t1, t3));
  c = vreinterpretq_f32_f64(vtrn2q_f64(t0, t2));
  d = vreinterpretq_f32_f64(vtrn2q_f64(t1, t3));
}
// the 8x8 block as four 4x4 ones: column j < 4 is the left blocks' column j, column j + 4 the right ones'
C3_VEC8_INLINE void transpose8(V8 r[8]) {
  transpose4(r[0].lo, r[1].lo, r[2].lo, r[3].lo);  // top left
  transpose4(r[4].lo, r[5].lo, r[6].lo, r[7].lo);  // bottom left
  transpose4(r[0].hi, r[1].hi, r[2].hi, r[3].hi);  // top right
  transpose4(r[4].hi, r[5].hi, r[6].hi, r[7].hi);  // bottom right
  for (int j = 0; j < 4; ++j) {
    const float32x4_t top_right = r[j].hi;
    r[j].hi = r[j + 4].lo;  // the bottom left's column j
    r[j + 4].lo = top_right;
  }
}

#endif

}  // namespace c3::cpu::vec8

#endif  // C3_VEC8
