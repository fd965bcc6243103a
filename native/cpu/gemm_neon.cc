// The AArch64 NEON (Advanced SIMD) GEMM micro-kernel: a 12 x 8 tile in 24 q-register
// accumulators, per k one column of A in three registers and one row of B in two, each
// accumulator updated by vfmaq_laneq_f32 (B's vector times one lane of A: no broadcasts), 24 FMAs
// per 5 loads. That is BLIS's armv8a sgemm tile (8 x 12) transposed: nr stays a multiple of 8,
// which the Winograd input transform relies on (it stores 8 consecutive columns of a B panel at
// once, winograd_core.h PanelRow). Advanced SIMD is architectural on AArch64, so there is no
// run-time check; on other targets this file compiles to neon_micro_kernel() returning null.
#include "gemm_kernels.h"

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#define C3_GEMM_NEON 1
#endif

namespace c3::cpu {

#ifdef C3_GEMM_NEON
namespace {

void kernel_12x8(int64_t kc, const float* a, const float* b, float* acc) {
  float32x4_t c00 = vdupq_n_f32(0), c01 = vdupq_n_f32(0), c10 = vdupq_n_f32(0), c11 = vdupq_n_f32(0),
              c20 = vdupq_n_f32(0), c21 = vdupq_n_f32(0), c30 = vdupq_n_f32(0), c31 = vdupq_n_f32(0),
              c40 = vdupq_n_f32(0), c41 = vdupq_n_f32(0), c50 = vdupq_n_f32(0), c51 = vdupq_n_f32(0),
              c60 = vdupq_n_f32(0), c61 = vdupq_n_f32(0), c70 = vdupq_n_f32(0), c71 = vdupq_n_f32(0),
              c80 = vdupq_n_f32(0), c81 = vdupq_n_f32(0), c90 = vdupq_n_f32(0), c91 = vdupq_n_f32(0),
              ca0 = vdupq_n_f32(0), ca1 = vdupq_n_f32(0), cb0 = vdupq_n_f32(0), cb1 = vdupq_n_f32(0);
  // rows 0-3 take the lanes of a0, rows 4-7 of a1, rows 8-11 of a2; columns 0-3 b0, 4-7 b1
#define C3_STEP(A, B)                                                                             \
  {                                                                                               \
    const float32x4_t b0 = vld1q_f32(B), b1 = vld1q_f32((B) + 4);                                 \
    const float32x4_t a0 = vld1q_f32(A), a1 = vld1q_f32((A) + 4), a2 = vld1q_f32((A) + 8);        \
    c00 = vfmaq_laneq_f32(c00, b0, a0, 0);                                                        \
    c01 = vfmaq_laneq_f32(c01, b1, a0, 0);                                                        \
    c10 = vfmaq_laneq_f32(c10, b0, a0, 1);                                                        \
    c11 = vfmaq_laneq_f32(c11, b1, a0, 1);                                                        \
    c20 = vfmaq_laneq_f32(c20, b0, a0, 2);                                                        \
    c21 = vfmaq_laneq_f32(c21, b1, a0, 2);                                                        \
    c30 = vfmaq_laneq_f32(c30, b0, a0, 3);                                                        \
    c31 = vfmaq_laneq_f32(c31, b1, a0, 3);                                                        \
    c40 = vfmaq_laneq_f32(c40, b0, a1, 0);                                                        \
    c41 = vfmaq_laneq_f32(c41, b1, a1, 0);                                                        \
    c50 = vfmaq_laneq_f32(c50, b0, a1, 1);                                                        \
    c51 = vfmaq_laneq_f32(c51, b1, a1, 1);                                                        \
    c60 = vfmaq_laneq_f32(c60, b0, a1, 2);                                                        \
    c61 = vfmaq_laneq_f32(c61, b1, a1, 2);                                                        \
    c70 = vfmaq_laneq_f32(c70, b0, a1, 3);                                                        \
    c71 = vfmaq_laneq_f32(c71, b1, a1, 3);                                                        \
    c80 = vfmaq_laneq_f32(c80, b0, a2, 0);                                                        \
    c81 = vfmaq_laneq_f32(c81, b1, a2, 0);                                                        \
    c90 = vfmaq_laneq_f32(c90, b0, a2, 1);                                                        \
    c91 = vfmaq_laneq_f32(c91, b1, a2, 1);                                                        \
    ca0 = vfmaq_laneq_f32(ca0, b0, a2, 2);                                                        \
    ca1 = vfmaq_laneq_f32(ca1, b1, a2, 2);                                                        \
    cb0 = vfmaq_laneq_f32(cb0, b0, a2, 3);                                                        \
    cb1 = vfmaq_laneq_f32(cb1, b1, a2, 3);                                                        \
  }
  int64_t k = 0;
  // four k per trip; the prefetch runs eight k (four cache lines) ahead in B's panel, like the
  // x86 kernels (A's panel streams from L2 in order, which the hardware prefetcher follows)
  for (; k + 4 <= kc; k += 4) {
    __builtin_prefetch(b + 64, 0, 3);
    C3_STEP(a, b);
    C3_STEP(a + 12, b + 8);
    __builtin_prefetch(b + 80, 0, 3);
    C3_STEP(a + 24, b + 16);
    C3_STEP(a + 36, b + 24);
    a += 48;
    b += 32;
  }
  for (; k < kc; ++k) {
    C3_STEP(a, b);
    a += 12;
    b += 8;
  }
#undef C3_STEP
  vst1q_f32(acc + 0, c00);
  vst1q_f32(acc + 4, c01);
  vst1q_f32(acc + 8, c10);
  vst1q_f32(acc + 12, c11);
  vst1q_f32(acc + 16, c20);
  vst1q_f32(acc + 20, c21);
  vst1q_f32(acc + 24, c30);
  vst1q_f32(acc + 28, c31);
  vst1q_f32(acc + 32, c40);
  vst1q_f32(acc + 36, c41);
  vst1q_f32(acc + 40, c50);
  vst1q_f32(acc + 44, c51);
  vst1q_f32(acc + 48, c60);
  vst1q_f32(acc + 52, c61);
  vst1q_f32(acc + 56, c70);
  vst1q_f32(acc + 60, c71);
  vst1q_f32(acc + 64, c80);
  vst1q_f32(acc + 68, c81);
  vst1q_f32(acc + 72, c90);
  vst1q_f32(acc + 76, c91);
  vst1q_f32(acc + 80, ca0);
  vst1q_f32(acc + 84, ca1);
  vst1q_f32(acc + 88, cb0);
  vst1q_f32(acc + 92, cb1);
}

const MicroKernel kNeon = {"neon 12x8", 12, 8, kernel_12x8};

}  // namespace

const MicroKernel* neon_micro_kernel() { return &kNeon; }

#else

const MicroKernel* neon_micro_kernel() { return nullptr; }

#endif

}  // namespace c3::cpu
