// Vector inner loops of the elementwise kernels (the tables in pointwise_kernels.h).
//   The exp-based ones (sigmoid, tanh, the GLU and batch norm's affine into it) on eight-float
//   vectors (vec8.h), so x86 (AVX2 + FMA, after __builtin_cpu_supports says yes) and AArch64
//   (Advanced SIMD) run one algorithm, the vector code with the same bits on both: a vectorised
//   exp (Cephes' expf: range reduction by ln 2 in two parts, a degree-5 polynomial, the exponent
//   put in by integer adds; about 1 ulp) where the plain loops call std::exp once an element (as
//   the GLU loops' scalar tails still do).
//   ReLU, LeakyReLU and the binary ops, which the compiler vectorises well from plain loops, have
//   AVX2 loops on x86 only; AArch64's table takes the portable ones.
// Compiled with target attributes, not -m flags, so one x86 binary runs everywhere.
#include <cmath>

#include "pointwise_kernels.h"
#include "vec8.h"

namespace c3::cpu {

#ifdef C3_VEC8
namespace {

using namespace vec8;

// exp(x); inputs are clamped to [-87.34, 88] (2^-126 .. 2^127 after rounding), where float exp is
// finite and normal, so exp(-100) is ~1e-38 rather than 0 (harmless for the sigmoid); NaN stays NaN
C3_VEC8_INLINE V8 exp8(V8 x) {
  x = clamp(x, -87.3365447504f, 88.0f);
  const V8 fx = round_even(mul(x, splat(1.44269504088896341f)));
  // x - fx * ln2 with ln2 = 0.693359375 - 2.12194440e-4 (the first part exact in float)
  V8 r = fnma(fx, splat(0.693359375f), x);
  r = fnma(fx, splat(-2.12194440e-4f), r);
  V8 p = splat(1.9875691500e-4f);
  p = fma(p, r, splat(1.3981999507e-3f));
  p = fma(p, r, splat(8.3334519073e-3f));
  p = fma(p, r, splat(4.1665795894e-2f));
  p = fma(p, r, splat(1.6666665459e-1f));
  p = fma(p, r, splat(5.0000001201e-1f));
  p = fma(p, mul(r, r), add(r, splat(1.0f)));
  return mul(p, pow2(fx));
}

C3_VEC8_INLINE V8 sigmoid8(V8 b) {
  const V8 one = splat(1.0f);
  return div(one, add(one, exp8(sub(zero(), b))));
}

inline float sigmoid1(float v) { return 1.0f / (1.0f + std::exp(-v)); }

// tanh(x) as Cephes' tanhf: below |x| = 0.625 an odd polynomial, x + x^3 P(x^2); above, 1 - 2 /
// (exp(2|x|) + 1) with x's sign (exp8's clamp makes it exactly 1 past |x| = 44; NaN stays NaN)
C3_VEC8_INLINE V8 tanh8(V8 x) {
  const V8 one = splat(1.0f);
  const V8 a = abs(x);
  const V8 s = mul(x, x);
  V8 p = splat(-5.70498872745e-3f);
  p = fma(p, s, splat(2.06390887954e-2f));
  p = fma(p, s, splat(-5.37397155531e-2f));
  p = fma(p, s, splat(1.33314422036e-1f));
  p = fma(p, s, splat(-3.33332819422e-1f));
  const V8 small = fma(mul(p, s), x, x);
  const V8 e = exp8(add(a, a));
  const V8 big = sub(one, div(splat(2.0f), add(e, one)));
  return select_lt(a, splat(0.625f), small, or_sign(big, x));
}

// f over n floats, 8 at a time; the last n % 8 through a zero-padded register, so every element
// gets the vector code's bits wherever a stretch starts or ends
template <V8 (*f)(V8)>
C3_VEC8_TARGET void map8(int64_t n, const float* x, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store(y + i, f(load(x + i)));
  if (i < n) {
    alignas(32) float buf[8] = {};
    for (int64_t j = i; j < n; ++j) buf[j - i] = x[j];
    store(buf, f(load(buf)));
    for (int64_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}

C3_VEC8_TARGET void tanh_forward(int64_t n, const float* x, float* y) { map8<tanh8>(n, x, y); }
C3_VEC8_TARGET void sigmoid_forward(int64_t n, const float* x, float* y) { map8<sigmoid8>(n, x, y); }

C3_VEC8_TARGET void glu_forward(int64_t n, const float* a, const float* b, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store(y + i, mul(load(a + i), sigmoid8(load(b + i))));
  for (; i < n; ++i) y[i] = a[i] * sigmoid1(b[i]);
}

C3_VEC8_TARGET void glu_backward(int64_t n, const float* g, const float* a, const float* b, float* da, float* db) {
  const V8 one = splat(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 s = sigmoid8(load(b + i)), gv = load(g + i);
    const V8 gas = mul(mul(gv, load(a + i)), s);
    store(da + i, mul(gv, s));
    store(db + i, mul(gas, sub(one, s)));
  }
  for (; i < n; ++i) {
    const float s = sigmoid1(b[i]);
    da[i] = g[i] * s;
    db[i] = g[i] * a[i] * s * (1.0f - s);
  }
}

// the coefficients of elements i .. i + 7: one broadcast value (step 0) or eight
struct Coef8 {
  V8 sa, ta, sb, tb;
};
C3_VEC8_INLINE Coef8 coef8(const AffinePair& c, int64_t i) {
  if (c.step == 0) return {broadcast(c.sa), broadcast(c.ta), broadcast(c.sb), broadcast(c.tb)};
  return {load(c.sa + i), load(c.ta + i), load(c.sb + i), load(c.tb + i)};
}

C3_VEC8_TARGET void affine_glu_forward(int64_t n, const float* xa, const float* xb, const AffinePair& c, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Coef8 k = coef8(c, i);
    const V8 za = fma(load(xa + i), k.sa, k.ta);
    const V8 zb = fma(load(xb + i), k.sb, k.tb);
    store(y + i, mul(za, sigmoid8(zb)));
  }
  for (int64_t j = i * c.step; i < n; ++i, j += c.step)
    y[i] = std::fma(xa[i], c.sa[j], c.ta[j]) * sigmoid1(std::fma(xb[i], c.sb[j], c.tb[j]));
}

C3_VEC8_TARGET void affine_glu_backward(int64_t n, const float* g, const float* xa, const float* xb,
                                        const AffinePair& c, float* dza, float* dzb) {
  const V8 one = splat(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Coef8 k = coef8(c, i);
    const V8 za = fma(load(xa + i), k.sa, k.ta);
    const V8 s = sigmoid8(fma(load(xb + i), k.sb, k.tb)), gv = load(g + i);
    store(dza + i, mul(gv, s));
    store(dzb + i, mul(mul(mul(gv, za), s), sub(one, s)));
  }
  for (int64_t j = i * c.step; i < n; ++i, j += c.step) {
    const float za = std::fma(xa[i], c.sa[j], c.ta[j]), s = sigmoid1(std::fma(xb[i], c.sb[j], c.tb[j]));
    dza[i] = g[i] * s;
    dzb[i] = g[i] * za * s * (1.0f - s);
  }
}

#ifdef C3_VEC8_X86
#define C3_AVX2 __attribute__((target("avx2,fma")))

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

const PointwiseKernels kAvx2 = {"avx2-fma",    glu_forward,    glu_backward,   relu_forward,
                                relu_backward, leaky_forward,  leaky_backward, tanh_forward,
                                sigmoid_forward, binary, affine_glu_forward, affine_glu_backward};
#endif  // C3_VEC8_X86

}  // namespace
#endif  // C3_VEC8

const PointwiseKernels* avx2_pointwise_kernels() {
#ifdef C3_VEC8_X86
  return vec8::available() ? &kAvx2 : nullptr;
#else
  return nullptr;
#endif
}

const PointwiseKernels* neon_pointwise_kernels() {
#ifdef C3_VEC8_NEON
  // the exp-based kernels on vectors, the rest the plain loops
  static const PointwiseKernels k = [] {
    PointwiseKernels t = portable_pointwise_kernels();
    t.name = "neon";
    t.glu_forward = glu_forward;
    t.glu_backward = glu_backward;
    t.tanh_forward = tanh_forward;
    t.sigmoid_forward = sigmoid_forward;
    t.affine_glu_forward = affine_glu_forward;
    t.affine_glu_backward = affine_glu_backward;
    return t;
  }();
  return &k;
#else
  return nullptr;
#endif
}

}  // namespace c3::cpu
