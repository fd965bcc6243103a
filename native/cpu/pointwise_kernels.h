// The inner loops of the elementwise kernels (pointwise.cc) over contiguous stretches, as a small
// table: plain loops that the compiler vectorises for the baseline target, AVX2 + FMA ones on x86
// and Advanced SIMD ones on AArch64 (pointwise_vec8.cc, with a vectorised exp for the sigmoid,
// tanh and the GLU), chosen once at run time like the GEMM micro-kernel. The *_reference functions are the plain serial loops that define what the
// kernels compute; the tests compare every table against them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/backend.h"

namespace c3::cpu {

// The affine maps of a GLU's two halves: element i of a run takes sa[i * step] etc. (step 0: one
// coefficient for the whole run, a channel's row; 1: one per element, short rows laid side by side).
struct AffinePair {
  const float *sa, *ta, *sb, *tb;
  int64_t step;
};

struct PointwiseKernels {
  const char* name;
  // y = a * sigmoid(b)
  void (*glu_forward)(int64_t n, const float* a, const float* b, float* y);
  // s = sigmoid(b): da = g * s, db = g * a * s * (1 - s)
  void (*glu_backward)(int64_t n, const float* g, const float* a, const float* b, float* da, float* db);
  // x > 0 picks the identity branch (PyTorch's choice at 0; NaN takes the other branch)
  void (*relu_forward)(int64_t n, const float* x, float* y);
  void (*relu_backward)(int64_t n, const float* dy, const float* x, float* dx);
  void (*leaky_forward)(int64_t n, const float* x, float alpha, float* y);
  void (*leaky_backward)(int64_t n, const float* dy, const float* x, float alpha, float* dx);
  // y = tanh(x), y = sigmoid(x): the vector ones compute every element with the vector code (a short
  // tail through a padded register), so the bits do not depend on where the pool splits the work
  void (*tanh_forward)(int64_t n, const float* x, float* y);
  void (*sigmoid_forward)(int64_t n, const float* x, float* y);
  // y[j] = a[j * sa] op b[j * sb] for j < n, with sa, sb each 0 or 1; y may be a or b itself
  void (*binary)(BinaryOp op, int64_t n, const float* a, int64_t sa, const float* b, int64_t sb, float* y);
  // batch norm's affine into the GLU (bn_glu.cc): za = fma(xa, sa, ta), zb = fma(xb, sb, tb),
  // y = za * sigmoid(zb); backward, from g: dza = g * s, dzb = g * za * s * (1 - s)
  void (*affine_glu_forward)(int64_t n, const float* xa, const float* xb, const AffinePair& c, float* y);
  void (*affine_glu_backward)(int64_t n, const float* g, const float* xa, const float* xb, const AffinePair& c,
                              float* dza, float* dzb);
};

// Plain loops (always available).
const PointwiseKernels& portable_pointwise_kernels();
// AVX2 + FMA; null when the compiler cannot build them or this CPU lacks them.
const PointwiseKernels* avx2_pointwise_kernels();
// AArch64: the exp-based kernels on Advanced SIMD (the same bits as the AVX2 ones), the others the
// plain loops; null elsewhere.
const PointwiseKernels* neon_pointwise_kernels();
// The table the kernels use: AVX2 or Advanced SIMD where the CPU has it, else portable.
const PointwiseKernels& pointwise_kernels();
// For tests and benchmarks: use `k` from now on (not thread-safe against running kernels).
void set_pointwise_kernels(const PointwiseKernels& k);

// Plain serial loops: the meaning of the kernels (cpu/kernels.h has the fast entry points).
void glu_forward_reference(int64_t outer, int64_t half, int64_t inner, const float* x, float* y);
void glu_backward_reference(int64_t outer, int64_t half, int64_t inner, const float* dy, const float* x, float* dx);
void unary_forward_reference(UnaryOp op, size_t n, const float* x, float alpha, float* y);
void unary_backward_reference(UnaryOp op, size_t n, const float* dy, const float* x, const float* y, float alpha,
                              float* dx);
void binary_forward_reference(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y);
void expand_reference(const BroadcastIndex& idx, const float* x, float* y);
void sum_to_reference(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel);

}  // namespace c3::cpu
