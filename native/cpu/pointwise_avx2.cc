// AVX2 + FMA inner loops of the elementwise kernels (the table in pointwise_kernels.h): 8 floats
// per step, a masked-free scalar tail, and for the GLU a vectorised exp (Cephes' expf: range
// reduction by ln 2 in two parts, a degree-5 polynomial, the exponent put in by integer adds;
// about 1 ulp). Compiled with a target attribute, not a -m flag, so one binary runs everywhere;
// pointwise.cc uses them only after __builtin_cpu_supports says yes.
#include <cmath>

#include "pointwise_kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define C3_POINTWISE_AVX2 1
#endif

namespace c3::cpu {

#ifdef C3_POINTWISE_AVX2
namespace {

#define C3_AVX2 __attribute__((target("avx2,fma")))

// exp(x); inputs are clamped to [-87.34, 88] (2^-126 .. 2^127 after rounding), where float exp is
// finite and normal, so exp(-100) is ~1e-38 rather than 0 (harmless for the sigmoid); NaN stays
// NaN (min/max return their second operand when one is NaN)
C3_AVX2 inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3365447504f), x);
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // x - fx * ln2 with ln2 = 0.693359375 - 2.12194440e-4 (the first part exact in float)
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

C3_AVX2 inline __m256 sigmoid256(__m256 b) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), b));
  return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

inline float sigmoid1(float v) { return 1.0f / (1.0f + std::exp(-v)); }

// tanh(x) as Cephes' tanhf: below |x| = 0.625 an odd polynomial, x + x^3 P(x^2); above, 1 - 2 /
// (exp(2|x|) + 1) with x's sign (exp256's clamp makes it exactly 1 past |x| = 44; NaN stays NaN)
C3_AVX2 inline __m256 tanh256(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  const __m256 a = _mm256_andnot_ps(sign, x);
  const __m256 s = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, s), x, x);
  const __m256 e = exp256(_mm256_add_ps(a, a));
  const __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  const __m256 signed_big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
  return _mm256_blendv_ps(signed_big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

// f over n floats, 8 at a time; the last n % 8 through a zero-padded register, so every element
// gets the vector code's bits wherever a stretch starts or ends
template <__m256 (*f)(__m256)>
C3_AVX2 void map256(int64_t n, const float* x, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(32) float buf[8] = {};
    for (int64_t j = i; j < n; ++j) buf[j - i] = x[j];
    _mm256_store_ps(buf, f(_mm256_load_ps(buf)));
    for (int64_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}

C3_AVX2 void tanh_forward(int64_t n, const float* x, float* y) { map256<tanh256>(n, x, y); }
C3_AVX2 void sigmoid_forward(int64_t n, const float* x, float* y) { map256<sigmoid256>(n, x, y); }

C3_AVX2 void glu_forward(int64_t n, const float* a, const float* b, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), sigmoid256(_mm256_loadu_ps(b + i))));
  for (; i < n; ++i) y[i] = a[i] * sigmoid1(b[i]);
}

C3_AVX2 void glu_backward(int64_t n, const float* g, const float* a, const float* b, float* da, float* db) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 s = sigmoid256(_mm256_loadu_ps(b + i)), gv = _mm256_loadu_ps(g + i);
    const __m256 gas = _mm256_mul_ps(_mm256_mul_ps(gv, _mm256_loadu_ps(a + i)), s);
    _mm256_storeu_ps(da + i, _mm256_mul_ps(gv, s));
    _mm256_storeu_ps(db + i, _mm256_mul_ps(gas, _mm256_sub_ps(one, s)));
  }
  for (; i < n; ++i) {
    const float s = sigmoid1(b[i]);
    da[i] = g[i] * s;
    db[i] = g[i] * a[i] * s * (1.0f - s);
  }
}

// the coefficients of elements i .. i + 7: one broadcast value (step 0) or eight
struct Coef8 {
  __m256 sa, ta, sb, tb;
};
C3_AVX2 inline Coef8 coef8(const AffinePair& c, int64_t i) {
  if (c.step == 0) return {_mm256_set1_ps(*c.sa), _mm256_set1_ps(*c.ta), _mm256_set1_ps(*c.sb), _mm256_set1_ps(*c.tb)};
  return {_mm256_loadu_ps(c.sa + i), _mm256_loadu_ps(c.ta + i), _mm256_loadu_ps(c.sb + i), _mm256_loadu_ps(c.tb + i)};
}

C3_AVX2 void affine_glu_forward(int64_t n, const float* xa, const float* xb, const AffinePair& c, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Coef8 k = coef8(c, i);
    const __m256 za = _mm256_fmadd_ps(_mm256_loadu_ps(xa + i), k.sa, k.ta);
    const __m256 zb = _mm256_fmadd_ps(_mm256_loadu_ps(xb + i), k.sb, k.tb);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(za, sigmoid256(zb)));
  }
  for (int64_t j = i * c.step; i < n; ++i, j += c.step)
    y[i] = std::fma(xa[i], c.sa[j], c.ta[j]) * sigmoid1(std::fma(xb[i], c.sb[j], c.tb[j]));
}

C3_AVX2 void affine_glu_backward(int64_t n, const float* g, const float* xa, const float* xb, const AffinePair& c,
                                 float* dza, float* dzb) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Coef8 k = coef8(c, i);
    const __m256 za = _mm256_fmadd_ps(_mm256_loadu_ps(xa + i), k.sa, k.ta);
    const __m256 s = sigmoid256(_mm256_fmadd_ps(_mm256_loadu_ps(xb + i), k.sb, k.tb)), gv = _mm256_loadu_ps(g + i);
    _mm256_storeu_ps(dza + i, _mm256_mul_ps(gv, s));
    _mm256_storeu_ps(dzb + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(gv, za), s), _mm256_sub_ps(one, s)));
  }
  for (int64_t j = i * c.step; i < n; ++i, j += c.step) {
    const float za = std::fma(xa[i], c.sa[j], c.ta[j]), s = sigmoid1(std::fma(xb[i], c.sb[j], c.tb[j]));
    dza[i] = g[i] * s;
    dzb[i] = g[i] * za * s * (1.0f - s);
  }
}

C3_AVX2 void relu_forward(int64_t n, const float* x, float* y) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  // max(x, 0) returns 0 for NaN and for -0, as x > 0 ? x : 0 does
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_max_ps(_mm256_loadu_ps(x + i), zero));
  for (; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

C3_AVX2 void relu_backward(int64_t n, const float* dy, const float* x, float* dx) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 pos = _mm256_cmp_ps(_mm256_loadu_ps(x + i), zero, _CMP_GT_OQ);
    _mm256_storeu_ps(dx + i, _mm256_and_ps(pos, _mm256_loadu_ps(dy + i)));
  }
  for (; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

C3_AVX2 void leaky_forward(int64_t n, const float* x, float alpha, float* y) {
  const __m256 zero = _mm256_setzero_ps(), av = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_mul_ps(v, av), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
  }
  for (; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
}

C3_AVX2 void leaky_backward(int64_t n, const float* dy, const float* x, float alpha, float* dx) {
  const __m256 zero = _mm256_setzero_ps(), av = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(dy + i);
    const __m256 pos = _mm256_cmp_ps(_mm256_loadu_ps(x + i), zero, _CMP_GT_OQ);
    _mm256_storeu_ps(dx + i, _mm256_blendv_ps(_mm256_mul_ps(g, av), g, pos));
  }
  for (; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i];
}

struct AddOp {
  C3_AVX2 static __m256 v(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  static float s(float a, float b) { return a + b; }
};
struct SubOp {
  C3_AVX2 static __m256 v(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
  static float s(float a, float b) { return a - b; }
};
struct MulOp {
  C3_AVX2 static __m256 v(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
  static float s(float a, float b) { return a * b; }
};
struct DivOp {
  C3_AVX2 static __m256 v(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
  static float s(float a, float b) { return a / b; }
};

// sa, sb in {0, 1}: a stride-0 operand is one value, broadcast once
template <class Op>
C3_AVX2 void binary_op(int64_t n, const float* a, int64_t sa, const float* b, int64_t sb, float* y) {
  int64_t i = 0;
  if (sa && sb) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, Op::v(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; ++i) y[i] = Op::s(a[i], b[i]);
  } else if (sa) {
    const float bs = *b;
    const __m256 bv = _mm256_set1_ps(bs);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, Op::v(_mm256_loadu_ps(a + i), bv));
    for (; i < n; ++i) y[i] = Op::s(a[i], bs);
  } else if (sb) {
    const float as = *a;
    const __m256 av = _mm256_set1_ps(as);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, Op::v(av, _mm256_loadu_ps(b + i)));
    for (; i < n; ++i) y[i] = Op::s(as, b[i]);
  } else {
    const float v = Op::s(*a, *b);
    for (; i < n; ++i) y[i] = v;
  }
}

C3_AVX2 void binary(BinaryOp op, int64_t n, const float* a, int64_t sa, const float* b, int64_t sb, float* y) {
  switch (op) {
    case BinaryOp::Add: binary_op<AddOp>(n, a, sa, b, sb, y); break;
    case BinaryOp::Sub: binary_op<SubOp>(n, a, sa, b, sb, y); break;
    case BinaryOp::Mul: binary_op<MulOp>(n, a, sa, b, sb, y); break;
    case BinaryOp::Div: binary_op<DivOp>(n, a, sa, b, sb, y); break;
  }
}

bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const PointwiseKernels kAvx2 = {"avx2-fma",    glu_forward,    glu_backward,   relu_forward,
                                relu_backward, leaky_forward,  leaky_backward, tanh_forward,
                                sigmoid_forward, binary, affine_glu_forward, affine_glu_backward};

}  // namespace

const PointwiseKernels* avx2_pointwise_kernels() {
  static const bool ok = cpu_has_avx2_fma();
  return ok ? &kAvx2 : nullptr;
}

#else

const PointwiseKernels* avx2_pointwise_kernels() { return nullptr; }

#endif

}  // namespace c3::cpu
