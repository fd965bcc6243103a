// The reductions and per-run passes of the batch-norm kernels (batchnorm.cc) as a small table:
// plain loops, AVX2 + FMA ones on x86 and Advanced SIMD ones on AArch64 (batchnorm_vec8.cc),
// chosen once at run time like the GEMM micro-kernel. Each sum covers one chunk, `rows` runs of
// `len` floats `ld` apart (at most a few thousand floats), in float across vector lanes; the
// caller adds chunks in double. The *_reference functions are the plain serial double loops that
// define the kernels; the tests compare every table against them.
#pragma once
#include <cstdint>

namespace c3::cpu {

struct BatchnormKernels {
  const char* name;
  // sum of x over the chunk
  float (*sum)(const float* x, int64_t rows, int64_t len, int64_t ld);
  // with d = x - a: s1 = sum d, s2 = sum d^2
  void (*shifted_sums)(const float* x, int64_t rows, int64_t len, int64_t ld, float a, float* s1, float* s2);
  // s1 = sum dy, s2 = sum dy * (x - m) (dy and x with the same layout)
  void (*grad_sums)(const float* dy, const float* x, int64_t rows, int64_t len, int64_t ld, float m, float* s1,
                    float* s2);
  // out[i] = 1 / sqrt(var[i] + eps), correctly rounded double operations (out may be var)
  void (*invstd)(int64_t n, const double* var, double eps, double* out);
  // y[i] = x[i] * a + b over one run (the normalising pass)
  void (*affine)(const float* x, int64_t n, float a, float b, float* y);
  // dx[i] = a * dy[i] + b * (x[i] - m) + k over one run (the backward's second pass)
  void (*dx)(const float* dy, const float* x, int64_t n, float a, float b, float m, float k, float* dx);
};

// Plain loops (always available).
const BatchnormKernels& portable_batchnorm_kernels();
// AVX2 + FMA; null when the compiler cannot build them or this CPU lacks them.
const BatchnormKernels* avx2_batchnorm_kernels();
// AArch64: the sums and the backward's pass on Advanced SIMD (the same bits as the AVX2 ones), 1/sqrt
// and the affine pass the plain loops; null elsewhere.
const BatchnormKernels* neon_batchnorm_kernels();
// The table the kernels use: AVX2 or Advanced SIMD where the CPU has it, else portable.
const BatchnormKernels& batchnorm_kernels();
// For tests and benchmarks: use `k` from now on (not thread-safe against running kernels).
void set_batchnorm_kernels(const BatchnormKernels& k);

struct Moments;  // moments.h
// Count, mean and M2 of one chunk (`rows` runs of `len` floats `ld` apart, at most a few
// thousand floats) with k's sums: batch norm's chunks, the direct conv's output bands.
Moments run_moments(const BatchnormKernels& k, const float* x, int64_t rows, int64_t len, int64_t ld);

// One channel at a time in double, serial.
void batchnorm_forward_train_reference(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma,
                                       const float* beta, float* running_mean, float* running_var, float momentum,
                                       float eps, float* y, float* save_mean, float* save_invstd);
void batchnorm_forward_eval_reference(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma,
                                      const float* beta, const float* running_mean, const float* running_var,
                                      float eps, float* y);
void batchnorm_backward_reference(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                                  const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                                  float* dgamma, float* dbeta);

}  // namespace c3::cpu
