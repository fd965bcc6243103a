// Tests of the pointwise, row-wise, NT-Xent and grid-sample kernels on the backend under test:
// forward against float64 re-implementations written here, backward against central finite
// differences of sum(w * y) taken on those float64 forwards. At the end, CPU only: every fast path
// of the GLU, ReLU/LeakyReLU, binary and batch-norm kernels (each inner-loop table, one and two
// threads, odd lengths and tails) against the plain reference loops they keep.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <functional>
#include <string>
#include <vector>

#include "../core/threadpool.h"
#include "../cpu/kernels.h"
#include "../cpu/batchnorm_kernels.h"  // the plain reference loops and the inner-loop tables
#include "../cpu/pointwise_kernels.h"
#include "harness.h"

namespace {

using namespace c3;
using namespace c3::test;
using Vd = std::vector<double>;
using Vf = std::vector<float>;

Vd to_d(const Vf& v) { return Vd(v.begin(), v.end()); }

double max_abs(const Vd& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

double weighted_sum(const Vd& y, const Vf& w) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += w[i] * y[i];
  return s;
}

void expect_fwd(const Vf& got, const Vd& want, const std::string& what) {
  expect_close(got, want, 1e-5, 1e-6 * max_abs(want) + 1e-30, what);
}

// The kernel's gradient `got` against central differences of sum(w * f(x)) on the float64 f.
void expect_grad(const Vf& got, const Vf& x, const Vf& w, const std::function<Vd(const Vd&)>& f,
                 const std::string& what) {
  Vd want = numeric_grad(to_d(x), [&](const Vd& xd) { return weighted_sum(f(xd), w); });
  expect_close(got, want, 1e-3, 1e-4 * max_abs(want) + 1e-7, what);
}

// For inputs too large for one difference per element: the gradient's projection on a few
// random directions against the directional central difference.
void expect_grad_directional(const Vf& got, const Vf& x, const Vf& w, const std::function<Vd(const Vd&)>& f,
                             const std::string& what) {
  for (uint64_t k = 0; k < 3; ++k) {
    Vf v = random_vec(x.size(), 900 + k);
    const double h = 1e-6;
    Vd xp = to_d(x), xm = to_d(x);
    double proj = 0, scale = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      xp[i] += h * v[i], xm[i] -= h * v[i];
      proj += static_cast<double>(got[i]) * v[i];
      scale += std::fabs(static_cast<double>(got[i]) * v[i]);
    }
    const double want = (weighted_sum(f(xp), w) - weighted_sum(f(xm), w)) / (2 * h);
    expect_close(Vf{static_cast<float>(proj)}, Vd{want}, 1e-3, 1e-5 * scale + 1e-7,
                 what + " (direction " + std::to_string(k) + ")");
  }
}

// Moves values within `gap` of 0 out to +-gap, so finite differences never straddle a kink.
Vf away_from_zero(Vf v, float gap) {
  for (float& x : v)
    if (std::fabs(x) < gap) x = x < 0 ? -gap : gap;
  return v;
}

// ---- shapes and broadcast indices (numpy rules, shapes right-aligned) ----

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape pad_to(const Shape& s, size_t rank) {
  Shape p(rank - s.size(), 1);
  p.insert(p.end(), s.begin(), s.end());
  return p;
}

// element strides of `in` laid over `out` (same rank): 0 where in's dim is 1
void strides_over(const Shape& in, const Shape& out, int64_t* st) {
  int64_t s = 1;
  for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
    st[d] = in[d] == 1 ? 0 : s;
    s *= in[d];
  }
}

BroadcastIndex binary_index(const Shape& a, const Shape& b, Shape& out) {
  const size_t r = std::max(a.size(), b.size());
  const Shape pa = pad_to(a, r), pb = pad_to(b, r);
  out.assign(r, 1);
  for (size_t d = 0; d < r; ++d) out[d] = std::max(pa[d], pb[d]);
  BroadcastIndex idx{};
  idx.ndim = static_cast<int>(r);
  for (size_t d = 0; d < r; ++d) idx.shape[d] = out[d];
  strides_over(pa, out, idx.stride_a);
  strides_over(pb, out, idx.stride_b);
  return idx;
}

BroadcastIndex expand_index(const Shape& x, const Shape& out) {
  BroadcastIndex idx{};
  idx.ndim = static_cast<int>(out.size());
  for (size_t d = 0; d < out.size(); ++d) idx.shape[d] = out[d];
  strides_over(pad_to(x, out.size()), out, idx.stride_a);
  return idx;
}

BroadcastIndex sum_to_index(const Shape& x, const Shape& y) {
  BroadcastIndex idx{};
  idx.ndim = static_cast<int>(x.size());
  for (size_t d = 0; d < x.size(); ++d) idx.shape[d] = x[d];
  strides_over(pad_to(y, x.size()), x, idx.stride_a);
  return idx;
}

// Offset into `in` (padded to out's rank) of the element that out's flat index `i` reads,
// computed from coordinates and shapes rather than from the index's strides.
int64_t source_offset(const Shape& in_padded, const Shape& out, int64_t i) {
  int64_t off = 0, mul = 1;
  for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
    const int64_t c = i % out[d];
    i /= out[d];
    if (in_padded[d] != 1) off += c * mul;
    mul *= in_padded[d];
  }
  return off;
}

std::string shape_name(const Shape& s) { return shape_str(s); }

// ---- GLU ----

Vd glu_ref(const Vd& x, int64_t outer, int64_t half, int64_t inner) {
  Vd y(outer * half * inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t h = 0; h < half; ++h)
      for (int64_t i = 0; i < inner; ++i) {
        const double a = x[(o * 2 * half + h) * inner + i], b = x[(o * 2 * half + half + h) * inner + i];
        y[(o * half + h) * inner + i] = a / (1 + std::exp(-b));
      }
  return y;
}

void check_glu(const Backend& be, int64_t outer, int64_t half, int64_t inner, uint64_t seed) {
  const std::string what = "glu (" + std::to_string(outer) + ", " + std::to_string(half) + ", " +
                           std::to_string(inner) + ")";
  Vf x = random_vec(outer * 2 * half * inner, seed, -3, 3);
  Vf w = random_vec(outer * half * inner, seed + 1);
  Buf bx(be, x), by(be, w.size()), bw(be, w), bdx(be, x.size());
  be.glu_forward(outer, half, inner, bx.p(), by.p());
  expect_fwd(by.host(), glu_ref(to_d(x), outer, half, inner), what + " forward");
  be.glu_backward(outer, half, inner, bw.p(), bx.p(), bdx.p());
  expect_grad(bdx.host(), x, w, [&](const Vd& xd) { return glu_ref(xd, outer, half, inner); }, what + " backward");
}

C3_TEST(glu_forward_backward) {
  check_glu(be, 3, 4, 5, 10);
  check_glu(be, 5, 6, 1, 20);  // GLU over the last dim of a Linear output
  check_glu(be, 1, 3, 7, 30);
}

C3_TEST(glu_large) {
  const int64_t outer = 8, half = 32, inner = 256;
  Vf x = random_vec(outer * 2 * half * inner, 40, -4, 4);
  Buf bx(be, x), by(be, outer * half * inner);
  be.glu_forward(outer, half, inner, bx.p(), by.p());
  expect_fwd(by.host(), glu_ref(to_d(x), outer, half, inner), "glu large forward");
}

// ---- batch norm's affine then GLU (bn_glu_*) ----

struct BnGluCase {
  int64_t N, half, HW;
  Vf x, gamma, beta, mean, invstd;
  BnGluCase(int64_t n, int64_t h, int64_t hw, uint64_t seed) : N(n), half(h), HW(hw) {
    x = random_vec(N * 2 * half * HW, seed, -3, 3);
    gamma = random_vec(2 * half, seed + 1, 0.5f, 1.5f);
    beta = random_vec(2 * half, seed + 2);
    mean = random_vec(2 * half, seed + 3, -0.5f, 0.5f);
    invstd = random_vec(2 * half, seed + 4, 0.5f, 2.0f);
  }
  std::string name() const {
    return "bn_glu (" + std::to_string(N) + ", " + std::to_string(half) + ", " + std::to_string(HW) + ")";
  }
  // the normalised value of element i (channel c) in double
  double z(const Vd& xd, int64_t i) const {
    const int64_t c = i / HW % (2 * half);
    return (xd[i] - mean[c]) * static_cast<double>(invstd[c]) * gamma[c] + beta[c];
  }
  Vd forward(const Vd& xd) const {
    Vd y(N * half * HW);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < half * HW; ++j) {
        const int64_t a = n * 2 * half * HW + j, b = a + half * HW;
        y[n * half * HW + j] = z(xd, a) / (1 + std::exp(-z(xd, b)));
      }
    return y;
  }
};

C3_TEST(bn_glu_forward_backward) {
  const int64_t shapes[][3] = {{3, 4, 20}, {5, 6, 1}, {2, 3, 7}, {2, 8, 64}};
  uint64_t seed = 3000;
  for (auto& sh : shapes) {
    const BnGluCase t(sh[0], sh[1], sh[2], seed += 10);
    const int64_t n = t.N * t.half * t.HW;
    Vf w = random_vec(n, seed + 5);
    Buf bx(be, t.x), bg(be, t.gamma), bb(be, t.beta), bm(be, t.mean), bi(be, t.invstd), by(be, n), bw(be, w),
        bdx(be, 2 * n);
    be.bn_glu_forward(t.N, t.half, t.HW, bx.p(), bg.p(), bb.p(), bm.p(), bi.p(), by.p());
    expect_fwd(by.host(), t.forward(to_d(t.x)), t.name() + " forward");
    // with the statistics fixed (batch norm's eval backward): dz (the CPU kernel, on the host) is
    // the gradient at the normalised values, d/dx = dz * gamma * invstd, and dx that gradient
    be.bn_glu_batchnorm_backward(t.N, t.half, t.HW, false, bw.p(), bx.p(), bg.p(), bb.p(), bm.p(), bi.p(), bdx.p(),
                                 nullptr, nullptr);
    Vf dx(2 * n);
    cpu::bn_glu_backward(t.N, t.half, t.HW, w.data(), t.x.data(), t.gamma.data(), t.beta.data(), t.mean.data(),
                         t.invstd.data(), dx.data());
    for (size_t i = 0; i < dx.size(); ++i) {
      const int64_t c = static_cast<int64_t>(i) / t.HW % (2 * t.half);
      dx[i] = static_cast<float>(dx[i] * static_cast<double>(t.gamma[c]) * t.invstd[c]);
    }
    const auto f = [&](const Vd& xd) { return t.forward(xd); };
    expect_grad(dx, t.x, w, f, t.name() + " backward (dz)");
    expect_grad(bdx.host(), t.x, w, f, t.name() + " backward (dx)");
  }
}

// ---- unary ----

double unary_ref(UnaryOp op, double x, double alpha) {
  switch (op) {
    case UnaryOp::Relu: return x > 0 ? x : 0;
    case UnaryOp::LeakyRelu: return x > 0 ? x : alpha * x;
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sigmoid: return 1 / (1 + std::exp(-x));
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Neg: return -x;
    case UnaryOp::Square: return x * x;
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Abs: return std::fabs(x);
  }
  return 0;
}

Vd unary_ref(UnaryOp op, const Vd& x, double alpha) {
  Vd y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = unary_ref(op, x[i], alpha);
  return y;
}

void check_unary(const Backend& be, UnaryOp op, const char* name, float lo, float hi, uint64_t seed) {
  const float alpha = 0.2f;
  Vf x = away_from_zero(random_vec(1000, seed, lo, hi), 0.01f);
  Vf w = random_vec(x.size(), seed + 1);
  Buf bx(be, x), by(be, x.size()), bw(be, w), bdx(be, x.size());
  be.unary_forward(op, x.size(), bx.p(), alpha, by.p());
  expect_fwd(by.host(), unary_ref(op, to_d(x), alpha), std::string(name) + " forward");
  be.unary_backward(op, x.size(), bw.p(), bx.p(), by.p(), alpha, bdx.p());
  expect_grad(bdx.host(), x, w, [&](const Vd& xd) { return unary_ref(op, xd, alpha); },
              std::string(name) + " backward");
}

C3_TEST(unary_relu) { check_unary(be, UnaryOp::Relu, "relu", -2, 2, 100); }
C3_TEST(unary_leaky_relu) { check_unary(be, UnaryOp::LeakyRelu, "leaky_relu", -2, 2, 110); }
C3_TEST(unary_tanh) { check_unary(be, UnaryOp::Tanh, "tanh", -3, 3, 120); }
C3_TEST(unary_sigmoid) { check_unary(be, UnaryOp::Sigmoid, "sigmoid", -6, 6, 130); }
C3_TEST(unary_exp) { check_unary(be, UnaryOp::Exp, "exp", -3, 3, 140); }
C3_TEST(unary_log) { check_unary(be, UnaryOp::Log, "log", 0.2f, 3, 150); }
C3_TEST(unary_neg) { check_unary(be, UnaryOp::Neg, "neg", -2, 2, 160); }
C3_TEST(unary_square) { check_unary(be, UnaryOp::Square, "square", -2, 2, 170); }
C3_TEST(unary_sqrt) { check_unary(be, UnaryOp::Sqrt, "sqrt", 0.2f, 3, 180); }
C3_TEST(unary_abs) { check_unary(be, UnaryOp::Abs, "abs", -2, 2, 190); }

// PyTorch's choices at the kinks: relu' (0) = 0, leaky' (0) = alpha, abs' (0) = 0.
C3_TEST(unary_kinks_at_zero) {
  const float alpha = 0.2f;
  Vf x = {0.0f, -0.0f, 1.5f, -1.5f}, dy = {1.0f, 1.0f, 1.0f, 1.0f};
  struct Want {
    UnaryOp op;
    const char* name;
    Vd y, dx;
  };
  const Want cases[] = {
      {UnaryOp::Relu, "relu", {0, 0, 1.5, 0}, {0, 0, 1, 0}},
      {UnaryOp::LeakyRelu, "leaky_relu", {0, 0, 1.5, -0.3}, {alpha, alpha, 1, alpha}},
      {UnaryOp::Abs, "abs", {0, 0, 1.5, 1.5}, {0, 0, 1, -1}},
  };
  for (const Want& c : cases) {
    Buf bx(be, x), by(be, x.size()), bdy(be, dy), bdx(be, x.size());
    be.unary_forward(c.op, x.size(), bx.p(), alpha, by.p());
    expect_close(by.host(), c.y, 1e-6, 1e-7, std::string(c.name) + " forward at 0");
    be.unary_backward(c.op, x.size(), bdy.p(), bx.p(), by.p(), alpha, bdx.p());
    expect_close(bdx.host(), c.dx, 1e-6, 1e-7, std::string(c.name) + " gradient at 0");
  }
}

C3_TEST(unary_large) {
  const size_t n = 200003;  // several tasks and a ragged end
  Vf x = random_vec(n, 200, -3, 3), dy = random_vec(n, 201);
  for (UnaryOp op : {UnaryOp::LeakyRelu, UnaryOp::Tanh, UnaryOp::Sigmoid}) {
    Buf bx(be, x), by(be, n), bdy(be, dy), bdx(be, n);
    be.unary_forward(op, n, bx.p(), 0.2f, by.p());
    Vf y = by.host();
    expect_fwd(y, unary_ref(op, to_d(x), 0.2), "large unary forward");
    be.unary_backward(op, n, bdy.p(), bx.p(), by.p(), 0.2f, bdx.p());
    Vd want(n);
    for (size_t i = 0; i < n; ++i) {
      const double yi = y[i];
      want[i] = op == UnaryOp::LeakyRelu ? (x[i] > 0 ? dy[i] : 0.2 * dy[i])
                : op == UnaryOp::Tanh    ? dy[i] * (1 - yi * yi)
                                         : dy[i] * yi * (1 - yi);
    }
    expect_close(bdx.host(), want, 1e-5, 1e-6, "large unary backward");
  }
}

// ---- binary with broadcasting ----

double binary_ref(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0;
}

// b away from 0 (for div): magnitudes in [0.5, 1.5], alternating sign
Vf divisor_vec(size_t n, uint64_t seed) {
  Vf v = random_vec(n, seed, 0.5f, 1.5f);
  for (size_t i = 0; i < n; i += 2) v[i] = -v[i];
  return v;
}

void check_binary(const Backend& be, const Shape& sa, const Shape& sb, uint64_t seed) {
  Shape out;
  const BroadcastIndex idx = binary_index(sa, sb, out);
  const Shape pa = pad_to(sa, out.size()), pb = pad_to(sb, out.size());
  const int64_t n = numel(out);
  Vf a = random_vec(numel(sa), seed, -2, 2), b = divisor_vec(numel(sb), seed + 1);
  const char* names[] = {"add", "sub", "mul", "div"};
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
    const std::string what = std::string(names[static_cast<int>(op)]) + " " + shape_name(sa) + " with " +
                             shape_name(sb);
    Vd want(n);
    for (int64_t i = 0; i < n; ++i)
      want[i] = binary_ref(op, a[source_offset(pa, out, i)], b[source_offset(pb, out, i)]);
    Buf ba(be, a), bb(be, b), by(be, n);
    be.binary_forward(op, idx, ba.p(), bb.p(), by.p());
    expect_fwd(by.host(), want, what);
    Vf ref(n);
    cpu::binary_forward_reference(op, idx, a.data(), b.data(), ref.data());
    expect_fwd(ref, want, what + " (reference loop)");
  }
}

C3_TEST(binary_same_shape) {
  check_binary(be, {3, 4, 5}, {3, 4, 5}, 300);
  check_binary(be, {7}, {7}, 301);
}
C3_TEST(binary_scalar) {
  check_binary(be, {3, 4, 5}, {}, 310);
  check_binary(be, {3, 4, 5}, {1}, 311);
  check_binary(be, {}, {2, 7}, 312);
  check_binary(be, {1, 1}, {2, 7}, 313);
  check_binary(be, {}, {}, 314);
}
C3_TEST(binary_row) {
  check_binary(be, {6, 5}, {5}, 320);
  check_binary(be, {6, 5}, {1, 5}, 321);
  check_binary(be, {1, 5}, {6, 5}, 322);
}
C3_TEST(binary_column) {
  check_binary(be, {6, 5}, {6, 1}, 330);
  check_binary(be, {6, 1}, {6, 5}, 331);
}
C3_TEST(binary_per_channel) {
  check_binary(be, {2, 3, 4, 5}, {1, 3, 1, 1}, 340);
  check_binary(be, {2, 3, 4, 5}, {3, 1, 1}, 341);
  check_binary(be, {1, 3, 1, 1}, {2, 3, 4, 5}, 342);
  check_binary(be, {2, 3, 4, 5}, {2, 3, 1, 1}, 343);  // per sample and channel
}
C3_TEST(binary_both_sides) {
  check_binary(be, {4, 1}, {1, 5}, 350);
  check_binary(be, {2, 1, 4, 1}, {1, 3, 1, 5}, 351);
  check_binary(be, {3, 1, 2}, {4, 1}, 352);
  check_binary(be, {2, 1, 3, 1, 2, 1}, {1, 2, 1, 3, 1, 2}, 353);
}
C3_TEST(binary_large) {
  check_binary(be, {300007}, {300007}, 360);
  check_binary(be, {16, 32, 16, 16}, {1, 32, 1, 1}, 361);
  check_binary(be, {512, 300}, {512, 1}, 362);
  check_binary(be, {512, 300}, {300}, 363);
  check_binary(be, {40000, 7}, {1}, 364);
}

// ---- expand and sum_to ----

void check_expand(const Backend& be, const Shape& sx, const Shape& out, uint64_t seed) {
  const std::string what = "expand " + shape_name(sx) + " to " + shape_name(out);
  const BroadcastIndex idx = expand_index(sx, out);
  const Shape px = pad_to(sx, out.size());
  const int64_t n = numel(out);
  Vf x = random_vec(numel(sx), seed);
  Vd want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = x[source_offset(px, out, i)];
  Buf bx(be, x), by(be, n);
  be.expand(idx, bx.p(), by.p());
  expect_close(by.host(), want, 0, 0, what);
  Vf ref(n);
  cpu::expand_reference(idx, x.data(), ref.data());
  expect_close(ref, want, 0, 0, what + " (reference loop)");
}

C3_TEST(expand_patterns) {
  check_expand(be, {1, 5}, {6, 5}, 400);
  check_expand(be, {5}, {6, 5}, 401);
  check_expand(be, {6, 1}, {6, 5}, 402);
  check_expand(be, {}, {2, 3, 4}, 403);
  check_expand(be, {1}, {2, 3, 4}, 404);
  check_expand(be, {3, 1, 1}, {2, 3, 4, 5}, 405);
  check_expand(be, {2, 1, 4, 1}, {2, 3, 4, 5}, 406);
  check_expand(be, {2, 3, 4}, {2, 3, 4}, 407);
  check_expand(be, {3, 1, 2}, {4, 3, 5, 2}, 408);
}
C3_TEST(expand_large) {
  check_expand(be, {1, 64, 1, 1}, {8, 64, 32, 32}, 410);
  check_expand(be, {300}, {700, 300}, 411);
  check_expand(be, {700, 1}, {700, 300}, 412);
}

void check_sum_to(const Backend& be, const Shape& sx, const Shape& sy, uint64_t seed, float lo = -1, float hi = 1) {
  const std::string what = "sum_to " + shape_name(sx) + " to " + shape_name(sy);
  const BroadcastIndex idx = sum_to_index(sx, sy);
  const Shape py = pad_to(sy, sx.size());
  const int64_t nx = numel(sx), ny = numel(sy);
  Vf x = random_vec(nx, seed, lo, hi);
  Vd want(ny, 0.0);
  double mass = 0;
  for (int64_t i = 0; i < nx; ++i) want[source_offset(py, sx, i)] += x[i], mass += std::fabs(x[i]);
  Buf bx(be, x), by(be, ny);
  be.fill(by.p(), ny, 123.0f);  // must be overwritten, not added to
  be.sum_to(idx, bx.p(), by.p(), ny);
  // an accurate sum: relative to the summed magnitudes, far tighter than float accumulation
  expect_close(by.host(), want, 1e-5, 1e-6 * mass / ny, what);
  if (nx <= 4096) {
    Vf ref(ny);
    cpu::sum_to_reference(idx, x.data(), ref.data(), ny);
    expect_close(ref, want, 1e-5, 1e-5 * mass / ny, what + " (reference loop)");
  }
}

C3_TEST(sum_to_patterns) {
  check_sum_to(be, {6, 5}, {1, 5}, 500);
  check_sum_to(be, {6, 5}, {5}, 501);
  check_sum_to(be, {6, 5}, {6, 1}, 502);
  check_sum_to(be, {2, 3, 4, 5}, {1, 3, 1, 1}, 503);
  check_sum_to(be, {2, 3, 4, 5}, {3, 1, 1}, 504);
  check_sum_to(be, {2, 3, 4, 5}, {1, 1, 1, 1}, 505);
  check_sum_to(be, {2, 3, 4, 5}, {}, 506);
  check_sum_to(be, {2, 3, 4, 5}, {2, 1, 4, 1}, 507);
  check_sum_to(be, {2, 3, 4, 5}, {1, 3, 1, 5}, 508);
  check_sum_to(be, {2, 3, 4, 5}, {2, 3, 1, 1}, 509);
  check_sum_to(be, {2, 3, 4}, {2, 3, 4}, 510);
  check_sum_to(be, {2, 1, 3, 1, 2, 3}, {1, 1, 3, 1, 1, 3}, 511);
  check_sum_to(be, {}, {}, 512);
  check_sum_to(be, {1, 1, 6}, {1, 1, 1}, 513);
}
C3_TEST(sum_to_large) {
  // all-positive values: a float running sum over 64K terms would be off by ~1e-4 relative
  check_sum_to(be, {64, 16, 32, 32}, {1, 16, 1, 1}, 520, 0.5f, 1.5f);
  check_sum_to(be, {4096, 300}, {1, 300}, 521, 0.5f, 1.5f);  // inner dim kept, chunked
  check_sum_to(be, {300, 4096}, {300, 1}, 522, 0.5f, 1.5f);
  check_sum_to(be, {1 << 20}, {1}, 523, 0.5f, 1.5f);
  check_sum_to(be, {8, 16, 64, 64}, {8, 16, 1, 1}, 524);
}

// sum_to is expand's adjoint: <expand(u), v> = <u, sum_to(v)>
C3_TEST(sum_to_adjoint_of_expand) {
  const Shape sy = {1, 3, 1, 5}, sx = {2, 3, 4, 5};
  Vf u = random_vec(numel(sy), 530), v = random_vec(numel(sx), 531);
  Buf bu(be, u), bv(be, v), bexp(be, numel(sx)), bsum(be, numel(sy));
  be.expand(expand_index(sy, sx), bu.p(), bexp.p());
  be.sum_to(sum_to_index(sx, sy), bv.p(), bsum.p(), numel(sy));
  Vf e = bexp.host(), s = bsum.host();
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < v.size(); ++i) lhs += static_cast<double>(e[i]) * v[i];
  for (size_t i = 0; i < u.size(); ++i) rhs += static_cast<double>(u[i]) * s[i];
  expect_close(Vf{static_cast<float>(lhs)}, Vd{rhs}, 1e-5, 1e-6, "<expand(u), v> vs <u, sum_to(v)>");
}

// Reductions sum in a fixed order per output: the same bits for any thread count.
C3_TEST(sum_to_thread_count_invariant) {
  struct Restore {
    int n = num_threads();
    ~Restore() { set_num_threads(n); }
  } restore;
  const Shape sx = {16, 64, 32, 32}, sy = {1, 64, 1, 1};
  Vf x = random_vec(numel(sx), 540);
  std::vector<Vf> results;
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    Buf bx(be, x), by(be, numel(sy));
    be.sum_to(sum_to_index(sx, sy), bx.p(), by.p(), numel(sy));
    results.push_back(by.host());
  }
  expect_true(results[0] == results[1], "sum_to differs between 1 and 3 threads");
}

// ---- l2norm ----

struct L2Ref {
  Vd y, norms;
};
L2Ref l2norm_ref(const Vd& x, int64_t N, int64_t D, double eps) {
  L2Ref r{Vd(N * D), Vd(N)};
  for (int64_t i = 0; i < N; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < D; ++j) ss += x[i * D + j] * x[i * D + j];
    r.norms[i] = std::sqrt(ss);
    for (int64_t j = 0; j < D; ++j) r.y[i * D + j] = x[i * D + j] / std::max(r.norms[i], eps);
  }
  return r;
}

void check_l2norm(const Backend& be, const Vf& x, int64_t N, int64_t D, float eps, const std::string& what) {
  Vf w = random_vec(x.size(), 600);
  Buf bx(be, x), by(be, x.size()), bn(be, N), bw(be, w), bdx(be, x.size());
  be.l2norm_forward(N, D, bx.p(), eps, by.p(), bn.p());
  const L2Ref ref = l2norm_ref(to_d(x), N, D, eps);
  expect_fwd(by.host(), ref.y, what + " forward");
  expect_fwd(bn.host(), ref.norms, what + " norms");
  be.l2norm_backward(N, D, bw.p(), bx.p(), bn.p(), eps, bdx.p());
  expect_grad(bdx.host(), x, w, [&](const Vd& xd) { return l2norm_ref(xd, N, D, eps).y; }, what + " backward");
}

C3_TEST(l2norm_forward_backward) {
  check_l2norm(be, random_vec(5 * 7, 610), 5, 7, 1e-12f, "l2norm (5, 7)");
  check_l2norm(be, random_vec(3 * 1, 611), 3, 1, 1e-12f, "l2norm (3, 1)");
}

// A zero row: y = 0, norm 0, and the gradient through the constant divisor eps is dy / eps.
C3_TEST(l2norm_zero_row) {
  const int64_t N = 4, D = 6;
  Vf x = random_vec(N * D, 620);
  for (int64_t j = 0; j < D; ++j) x[2 * D + j] = 0.0f;
  // eps above the finite-difference step, so the differences stay on the clamped branch
  check_l2norm(be, x, N, D, 1e-3f, "l2norm zero row, eps 1e-3");
  const float eps = 1e-12f;
  Vf dy = random_vec(N * D, 621);
  Buf bx(be, x), by(be, N * D), bn(be, N), bdy(be, dy), bdx(be, N * D);
  be.l2norm_forward(N, D, bx.p(), eps, by.p(), bn.p());
  Vf y = by.host(), nrm = bn.host(), dx;
  expect_true(nrm[2] == 0.0f, "l2norm zero row: norm is " + std::to_string(nrm[2]));
  for (int64_t j = 0; j < D; ++j) expect_true(y[2 * D + j] == 0.0f, "l2norm zero row: y is not 0");
  be.l2norm_backward(N, D, bdy.p(), bx.p(), bn.p(), eps, bdx.p());
  dx = bdx.host();
  Vf got(dx.begin() + 2 * D, dx.begin() + 3 * D);
  Vd want(D);
  for (int64_t j = 0; j < D; ++j) want[j] = dy[2 * D + j] / static_cast<double>(eps);
  expect_close(got, want, 1e-5, 0, "l2norm zero row gradient dy / eps");
}

C3_TEST(l2norm_large) {
  const int64_t N = 300, D = 128;
  Vf x = random_vec(N * D, 630);
  Buf bx(be, x), by(be, N * D), bn(be, N);
  be.l2norm_forward(N, D, bx.p(), 1e-12f, by.p(), bn.p());
  const L2Ref ref = l2norm_ref(to_d(x), N, D, 1e-12);
  expect_fwd(by.host(), ref.y, "l2norm large forward");
  expect_fwd(bn.host(), ref.norms, "l2norm large norms");
}

// ---- softmax / log-softmax ----

Vd softmax_ref(const Vd& x, int64_t N, int64_t D, bool log) {
  Vd y(N * D);
  for (int64_t i = 0; i < N; ++i) {
    const double* r = &x[i * D];
    const double m = *std::max_element(r, r + D);
    double s = 0;
    for (int64_t j = 0; j < D; ++j) s += std::exp(r[j] - m);
    for (int64_t j = 0; j < D; ++j) y[i * D + j] = log ? r[j] - m - std::log(s) : std::exp(r[j] - m) / s;
  }
  return y;
}

void check_softmax(const Backend& be, bool log, uint64_t seed) {
  const int64_t N = 5, D = 7;
  const std::string what = log ? "log_softmax" : "softmax";
  Vf x = random_vec(N * D, seed, -3, 3), w = random_vec(N * D, seed + 1);
  Buf bx(be, x), by(be, N * D), bw(be, w), bdx(be, N * D);
  be.softmax_forward(N, D, bx.p(), log, by.p());
  expect_fwd(by.host(), softmax_ref(to_d(x), N, D, log), what + " forward");
  be.softmax_backward(N, D, bw.p(), by.p(), log, bdx.p());
  expect_grad(bdx.host(), x, w, [&](const Vd& xd) { return softmax_ref(xd, N, D, log); }, what + " backward");
}

C3_TEST(softmax_forward_backward) { check_softmax(be, false, 700); }
C3_TEST(softmax_log_forward_backward) { check_softmax(be, true, 710); }

// rows far from 0 overflow or underflow exp unless the row max is subtracted first
C3_TEST(softmax_extreme_rows) {
  const int64_t N = 3, D = 6;
  Vf x = random_vec(N * D, 720, -3, 3);
  for (int64_t j = 0; j < D; ++j) x[D + j] += 200.0f, x[2 * D + j] -= 1000.0f;
  for (bool log : {false, true}) {
    Buf bx(be, x), by(be, N * D);
    be.softmax_forward(N, D, bx.p(), log, by.p());
    expect_close(by.host(), softmax_ref(to_d(x), N, D, log), 1e-5, 1e-6, log ? "log_softmax extreme" : "softmax extreme");
  }
}

C3_TEST(softmax_large) {
  const int64_t N = 300, D = 100;
  Vf x = random_vec(N * D, 730, -5, 5);
  for (bool log : {false, true}) {
    Buf bx(be, x), by(be, N * D);
    be.softmax_forward(N, D, bx.p(), log, by.p());
    expect_close(by.host(), softmax_ref(to_d(x), N, D, log), 1e-5, 1e-7, "softmax large");
  }
}

// ---- cross-entropy ----

double xent_ref(const Vd& x, int64_t N, int64_t D, const std::vector<int32_t>& t) {
  const Vd ls = softmax_ref(x, N, D, true);
  double s = 0;
  for (int64_t i = 0; i < N; ++i) s -= ls[i * D + t[i]];
  return s / N;
}

void check_xent(const Backend& be, int64_t N, int64_t D, uint64_t seed, bool grad) {
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = static_cast<int32_t>((i * 7 + 3) % D);
  Vf x = random_vec(N * D, seed, -4, 4);
  const float dloss = 0.7f;
  Buf bx(be, x), bloss(be, 1), bp(be, N * D), bdl(be, Vf{dloss}), bdx(be, N * D);
  IntBuf bt(be, t);
  be.cross_entropy_forward(N, D, bx.p(), bt.p(), bloss.p(), bp.p());
  expect_fwd(bloss.host(), Vd{xent_ref(to_d(x), N, D, t)}, "cross_entropy loss");
  expect_close(bp.host(), softmax_ref(to_d(x), N, D, false), 1e-5, 1e-7, "cross_entropy probs");
  be.cross_entropy_backward(N, D, bp.p(), bt.p(), bdl.p(), bdx.p());
  if (grad) {
    expect_grad(bdx.host(), x, Vf{dloss}, [&](const Vd& xd) { return Vd{xent_ref(xd, N, D, t)}; },
                "cross_entropy backward");
  } else {
    expect_grad_directional(bdx.host(), x, Vf{dloss}, [&](const Vd& xd) { return Vd{xent_ref(xd, N, D, t)}; },
                            "cross_entropy backward");
  }
}

C3_TEST(xent_forward_backward) {
  check_xent(be, 6, 5, 800, true);
  check_xent(be, 1, 3, 801, true);
}
C3_TEST(xent_large) { check_xent(be, 256, 200, 810, false); }

// ---- NT-Xent ----

struct NtRef {
  double loss;
  Vd z, norms, p;
};

// The SimCLR construction as written: per row, logits = [positive, the 2N-2 negatives] and
// cross-entropy with target 0; p is the softmax laid back over the row's columns.
NtRef ntxent_ref(const Vd& x, int64_t N2, int64_t D, double T) {
  const L2Ref l2 = l2norm_ref(x, N2, D, 1e-12);
  NtRef r{0, l2.y, l2.norms, Vd(N2 * N2, 0.0)};
  for (int64_t i = 0; i < N2; ++i) {
    const int64_t pos = (i + N2 / 2) % N2;
    auto sim = [&](int64_t c) {
      double s = 0;
      for (int64_t j = 0; j < D; ++j) s += r.z[i * D + j] * r.z[c * D + j];
      return s / T;
    };
    std::vector<double> logits = {sim(pos)};
    for (int64_t c = 0; c < N2; ++c)
      if (c != i && c != pos) logits.push_back(sim(c));
    const double m = *std::max_element(logits.begin(), logits.end());
    double s = 0;
    for (double l : logits) s += std::exp(l - m);
    const double lse = m + std::log(s);
    r.loss += (lse - logits[0]) / N2;
    for (int64_t c = 0; c < N2; ++c)
      if (c != i) r.p[i * N2 + c] = std::exp(sim(c) - lse);
  }
  return r;
}

void check_ntxent(const Backend& be, int64_t N2, int64_t D, float T, uint64_t seed, bool full_grad) {
  const std::string what = "ntxent 2N=" + std::to_string(N2) + " D=" + std::to_string(D) + " T=" + std::to_string(T);
  Vf x = random_vec(N2 * D, seed, -1, 1);
  const float dloss = 1.3f;
  Buf bx(be, x), bloss(be, 1), bz(be, N2 * D), bn(be, N2), bp(be, N2 * N2), bdl(be, Vf{dloss}), bdx(be, N2 * D);
  be.ntxent_forward(N2, D, bx.p(), T, bloss.p(), bz.p(), bn.p(), bp.p());
  const NtRef ref = ntxent_ref(to_d(x), N2, D, T);
  expect_fwd(bloss.host(), Vd{ref.loss}, what + " loss");
  expect_fwd(bz.host(), ref.z, what + " z");
  expect_fwd(bn.host(), ref.norms, what + " norms");
  expect_close(bp.host(), ref.p, 1e-4, 1e-7, what + " p");
  be.ntxent_backward(N2, D, bdl.p(), bx.p(), bz.p(), bn.p(), bp.p(), T, bdx.p());
  auto f = [&](const Vd& xd) { return Vd{ntxent_ref(xd, N2, D, T).loss}; };
  if (full_grad)
    expect_grad(bdx.host(), x, Vf{dloss}, f, what + " backward");
  else
    expect_grad_directional(bdx.host(), x, Vf{dloss}, f, what + " backward");
}

C3_TEST(ntxent_forward_backward) {
  uint64_t seed = 900;
  for (int64_t N2 : {4, 8, 16})
    for (int64_t D : {3, 16})
      for (float T : {0.1f, 0.5f}) check_ntxent(be, N2, D, T, seed++, true);
}

C3_TEST(ntxent_large) { check_ntxent(be, 128, 32, 0.1f, 950, false); }

C3_TEST(ntxent_thread_count_invariant) {
  struct Restore {
    int n = num_threads();
    ~Restore() { set_num_threads(n); }
  } restore;
  const int64_t N2 = 128, D = 32;
  Vf x = random_vec(N2 * D, 960);
  std::vector<Vf> loss, dx;
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    Buf bx(be, x), bl(be, 1), bz(be, N2 * D), bn(be, N2), bp(be, N2 * N2), bdl(be, Vf{1.0f}), bdx(be, N2 * D);
    be.ntxent_forward(N2, D, bx.p(), 0.1f, bl.p(), bz.p(), bn.p(), bp.p());
    be.ntxent_backward(N2, D, bdl.p(), bx.p(), bz.p(), bn.p(), bp.p(), 0.1f, bdx.p());
    loss.push_back(bl.host());
    dx.push_back(bdx.host());
  }
  expect_true(loss[0] == loss[1] && dx[0] == dx[1], "ntxent differs between 1 and 3 threads");
}

// ---- affine_grid ----

double base_ref(int64_t i, int64_t n) { return n > 1 ? -1.0 + 2.0 * i / (n - 1) : 0.0; }

Vd affine_grid_ref(const Vd& th, int64_t N, int64_t H, int64_t W) {
  Vd g(N * H * W * 2);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        const double x = base_ref(j, W), y = base_ref(i, H);
        const double* t = &th[n * 6];
        g[((n * H + i) * W + j) * 2] = t[0] * x + t[1] * y + t[2];
        g[((n * H + i) * W + j) * 2 + 1] = t[3] * x + t[4] * y + t[5];
      }
  return g;
}

void check_affine_grid(const Backend& be, int64_t N, int64_t H, int64_t W, uint64_t seed) {
  const std::string what = "affine_grid (" + std::to_string(N) + ", " + std::to_string(H) + ", " +
                           std::to_string(W) + ")";
  Vf th = random_vec(N * 6, seed), w = random_vec(N * H * W * 2, seed + 1);
  Buf bt(be, th), bg(be, w.size()), bw(be, w), bdt(be, N * 6);
  be.affine_grid_forward(N, H, W, bt.p(), bg.p());
  expect_fwd(bg.host(), affine_grid_ref(to_d(th), N, H, W), what + " forward");
  be.affine_grid_backward(N, H, W, bw.p(), bdt.p());
  expect_grad(bdt.host(), th, w, [&](const Vd& t) { return affine_grid_ref(t, N, H, W); }, what + " backward");
}

C3_TEST(affine_grid_forward_backward) {
  check_affine_grid(be, 2, 3, 4, 1000);
  check_affine_grid(be, 1, 1, 5, 1010);
  check_affine_grid(be, 2, 4, 1, 1020);
  check_affine_grid(be, 3, 64, 48, 1030);
}

// ---- grid_sample ----

struct GsDims {
  int64_t N, C, H, W, OH, OW;
};

Vd grid_sample_ref(const Vd& x, const Vd& grid, const GsDims& d) {
  Vd y(d.N * d.C * d.OH * d.OW, 0.0);
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t oh = 0; oh < d.OH; ++oh)
      for (int64_t ow = 0; ow < d.OW; ++ow) {
        const double* g = &grid[((n * d.OH + oh) * d.OW + ow) * 2];
        const double ix = (g[0] + 1) / 2 * (d.W - 1), iy = (g[1] + 1) / 2 * (d.H - 1);
        const double fx = std::floor(ix), fy = std::floor(iy);
        for (int k = 0; k < 4; ++k) {
          const int64_t xx = static_cast<int64_t>(fx) + (k & 1), yy = static_cast<int64_t>(fy) + (k >> 1);
          if (xx < 0 || xx >= d.W || yy < 0 || yy >= d.H) continue;
          const double wgt = (1 - std::fabs(ix - xx)) * (1 - std::fabs(iy - yy));
          for (int64_t c = 0; c < d.C; ++c)
            y[((n * d.C + c) * d.OH + oh) * d.OW + ow] += wgt * x[((n * d.C + c) * d.H + yy) * d.W + xx];
        }
      }
  return y;
}

struct GsRun {
  Vf y, dx, dgrid;
};
GsRun run_grid_sample(const Backend& be, const GsDims& d, const Vf& x, const Vf& grid, const Vf& dy, bool want_dx,
                      bool want_dgrid) {
  Buf bx(be, x), bg(be, grid), by(be, d.N * d.C * d.OH * d.OW), bdy(be, dy), bdx(be, x.size()),
      bdg(be, grid.size());
  be.grid_sample_forward(d.N, d.C, d.H, d.W, d.OH, d.OW, bx.p(), bg.p(), by.p());
  be.grid_sample_backward(d.N, d.C, d.H, d.W, d.OH, d.OW, bdy.p(), bx.p(), bg.p(), want_dx ? bdx.p() : nullptr,
                          want_dgrid ? bdg.p() : nullptr);
  return {by.host(), bdx.host(), bdg.host()};
}

void check_grid_sample(const Backend& be, const GsDims& d, float reach, uint64_t seed, bool full_grad) {
  const std::string what = "grid_sample (" + std::to_string(d.N) + "," + std::to_string(d.C) + "," +
                           std::to_string(d.H) + "," + std::to_string(d.W) + ") -> " + std::to_string(d.OH) + "x" +
                           std::to_string(d.OW);
  Vf x = random_vec(d.N * d.C * d.H * d.W, seed);
  Vf grid = random_vec(d.N * d.OH * d.OW * 2, seed + 1, -reach, reach);
  Vf w = random_vec(d.N * d.C * d.OH * d.OW, seed + 2);
  const GsRun r = run_grid_sample(be, d, x, grid, w, true, true);
  // the source index is computed in float (as PyTorch does): its rounding, up to ~1e-7 * size
  // pixels, moves the weights by as much
  const Vd want = grid_sample_ref(to_d(x), to_d(grid), d);
  expect_close(r.y, want, 1e-5, 2e-7 * std::max(d.H, d.W) * max_abs(to_d(x)), what + " forward");
  auto fx = [&](const Vd& xd) { return grid_sample_ref(xd, to_d(grid), d); };
  auto fg = [&](const Vd& gd) { return grid_sample_ref(to_d(x), gd, d); };
  if (full_grad) {
    expect_grad(r.dx, x, w, fx, what + " dx");
    expect_grad(r.dgrid, grid, w, fg, what + " dgrid");
  } else {
    expect_grad_directional(r.dx, x, w, fx, what + " dx");
    expect_grad_directional(r.dgrid, grid, w, fg, what + " dgrid");
  }
}

// grid points up to 1.3 reach past the borders: neighbours out of range count as zeros
C3_TEST(grid_sample_forward_backward) {
  check_grid_sample(be, {2, 3, 5, 6, 4, 7}, 1.3f, 1100, true);
  check_grid_sample(be, {1, 2, 4, 4, 6, 3}, 2.5f, 1110, true);  // many points wholly outside
  check_grid_sample(be, {1, 2, 1, 5, 3, 3}, 1.2f, 1120, true);  // H == 1
}

C3_TEST(grid_sample_large) { check_grid_sample(be, {4, 16, 32, 32, 32, 32}, 1.1f, 1130, false); }

// Points exactly on pixel centres, on the border and one pixel beyond it. PyTorch takes floor(ix)
// as the north-west neighbour, so its gradient there is the one-sided derivative towards +ix/+iy:
// compare with forward differences.
C3_TEST(grid_sample_border_points) {
  const GsDims d{1, 2, 5, 5, 7, 7};
  const float S[7] = {-1.5f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f};  // ix, iy = -1, 0, ..., 5
  Vf grid(d.OH * d.OW * 2);
  for (int64_t i = 0; i < d.OH; ++i)
    for (int64_t j = 0; j < d.OW; ++j) grid[(i * d.OW + j) * 2] = S[j], grid[(i * d.OW + j) * 2 + 1] = S[i];
  Vf x = random_vec(d.N * d.C * d.H * d.W, 1140), w = random_vec(d.N * d.C * d.OH * d.OW, 1141);
  const GsRun r = run_grid_sample(be, d, x, grid, w, true, true);
  expect_fwd(r.y, grid_sample_ref(to_d(x), to_d(grid), d), "grid_sample border forward");
  expect_grad(r.dx, x, w, [&](const Vd& xd) { return grid_sample_ref(xd, to_d(grid), d); }, "grid_sample border dx");
  Vd g0 = to_d(grid), want(grid.size());
  const double h = 1e-7, base = weighted_sum(grid_sample_ref(to_d(x), g0, d), w);
  for (size_t i = 0; i < g0.size(); ++i) {
    Vd gp = g0;
    gp[i] += h;
    want[i] = (weighted_sum(grid_sample_ref(to_d(x), gp, d), w) - base) / h;
  }
  expect_close(r.dgrid, want, 1e-4, 1e-5 * max_abs(want), "grid_sample border dgrid (one-sided)");
}

// Either gradient can be skipped; the other must not change.
C3_TEST(grid_sample_null_outputs) {
  const GsDims d{2, 3, 6, 5, 4, 4};
  Vf x = random_vec(d.N * d.C * d.H * d.W, 1150), grid = random_vec(d.N * d.OH * d.OW * 2, 1151, -1.2f, 1.2f);
  Vf dy = random_vec(d.N * d.C * d.OH * d.OW, 1152);
  const GsRun both = run_grid_sample(be, d, x, grid, dy, true, true);
  const GsRun only_dx = run_grid_sample(be, d, x, grid, dy, true, false);
  const GsRun only_dgrid = run_grid_sample(be, d, x, grid, dy, false, true);
  expect_close(only_dx.dx, both.dx, 0, 0, "grid_sample dx without dgrid");
  expect_close(only_dgrid.dgrid, both.dgrid, 0, 0, "grid_sample dgrid without dx");
}

// The identity theta samples every pixel centre: the output is the input.
C3_TEST(grid_sample_identity) {
  const int64_t N = 2, C = 3, H = 7, W = 9;
  Vf theta = {1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0};
  Vf x = random_vec(N * C * H * W, 1160);
  Buf bt(be, theta), bg(be, N * H * W * 2), bx(be, x), by(be, x.size());
  be.affine_grid_forward(N, H, W, bt.p(), bg.p());
  be.grid_sample_forward(N, C, H, W, H, W, bx.p(), bg.p(), by.p());
  expect_close(by.host(), to_d(x), 1e-5, 1e-6, "grid_sample of the identity grid");
}


// ---------------------------------------------------------------- CPU fast paths vs plain loops

bool cpu_only(const Backend& be, const char* test) {
  if (std::string(be.name) == "cpu") return true;
  std::printf("     note: %s tests CPU kernels only, skipped on %s\n", test, be.name);
  return false;
}

// Every inner-loop table this CPU runs (pointwise and batch norm together), on 1, 2 and 5
// threads (5: the batch-norm rows split over threads rather than channels); restores the tables
// and the pool size.
struct TableSweep {
  const cpu::PointwiseKernels& saved = cpu::pointwise_kernels();
  const cpu::BatchnormKernels& saved_bn = cpu::batchnorm_kernels();
  int threads = num_threads();
  ~TableSweep() {
    cpu::set_pointwise_kernels(saved);
    cpu::set_batchnorm_kernels(saved_bn);
    set_num_threads(threads);
  }
  template <class F>
  void run(F f) {
    std::vector<std::pair<const cpu::PointwiseKernels*, const cpu::BatchnormKernels*>> ks{
        {&cpu::portable_pointwise_kernels(), &cpu::portable_batchnorm_kernels()}};
    if (cpu::avx2_pointwise_kernels() && cpu::avx2_batchnorm_kernels())
      ks.push_back({cpu::avx2_pointwise_kernels(), cpu::avx2_batchnorm_kernels()});
    if (cpu::neon_pointwise_kernels() && cpu::neon_batchnorm_kernels())
      ks.push_back({cpu::neon_pointwise_kernels(), cpu::neon_batchnorm_kernels()});
    for (const auto& [k, kb] : ks)
      for (int t : {1, 2, 5}) {
        cpu::set_pointwise_kernels(*k);
        cpu::set_batchnorm_kernels(*kb);
        set_num_threads(t);
        f(std::string(" [") + k->name + ", " + std::to_string(t) + " thread" + (t > 1 ? "s]" : "]"));
      }
  }
};

// Results of one table on several thread counts: the same bits on each (a fixed split of the work).
struct SameAcrossThreads {
  std::vector<std::pair<std::string, Vf>> first;  // per table, the first result
  void check(const std::string& tag, const Vf& v, const std::string& what);
};

// Same bits (NaN matching NaN): for kernels whose fast loops do the same float operations.
void expect_same_bits(const Vf& got, const Vf& want, const std::string& what) {
  expect_true(got.size() == want.size(), what + ": size");
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = std::memcmp(&got[i], &want[i], sizeof(float)) == 0 || (std::isnan(got[i]) && std::isnan(want[i]));
    if (!same)
      throw Failure(what + ": element " + std::to_string(i) + " is " + std::to_string(got[i]) + ", expected " +
                    std::to_string(want[i]));
  }
}

void SameAcrossThreads::check(const std::string& tag, const Vf& v, const std::string& what) {
  const std::string table = tag.substr(0, tag.find(','));
  for (const auto& [t, w] : first)
    if (t == table) return expect_same_bits(v, w, what + " across thread counts" + tag);
  first.push_back({table, v});
}

// Values that hit every branch: signed zeros, infinities, NaN, tiny and huge ones, among random ones.
Vf with_specials(Vf v) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float sp[] = {0.0f, -0.0f, inf, -inf, nan, 1e-40f, -1e-40f, 90.0f, -90.0f, 1e30f, -1e30f, 88.5f, -87.5f};
  for (size_t i = 0; i < v.size(); i += 7) v[i] = sp[(i / 7) % (sizeof(sp) / sizeof(sp[0]))];
  return v;
}

C3_TEST(fast_glu_matches_reference) {
  if (!cpu_only(be, "fast_glu_matches_reference")) return;
  TableSweep sweep;
  // (outer, half, inner): inner 1 (GLU over a Linear's features), odd tails, several tasks
  const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 1}, {2, 7, 3}, {4, 9, 17}, {8, 256, 1}, {2, 16, 33}, {3, 40, 700}};
  uint64_t seed = 2000;
  for (auto& s : shapes) {
    const int64_t outer = s[0], half = s[1], inner = s[2], n = outer * half * inner;
    const std::string name = "glu (" + std::to_string(outer) + ", " + std::to_string(half) + ", " +
                             std::to_string(inner) + ")";
    const Vf x = random_vec(2 * n, ++seed, -12, 12), dy = random_vec(n, ++seed);
    Vf yr(n), dxr(2 * n);
    cpu::glu_forward_reference(outer, half, inner, x.data(), yr.data());
    cpu::glu_backward_reference(outer, half, inner, dy.data(), x.data(), dxr.data());
    sweep.run([&](const std::string& tag) {
      Vf y(n), dx(2 * n);
      cpu::glu_forward(outer, half, inner, x.data(), y.data());
      cpu::glu_backward(outer, half, inner, dy.data(), x.data(), dx.data());
      // the vector sigmoid is a polynomial exp (about 1 ulp), the reference std::exp; db has
      // 1 - s, where a few ulp of s near 1 are absolute errors of ~1e-7 times |dy * a| <= 12
      expect_close(y, yr, 1e-6, 1e-30, name + " forward" + tag);
      expect_close(dx, dxr, 1e-6, 4e-6, name + " backward" + tag);
    });
  }
}

C3_TEST(fast_bn_glu_matches_reference) {
  if (!cpu_only(be, "fast_bn_glu_matches_reference")) return;
  TableSweep sweep;
  // rows of HW (long: a run per channel row; short: samples laid side by side), odd tails
  const int64_t shapes[][3] = {{1, 1, 1}, {4, 5, 1}, {3, 7, 3}, {2, 9, 15}, {2, 3, 16}, {3, 4, 33}, {2, 16, 1024}};
  uint64_t seed = 2500;
  for (auto& sh : shapes) {
    const BnGluCase t(sh[0], sh[1], sh[2], seed += 10);
    const int64_t n = t.N * t.half * t.HW;
    const Vf dy = random_vec(n, seed + 5);
    Vf yr(n), dzr(2 * n);
    cpu::bn_glu_forward_reference(t.N, t.half, t.HW, t.x.data(), t.gamma.data(), t.beta.data(), t.mean.data(),
                                  t.invstd.data(), yr.data());
    cpu::bn_glu_backward_reference(t.N, t.half, t.HW, dy.data(), t.x.data(), t.gamma.data(), t.beta.data(),
                                   t.mean.data(), t.invstd.data(), dzr.data());
    SameAcrossThreads same_y, same_dz;
    sweep.run([&](const std::string& tag) {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      Vf y(n, nan), dz(2 * n, nan);
      cpu::bn_glu_forward(t.N, t.half, t.HW, t.x.data(), t.gamma.data(), t.beta.data(), t.mean.data(), t.invstd.data(),
                          y.data());
      cpu::bn_glu_backward(t.N, t.half, t.HW, dy.data(), t.x.data(), t.gamma.data(), t.beta.data(), t.mean.data(),
                           t.invstd.data(), dz.data());
      // the affine map is rounded to float once per channel (~1e-7 of |z| <= ~10), then the sigmoid
      expect_close(y, yr, 1e-5, 1e-6, t.name() + " forward" + tag);
      expect_close(dz, dzr, 1e-5, 4e-6, t.name() + " backward" + tag);
      same_y.check(tag, y, t.name() + " forward");
      same_dz.check(tag, dz, t.name() + " backward");
    });
  }
}

C3_TEST(fast_glu_sigmoid_range) {
  if (!cpu_only(be, "fast_glu_sigmoid_range")) return;
  TableSweep sweep;
  // a = 1: y is sigmoid(b) itself, over the whole range where it is neither 0 nor 1
  const int64_t n = 4001;
  Vf x(2 * n, 1.0f);
  for (int64_t i = 0; i < n; ++i) x[n + i] = -100.0f + 200.0f * static_cast<float>(i) / (n - 1);
  Vd want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = 1.0 / (1.0 + std::exp(-static_cast<double>(x[n + i])));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Vf special = {1, 1, 1, 1, 1, 1, 1, 1, 1, nan, inf, -inf, 0.0f, -0.0f, 1e-40f, nan, 5.0f, nan};
  sweep.run([&](const std::string& tag) {
    Vf y(n);
    cpu::glu_forward(1, 1, n, x.data(), y.data());
    expect_close(y, want, 5e-7, 1e-37, "sigmoid via glu" + tag);
    Vf ys(9);  // 8 in the vector loop, 1 in the tail
    cpu::glu_forward(1, 1, 9, special.data(), ys.data());
    expect_true(std::isnan(ys[0]) && std::isnan(ys[6]) && std::isnan(ys[8]), "sigmoid(NaN) is NaN" + tag);
    expect_close(Vf(ys.begin() + 1, ys.begin() + 6), Vd{1, 0, 0.5, 0.5, 0.5}, 1e-7, 1e-37, "sigmoid at inf, 0" + tag);
    expect_close(Vf{ys[7]}, Vd{1.0 / (1.0 + std::exp(-5.0))}, 5e-7, 0, "sigmoid(5)" + tag);
  });
}

// tanh and sigmoid over their whole working range (to where they are +-1, 0 or 1), tiny inputs
// (tanh x = x there) and the specials, on every table and thread count: within 2 ulp of float64,
// the same bits on each thread count (the AVX2 tail goes through the vector code too).
C3_TEST(fast_tanh_sigmoid_match_reference) {
  if (!cpu_only(be, "fast_tanh_sigmoid_match_reference")) return;
  TableSweep sweep;
  const int64_t n = 120011;  // several tasks and a ragged end
  Vf x(n);
  for (int64_t i = 0; i < n; ++i) {
    const double u = -1.0 + 2.0 * static_cast<double>(i) / (n - 1);
    // half the points on a linear grid over [-20, 20], half on a log grid down to 1e-30
    x[i] = static_cast<float>(i % 2 ? 20.0 * u : std::copysign(std::pow(10.0, -30.0 + 30.0 * std::fabs(u)), u));
  }
  x = with_specials(x);
  for (UnaryOp op : {UnaryOp::Tanh, UnaryOp::Sigmoid}) {
    const bool is_tanh = op == UnaryOp::Tanh;
    const std::string name = is_tanh ? "tanh" : "sigmoid";
    Vd want(n);
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i];
      want[i] = is_tanh ? std::tanh(v) : 1.0 / (1.0 + std::exp(-v));
    }
    SameAcrossThreads same;
    sweep.run([&](const std::string& tag) {
      Vf y(n);
      cpu::unary_forward(op, n, x.data(), 0.0f, y.data());
      double worst = 0;  // in units of float's epsilon relative to the value (~ulp)
      for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(x[i])) {
          expect_true(std::isnan(y[i]), name + "(NaN) is NaN" + tag);
          continue;
        }
        // sigmoid's values below 1e-37 are denormal or flushed: absolute error there
        const double scale = std::max(std::fabs(want[i]), is_tanh ? 1e-38 : 1e-30);
        worst = std::max(worst, std::fabs(y[i] - want[i]) / scale / 1.1920929e-7);
      }
      expect_true(worst <= 2.0, name + ": " + std::to_string(worst) + " ulp from float64" + tag);
      if (tag.find(", 1 thread]") != std::string::npos)
        std::printf("     note: %s worst error %.2f ulp of float64%s\n", name.c_str(), worst, tag.c_str());
      same.check(tag, y, name);
    });
  }
}

C3_TEST(fast_relu_leaky_match_reference) {
  if (!cpu_only(be, "fast_relu_leaky_match_reference")) return;
  TableSweep sweep;
  uint64_t seed = 2100;
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{31}, size_t{1000}, size_t{70001}}) {
    const Vf x = with_specials(random_vec(n, ++seed, -3, 3)), dy = with_specials(random_vec(n, ++seed));
    for (UnaryOp op : {UnaryOp::Relu, UnaryOp::LeakyRelu}) {
      const std::string name = std::string(op == UnaryOp::Relu ? "relu" : "leaky_relu") + " n=" + std::to_string(n);
      Vf yr(n), dxr(n);
      cpu::unary_forward_reference(op, n, x.data(), 0.2f, yr.data());
      cpu::unary_backward_reference(op, n, dy.data(), x.data(), yr.data(), 0.2f, dxr.data());
      sweep.run([&](const std::string& tag) {
        Vf y(n), dx(n);
        cpu::unary_forward(op, n, x.data(), 0.2f, y.data());
        cpu::unary_backward(op, n, dy.data(), x.data(), y.data(), 0.2f, dx.data());
        expect_same_bits(y, yr, name + " forward" + tag);
        expect_same_bits(dx, dxr, name + " backward" + tag);
      });
    }
  }
}

// Every inner-stride case of the binary walk (both contiguous, either one broadcast, both) with
// odd lengths, against the plain multi-index loop; then in place (y is a).
C3_TEST(fast_binary_matches_reference) {
  if (!cpu_only(be, "fast_binary_matches_reference")) return;
  TableSweep sweep;
  const std::pair<Shape, Shape> cases[] = {
      {{37}, {37}},         {{37}, {1}},          {{1}, {37}},          {{1}, {1}},
      {{3, 1, 19}, {3, 1, 19}}, {{5, 3, 21}, {5, 1, 21}}, {{5, 3, 21}, {1, 3, 1}}, {{4, 1}, {1, 9}},
      {{8, 3, 4099}, {8, 1, 4099}}, {{2, 5, 3}, {2, 5, 1}}, {{70000}, {70000}},
  };
  const char* names[] = {"add", "sub", "mul", "div"};
  uint64_t seed = 2200;
  for (const auto& c : cases) {
    // named copies: a C++17 lambda cannot capture structured bindings (clang refuses it)
    const Shape& sa = c.first;
    const Shape& sb = c.second;
    Shape out;
    const BroadcastIndex idx = binary_index(sa, sb, out);
    const Vf a = with_specials(random_vec(numel(sa), ++seed, -2, 2)), b = divisor_vec(numel(sb), ++seed);
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
      const std::string name = std::string(names[static_cast<int>(op)]) + " " + shape_name(sa) + " with " +
                               shape_name(sb);
      Vf yr(numel(out));
      cpu::binary_forward_reference(op, idx, a.data(), b.data(), yr.data());
      sweep.run([&](const std::string& tag) {
        Vf y(numel(out));
        cpu::binary_forward(op, idx, a.data(), b.data(), y.data());
        expect_same_bits(y, yr, name + tag);
        if (numel(out) == numel(sa)) {
          Vf inplace = a;
          cpu::binary_forward(op, idx, inplace.data(), b.data(), inplace.data());
          expect_same_bits(inplace, yr, name + " in place" + tag);
        }
      });
    }
  }
}

// sum_to against its plain loop: a few rows (float, in the loop's order) give the same bits,
// longer reductions (double) stay within float rounding of it
C3_TEST(fast_sum_to_matches_reference) {
  if (!cpu_only(be, "fast_sum_to_matches_reference")) return;
  TableSweep sweep;
  const std::pair<Shape, Shape> few[] = {{{8, 3, 4099}, {8, 1, 4099}}, {{2, 5, 3, 7}, {2, 1, 3, 7}},
                                         {{4, 2, 257}, {1, 2, 257}}, {{3, 7}, {1, 7}}};
  const std::pair<Shape, Shape> many[] = {{{9, 3, 300}, {1, 3, 300}}, {{4, 5, 6, 70}, {4, 1, 1, 70}}, {{64, 33}, {1, 1}}};
  uint64_t seed = 2250;
  for (bool exact : {true, false})
    for (const auto& c : exact ? std::vector<std::pair<Shape, Shape>>(std::begin(few), std::end(few))
                               : std::vector<std::pair<Shape, Shape>>(std::begin(many), std::end(many))) {
      const Shape& sx = c.first;
      const Shape& sy = c.second;
      const BroadcastIndex idx = sum_to_index(sx, sy);
      const Vf x = random_vec(numel(sx), ++seed, -2, 2);
      Vf want(numel(sy));
      cpu::sum_to_reference(idx, x.data(), want.data(), want.size());
      sweep.run([&](const std::string& tag) {
        Vf y(numel(sy), 123.0f);
        cpu::sum_to(idx, x.data(), y.data(), y.size());
        const std::string what = "sum_to " + shape_name(sx) + " to " + shape_name(sy) + tag;
        if (exact) expect_same_bits(y, want, what);
        else expect_close(y, want, 1e-5, 1e-5, what);
      });
    }
}

// ---- batch norm: the blocked, threaded kernels against the serial double loops

struct BnCase {
  int64_t N, C, HW;
  float lo, hi;  // input range: an offset one checks the shifted sums
};

std::string bn_name(const BnCase& c) {
  return "batchnorm N" + std::to_string(c.N) + " C" + std::to_string(c.C) + " HW" + std::to_string(c.HW) + " x in [" +
         std::to_string(c.lo) + ", " + std::to_string(c.hi) + ")";
}

// column mode (HW < 32: 1, odd, the threshold, group edges, N past the float row block), row mode
// (32 and up: chunks of whole rows, several chunks, pieces of long rows with a tail; by channels
// or with the chunks and rows split, per thread count), N * HW small, one value per channel
const BnCase kBnCases[] = {
    {8, 5, 1, -1, 3},       {64, 300, 1, -1, 1},     {70, 9, 3, -2, 2},       {3, 4, 30, -1, 3},
    {6, 5, 31, -1, 1},      {6, 5, 32, -1, 1},       {5, 3, 63, -1, 1},       {4, 2, 65, -1, 1},
    {2, 3, 1000, -1, 3},    {2, 3, 4097, -1, 1},     {1, 2, 5000, 100, 101},  {64, 40, 16, 50, 51},
    {2, 1, 1, -1, 1},       {1, 3, 1, -1, 1},        {1, 2, 3, -1, 1},        {8, 33, 16, -1, 1},
    {3, 2, 20000, -3, -1},  {40, 300, 2, 1000, 1001}, {2, 9, 300, -1, 1},     {3, 20, 257, 5, 6},
    {50, 9, 100, -1, 1},    {4, 12, 255, -1, 1},
};

C3_TEST(fast_batchnorm_forward_matches_reference) {
  if (!cpu_only(be, "fast_batchnorm_forward_matches_reference")) return;
  TableSweep sweep;
  uint64_t seed = 2300;
  for (const BnCase& c : kBnCases) {
    const int64_t n = c.N * c.C * c.HW;
    const Vf x = random_vec(n, ++seed, c.lo, c.hi), g = random_vec(c.C, ++seed, 0.5f, 1.5f);
    const Vf b = random_vec(c.C, ++seed), rm0 = random_vec(c.C, ++seed), rv0 = random_vec(c.C, ++seed, 0.5f, 2);
    Vf yr(n), mr(c.C), ir(c.C), rmr = rm0, rvr = rv0;
    cpu::batchnorm_forward_train_reference(c.N, c.C, c.HW, x.data(), g.data(), b.data(), rmr.data(), rvr.data(), 0.1f,
                                           1e-5f, yr.data(), mr.data(), ir.data());
    Vf er(n);
    cpu::batchnorm_forward_eval_reference(c.N, c.C, c.HW, x.data(), g.data(), b.data(), rm0.data(), rv0.data(), 1e-5f,
                                          er.data());
    double xmax = 0;
    for (float v : x) xmax = std::max(xmax, static_cast<double>(std::fabs(v)));
    SameAcrossThreads ys;
    sweep.run([&](const std::string& tag) {
      const std::string what = bn_name(c) + tag;
      Vf y(n), m(c.C), is(c.C), rm = rm0, rv = rv0;
      cpu::batchnorm_forward_train(c.N, c.C, c.HW, x.data(), g.data(), b.data(), rm.data(), rv.data(), 0.1f, 1e-5f,
                                   y.data(), m.data(), is.data());
      // float sums over chunks, double across them: the mean within a few ulp of the inputs'
      // size, the variance to ~1e-6, y to ~1e-5 (it carries x's rounding at an offset)
      expect_close(m, mr, 1e-6, 1e-6 * xmax, what + " save_mean");
      expect_close(is, ir, 2e-6, 0, what + " save_invstd");
      expect_close(rm, rmr, 1e-6, 1e-6 * xmax, what + " running_mean");
      expect_close(rv, rvr, 2e-6, 0, what + " running_var");
      expect_close(y, yr, 1e-5, 2e-5 + 2e-6 * xmax * ir[0], what + " y");
      ys.check(tag, y, what + " y");
      Vf e(n);
      cpu::batchnorm_forward_eval(c.N, c.C, c.HW, x.data(), g.data(), b.data(), rm0.data(), rv0.data(), 1e-5f,
                                  e.data());
      expect_same_bits(e, er, what + " eval");
    });
  }
}

// null gamma, beta, running and saved statistics are allowed
C3_TEST(fast_batchnorm_forward_optional_arguments) {
  if (!cpu_only(be, "fast_batchnorm_forward_optional_arguments")) return;
  for (int64_t HW : {1, 100}) {
    const int64_t N = 4, C = 3, n = N * C * HW;
    const Vf x = random_vec(n, 2400 + HW);
    Vf yr(n), y(n);
    cpu::batchnorm_forward_train_reference(N, C, HW, x.data(), nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f,
                                           yr.data(), nullptr, nullptr);
    cpu::batchnorm_forward_train(N, C, HW, x.data(), nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f, y.data(),
                                 nullptr, nullptr);
    expect_close(y, yr, 1e-5, 2e-5, "batchnorm without affine and statistics HW" + std::to_string(HW));
  }
}

C3_TEST(fast_batchnorm_backward_matches_reference) {
  if (!cpu_only(be, "fast_batchnorm_backward_matches_reference")) return;
  TableSweep sweep;
  uint64_t seed = 2500;
  for (const BnCase& c : kBnCases) {
    const int64_t n = c.N * c.C * c.HW;
    const Vf x = random_vec(n, ++seed, c.lo, c.hi), dy = random_vec(n, ++seed), g = random_vec(c.C, ++seed, 0.5f, 1.5f);
    Vf mean(c.C), invstd(c.C), y(n);
    cpu::batchnorm_forward_train_reference(c.N, c.C, c.HW, x.data(), g.data(), nullptr, nullptr, nullptr, 0.1f, 1e-5f,
                                           y.data(), mean.data(), invstd.data());
    for (bool training : {true, false}) {
      Vf dxr(n), dgr(c.C), dbr(c.C);
      cpu::batchnorm_backward_reference(c.N, c.C, c.HW, training, dy.data(), x.data(), g.data(), mean.data(),
                                        invstd.data(), dxr.data(), dgr.data(), dbr.data());
      // the size the dx terms have: |a dy| and |b (x - mean)| are up to about gamma * invstd
      double scale = 0;
      for (int64_t ch = 0; ch < c.C; ++ch) scale = std::max(scale, static_cast<double>(g[ch] * invstd[ch]));
      double gsum = 0;
      for (float v : dy) gsum = std::max(gsum, static_cast<double>(std::fabs(v)));
      const double per_channel = static_cast<double>(c.N * c.HW);
      SameAcrossThreads dxs;
      sweep.run([&](const std::string& tag) {
        const std::string what = bn_name(c) + (training ? " backward train" : " backward eval") + tag;
        Vf dx(n), dg(c.C), db(c.C);
        cpu::batchnorm_backward(c.N, c.C, c.HW, training, dy.data(), x.data(), g.data(), mean.data(), invstd.data(),
                                dx.data(), dg.data(), db.data());
        expect_close(db, dbr, 1e-5, 1e-6 * std::sqrt(per_channel) * gsum, what + " dbeta");
        expect_close(dg, dgr, 1e-5, 1e-6 * std::sqrt(per_channel) * gsum, what + " dgamma");
        expect_close(dx, dxr, 1e-5, 2e-6 * scale * gsum, what + " dx");
        dxs.check(tag, dx, what + " dx");
        // without the parameter gradients, and without dx
        Vf dx2(n), dg2(c.C);
        cpu::batchnorm_backward(c.N, c.C, c.HW, training, dy.data(), x.data(), g.data(), mean.data(), invstd.data(),
                                dx2.data(), nullptr, nullptr);
        expect_same_bits(dx2, dx, what + " dx without dgamma/dbeta");
        cpu::batchnorm_backward(c.N, c.C, c.HW, training, dy.data(), x.data(), g.data(), mean.data(), invstd.data(),
                                nullptr, dg2.data(), nullptr);
        expect_same_bits(dg2, dg, what + " dgamma without dx");
      });
    }
  }
}

// A long channel far from zero: the statistics stay close to float64 ones (float sums only over
// short blocks, double across them).
C3_TEST(fast_batchnorm_statistics_accuracy) {
  if (!cpu_only(be, "fast_batchnorm_statistics_accuracy")) return;
  for (int64_t HW : {1, 16384}) {
    const int64_t N = HW == 1 ? 200000 : 12, C = 1, n = N * C * HW;
    Vf x = random_vec(n, 2600, 999.0f, 1001.0f);
    double s = 0, ss = 0;
    for (float v : x) s += v;
    const double mean = s / n;
    for (float v : x) ss += (v - mean) * (v - mean);
    const double invstd = 1.0 / std::sqrt(ss / n + 1e-5);
    Vf y(n), m(1), is(1);
    cpu::batchnorm_forward_train(N, C, HW, x.data(), nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f, y.data(),
                                 m.data(), is.data());
    const std::string what = "batchnorm statistics, 1000 +- 1, HW " + std::to_string(HW);
    expect_close(m, Vd{mean}, 2e-7, 0, what + " mean");
    expect_close(is, Vd{invstd}, 2e-6, 0, what + " invstd");
  }
}

}  // namespace
