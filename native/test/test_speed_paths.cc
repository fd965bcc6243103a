// The CPU fast paths against the plain reference kernels: the GEMM engine with every micro-kernel
// this CPU can run (portable, AVX2+FMA, AVX-512, NEON) on one and two threads, the implicit-GEMM conv2d
// passes on shapes that reach every special case (strides with gaps, padding wider than the
// kernel, dense heads, empty channels, blocks crossing KC/MC/NC), Winograd F(2x2, 3x3) with its
// error measured against float64 next to the implicit GEMM's, the direct loops for narrow
// layers, and the constant-channel conv
// (conv2d_code_channels, ops::conv2d_const_channels) against the conv of the tiled input.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../core/ops.h"
#include "../core/threadpool.h"
#include "../cpu/conv_direct.h"
#include "../cpu/gemm_kernels.h"
#include "../cpu/kernels.h"
#include "../cpu/winograd.h"
#include "../cpu/winograd_cache.h"
#include "harness.h"

namespace {

using c3::Backend;
using c3::Conv2dParams;
using c3::test::Buf;
using c3::test::expect_close;
using c3::test::product_tol;
using c3::test::Tol;
using c3::test::expect_true;
using c3::test::random_vec;
using Vec = std::vector<float>;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

bool is_cpu(const Backend& be, const char* test) {
  if (std::string(be.name) == "cpu") return true;
  std::printf("     note: %s tests CPU kernels only, skipped on %s\n", test, be.name);
  return false;
}

// Every micro-kernel this CPU runs; restores the engine's kernel and the pool size afterwards.
struct KernelSweep {
  const c3::cpu::MicroKernel& saved = c3::cpu::gemm_micro_kernel();
  int threads = c3::num_threads();
  ~KernelSweep() {
    c3::cpu::set_gemm_micro_kernel(saved);
    c3::set_num_threads(threads);
  }
  std::vector<const c3::cpu::MicroKernel*> kernels() const {
    std::vector<const c3::cpu::MicroKernel*> ks{&c3::cpu::portable_micro_kernel()};
    if (const c3::cpu::MicroKernel* k = c3::cpu::avx2_micro_kernel()) ks.push_back(k);
    if (const c3::cpu::MicroKernel* k = c3::cpu::avx512_micro_kernel()) ks.push_back(k);
    if (const c3::cpu::MicroKernel* k = c3::cpu::neon_micro_kernel()) ks.push_back(k);
    return ks;
  }
};

std::string tag(const c3::cpu::MicroKernel& k, int threads) {
  return std::string(" [") + k.name + ", " + std::to_string(threads) + " thread" + (threads > 1 ? "s]" : "]");
}

// ---------------------------------------------------------------- gemm

C3_TEST(speed_gemm_every_kernel_matches_reference) {
  if (!is_cpu(be, "speed_gemm_every_kernel_matches_reference")) return;
  KernelSweep sweep;
  // edges of the 6x8 and 6x16 tiles, K across KC = 256, M across MC = 144, N across NC = 1024
  const int64_t shapes[][3] = {{1, 1, 1},     {5, 17, 3},    {6, 16, 256},  {7, 33, 257}, {13, 1, 300},
                               {150, 40, 520}, {40, 1100, 70}, {300, 50, 9}, {61, 97, 611}};
  const float ab[][2] = {{1.0f, 0.0f}, {0.5f, -1.5f}, {-2.0f, 1.0f}};
  uint64_t seed = 70000;
  for (const c3::cpu::MicroKernel* k : sweep.kernels()) {
    c3::cpu::set_gemm_micro_kernel(*k);
    for (int threads : {1, 2}) {
      c3::set_num_threads(threads);
      for (auto& s : shapes)
        for (int t = 0; t < 4; ++t)
          for (auto& c : ab) {
            const int64_t M = s[0], N = s[1], K = s[2];
            const bool ta = t & 1, tb = t & 2;
            Vec A = random_vec(M * K, ++seed), B = random_vec(K * N, ++seed), C = random_vec(M * N, ++seed);
            if (c[1] == 0.0f) std::fill(C.begin(), C.end(), kNaN);  // beta 0 must not read C
            Vec R = C;
            c3::cpu::gemm(ta, tb, M, N, K, c[0], A.data(), B.data(), c[1], C.data());
            c3::cpu::gemm_reference(ta, tb, M, N, K, c[0], A.data(), B.data(), c[1], R.data());
            expect_close(C, R, 1e-4, 2e-6 * (K + 1),
                         "gemm " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + " ta=" +
                             std::to_string(ta) + " tb=" + std::to_string(tb) + " alpha=" + std::to_string(c[0]) +
                             " beta=" + std::to_string(c[1]) + tag(*k, threads));
          }
    }
  }
}

// gemm_strided on sub-matrices of wider rows: the strided packers read only the sub-matrix and
// the stores leave C's columns past N alone. (The engine's K = 0 path, where every tile still
// gets its one first store, is reached by the conv case with no input channels below.)
C3_TEST(speed_gemm_strided_submatrices) {
  if (!is_cpu(be, "speed_gemm_strided_submatrices")) return;
  KernelSweep sweep;
  for (const c3::cpu::MicroKernel* k : sweep.kernels()) {
    c3::cpu::set_gemm_micro_kernel(*k);
    // sub-matrices of larger row strides
    const int64_t M = 23, N = 41, K = 19, lda = 30, ldb = 50, ldc = 45;
    Vec A = random_vec(M * lda, 1), B = random_vec(K * ldb, 2), C(M * ldc, 3.0f);
    c3::cpu::gemm_strided(false, false, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), ldc);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < ldc; ++j) {
        double want = 3.0;
        if (j < N) {
          want = 0;
          for (int64_t kk = 0; kk < K; ++kk) want += double(A[i * lda + kk]) * B[kk * ldb + j];
        }
        const double got = C[i * ldc + j];
        expect_true(std::fabs(got - want) <= 1e-4 * (1 + std::fabs(want)),
                    "gemm_strided element (" + std::to_string(i) + ", " + std::to_string(j) + ") is " +
                        std::to_string(got) + ", expected " + std::to_string(want) + " (columns past N untouched)" +
                        tag(*k, c3::num_threads()));
      }
  }
}

// ---------------------------------------------------------------- conv2d

struct ConvCase {
  int64_t N, C, H, W, K, R, S, stride, pad;
  bool bias;
};

Conv2dParams params(const ConvCase& c) {
  Conv2dParams p{c.N, c.C, c.H, c.W, c.K, c.R, c.S, 0, 0, c.stride, c.pad};
  p.OH = (c.H + 2 * c.pad - c.R) / c.stride + 1;
  p.OW = (c.W + 2 * c.pad - c.S) / c.stride + 1;
  return p;
}

std::string describe(const Conv2dParams& p) {
  return "conv N" + std::to_string(p.N) + " C" + std::to_string(p.C) + " " + std::to_string(p.H) + "x" +
         std::to_string(p.W) + " K" + std::to_string(p.K) + " " + std::to_string(p.R) + "x" + std::to_string(p.S) +
         " s" + std::to_string(p.stride) + " p" + std::to_string(p.pad);
}

const ConvCase kCases[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, true},      // 3x3 s1 p1, odd map
    {3, 5, 8, 8, 7, 4, 4, 2, 1, false},     // D's 4x4 s2 p1: four backward phases of 2x2 taps
    {2, 4, 9, 7, 3, 4, 4, 2, 1, true},      // the same on odd maps: uneven phases
    {2, 6, 4, 4, 5, 4, 4, 4, 0, true},      // D's head: the dense path
    {2, 3, 5, 6, 4, 4, 4, 4, 0, false},     // stride 4, not dense
    {1, 4, 9, 7, 3, 1, 1, 2, 0, false},     // 1x1 stride 2: phases no tap reaches (zero gradient)
    {1, 2, 7, 7, 2, 2, 2, 3, 0, false},     // stride past the kernel: gaps
    {2, 3, 9, 7, 5, 3, 2, 2, 1, true},      // 3x2 kernel
    {1, 2, 5, 5, 3, 5, 5, 1, 2, false},     // kernel as large as the map
    {1, 2, 6, 6, 3, 3, 3, 1, 3, false},     // padding wider than the kernel reaches
    {1, 3, 11, 13, 7, 3, 3, 3, 2, true},    // stride 3, pad 2
    {2, 5, 6, 7, 3, 1, 1, 1, 0, true},      // 1x1
    {2, 0, 5, 5, 3, 3, 3, 1, 1, true},      // no input channels: y is the bias
    {3, 17, 10, 12, 20, 3, 3, 1, 1, false}, // tile edges in M and N
    {4, 32, 16, 16, 40, 3, 3, 1, 1, true},  // C*R*S = 288 crosses KC
    {2, 64, 8, 8, 30, 4, 4, 2, 1, false},   // C*R*S = 1024: several K blocks
    {16, 8, 4, 4, 12, 3, 3, 1, 1, true},    // 4x4 maps: many images per panel
    {6, 8, 10, 10, 16, 4, 4, 2, 1, false},  // fewer input than output channels, strided: fused col2im
    {4, 16, 32, 32, 128, 4, 4, 2, 1, true},  // Winograd over the stride phases: forward, weight gradient
    {2, 128, 16, 16, 128, 4, 4, 2, 1, false}, // the same for backward-data
    {5, 3, 9, 7, 7, 3, 3, 2, 1, true},      // the same on odd maps with a 3x3 kernel
};

struct PathGuard {
  bool wino = c3::cpu::winograd_enabled(), wino_s2 = c3::cpu::winograd_s2_enabled(),
       direct = c3::cpu::direct_conv_enabled(), wide = c3::cpu::direct_wide_registers();
  ~PathGuard() {
    c3::cpu::set_winograd_enabled(wino);
    c3::cpu::set_winograd_s2_enabled(wino_s2);
    c3::cpu::set_direct_conv_enabled(direct);
    c3::cpu::set_direct_wide_registers(wide);
    c3::cpu::set_conv2d_backward_data_path(-1);
  }
};

// One case's random inputs (a fresh seed for each), its reference outputs, and outputs to fill,
// NaN at first so that every element must be written.
struct ConvRun {
  Conv2dParams p;
  Vec x, w, b, dy, ry, rdx, rdw, y, dx, dw;
  const float* bias;
  ConvRun(const ConvCase& cc, uint64_t& seed) : p(params(cc)) {
    const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * p.R * p.S, ny = p.N * p.K * p.OH * p.OW;
    x = random_vec(nx, ++seed), w = random_vec(nw, ++seed), b = random_vec(p.K, ++seed), dy = random_vec(ny, ++seed);
    bias = cc.bias ? b.data() : nullptr;
    ry.resize(ny), rdx.resize(nx), rdw.resize(nw);
    y.assign(ny, kNaN), dx.assign(nx, kNaN), dw.assign(nw, kNaN);
    c3::cpu::conv2d_forward_reference(p, x.data(), w.data(), bias, ry.data());
    c3::cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), rdx.data());
    c3::cpu::conv2d_backward_weight_reference(p, dy.data(), x.data(), rdw.data());
  }
  void expect_data(const Vec& got, const std::string& what) const {
    expect_close(got, rdx, 1e-4, 1e-5 * (p.K * p.R * p.S + 1), what);
  }
  // y, dx and dw against the references
  void expect_all(const std::string& what) const {
    expect_close(y, ry, 1e-4, 1e-5 * (p.C * p.R * p.S + 1), what + " forward");
    expect_data(dx, what + " backward_data");
    expect_close(dw, rdw, 1e-4, 1e-5 * (p.N * p.OH * p.OW + 1), what + " backward_weight");
  }
};

// The implicit GEMM (both Winograd paths and the direct loops off) with every micro-kernel, then once more
// with the default routing.
C3_TEST(speed_conv2d_fast_paths_match_reference) {
  if (!is_cpu(be, "speed_conv2d_fast_paths_match_reference")) return;
  KernelSweep sweep;
  PathGuard paths;
  uint64_t seed = 71000;
  std::vector<const c3::cpu::MicroKernel*> kernels = sweep.kernels();
  kernels.push_back(nullptr);  // the default routing
  for (const c3::cpu::MicroKernel* k : kernels) {
    c3::cpu::set_gemm_micro_kernel(k ? *k : sweep.saved);
    c3::cpu::set_winograd_enabled(!k);
    c3::cpu::set_winograd_s2_enabled(!k);
    c3::cpu::set_direct_conv_enabled(!k);
    for (int threads : {1, 2}) {
      c3::set_num_threads(threads);
      for (const ConvCase& cc : kCases) {
        ConvRun r(cc, seed);
        const Conv2dParams& p = r.p;
        c3::cpu::conv2d_forward(p, r.x.data(), r.w.data(), r.bias, r.y.data());
        c3::cpu::conv2d_backward_data(p, r.dy.data(), r.w.data(), r.dx.data());
        c3::cpu::conv2d_backward_weight(p, r.dy.data(), r.x.data(), r.dw.data());
        // backward-data both ways: by stride phases and by the fused col2im
        Vec dx_phases(r.dx.size(), kNaN), dx_col2im(r.dx.size(), kNaN);
        c3::cpu::set_conv2d_backward_data_path(0);
        c3::cpu::conv2d_backward_data(p, r.dy.data(), r.w.data(), dx_phases.data());
        c3::cpu::set_conv2d_backward_data_path(1);
        c3::cpu::conv2d_backward_data(p, r.dy.data(), r.w.data(), dx_col2im.data());
        c3::cpu::set_conv2d_backward_data_path(-1);
        const std::string what = describe(p) + (k ? tag(*k, threads) : " [default routing]");
        r.expect_all(what);
        r.expect_data(dx_phases, what + " backward_data by phases");
        r.expect_data(dx_col2im, what + " backward_data by col2im");
      }
    }
  }
}

// Every path gives the same bits on one thread as on two: the engine splits outputs, never a
// sum, and the direct weight gradient adds a fixed set of partial sums in a fixed order.
C3_TEST(speed_conv2d_same_bits_on_any_thread_count) {
  if (!is_cpu(be, "speed_conv2d_same_bits_on_any_thread_count")) return;
  KernelSweep sweep;
  const ConvCase cases[] = {
      {64, 32, 4, 4, 48, 3, 3, 1, 1, true},   // Winograd F(4x4)
      {16, 32, 6, 6, 32, 3, 3, 1, 1, false},  // Winograd F(2x2)
      {8, 4, 32, 32, 8, 3, 3, 1, 1, true},    // direct loops
      {8, 16, 16, 16, 32, 4, 4, 2, 1, false}, // implicit GEMM, fused col2im
      {8, 40, 4, 4, 24, 4, 4, 4, 0, true},    // dense
  };
  uint64_t seed = 76000;
  for (const ConvCase& cc : cases) {
    const Conv2dParams p = params(cc);
    const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * p.R * p.S, ny = p.N * p.K * p.OH * p.OW;
    Vec x = random_vec(nx, ++seed), w = random_vec(nw, ++seed), b = random_vec(p.K, ++seed);
    Vec dy = random_vec(ny, ++seed);
    Vec out[2][3];
    for (int t = 0; t < 2; ++t) {
      c3::set_num_threads(t + 1);
      out[t][0].assign(ny, 0.0f), out[t][1].assign(nx, 0.0f), out[t][2].assign(nw, 0.0f);
      c3::cpu::conv2d_forward(p, x.data(), w.data(), cc.bias ? b.data() : nullptr, out[t][0].data());
      c3::cpu::conv2d_backward_data(p, dy.data(), w.data(), out[t][1].data());
      c3::cpu::conv2d_backward_weight(p, dy.data(), x.data(), out[t][2].data());
    }
    static const char* names[3] = {"forward", "backward_data", "backward_weight"};
    for (int i = 0; i < 3; ++i)
      expect_true(std::memcmp(out[0][i].data(), out[1][i].data(), out[0][i].size() * sizeof(float)) == 0,
                  describe(p) + " " + names[i] + ": one and two threads differ");
  }
}

// ---------------------------------------------------------------- direct loops

C3_TEST(speed_direct_conv_matches_reference) {
  if (!is_cpu(be, "speed_direct_conv_matches_reference")) return;
  if (!c3::cpu::direct_loops_available()) {
    std::printf("     note: no AVX2+FMA or Advanced SIMD on this CPU: the direct loops are never used\n");
    return;
  }
  KernelSweep sweep;
  PathGuard paths;
  const ConvCase cases[] = {
      {2, 4, 32, 32, 8, 3, 3, 1, 1, true},    // G's 32 px tail: 4 -> 8 on 32x32
      {3, 1, 7, 9, 1, 3, 3, 1, 1, false},     // one channel each side: an unpaired output channel
      {2, 3, 5, 13, 5, 3, 3, 1, 0, true},     // no padding; 13 columns: a partial vector
      {2, 2, 6, 6, 3, 3, 3, 1, 2, false},     // padding 2 (backward-data takes the reference loops)
      {2, 5, 8, 40, 7, 1, 1, 1, 0, true},     // 1x1, 40 columns: a 32-wide segment and an 8-wide one
      {1, 3, 9, 17, 4, 2, 2, 1, 1, false},    // 2x2 kernel
      {2, 3, 4, 33, 3, 3, 2, 1, 1, true},     // 3x2 kernel (backward-data by the reference loops)
      {2, 16, 16, 16, 16, 3, 3, 1, 1, false}, // 16 -> 16
      {4, 64, 16, 16, 8, 3, 3, 1, 1, true},   // 64 -> 8 on 16x16 (G's 32 px to_img)
      {2, 64, 32, 32, 16, 3, 3, 1, 1, false}, // 64 -> 16 on 32x32: K * C = 1024, the widest direct weight gradient
      {1, 2, 20, 3, 3, 3, 3, 1, 1, false},    // a narrow map: 3 columns, bands of rows
  };
  uint64_t seed = 75000;
  // with AVX-512VL: the blocks of 4 (forward) and 2 (weight gradient) output channels, then the
  // AVX2 pairs and singles; without it only the latter
  std::vector<bool> widths{false};
  c3::cpu::set_direct_wide_registers(true);
  if (c3::cpu::direct_wide_registers()) widths.insert(widths.begin(), true);
  else std::printf("     note: no AVX-512VL on this CPU: the direct loops' 4- and 2-channel blocks are not tested\n");
  for (bool wide : widths) {
    for (int threads : {1, 2}) {
      c3::cpu::set_direct_wide_registers(wide);
      c3::set_num_threads(threads);
      for (const ConvCase& cc : cases) {
        ConvRun r(cc, seed);
        c3::cpu::direct_conv_forward(r.p, r.x.data(), r.w.data(), r.bias, r.y.data());
        c3::cpu::direct_conv_backward_data(r.p, r.dy.data(), r.w.data(), r.dx.data());
        c3::cpu::direct_conv_backward_weight(r.p, r.dy.data(), r.x.data(), r.dw.data());
        r.expect_all(describe(r.p) + " direct" + (wide ? " (AVX-512VL blocks)" : "") + ", " + std::to_string(threads) +
                     " thread(s)");
      }
    }
  }
  // the routing
  c3::cpu::set_direct_conv_enabled(true);
  using c3::cpu::ConvPass;
  auto routes = [](const ConvCase& cc, ConvPass pass) { return c3::cpu::direct_conv_applies(params(cc), pass); };
  const ConvCase g4{64, 4, 32, 32, 8, 3, 3, 1, 1, false}, wide{64, 256, 4, 4, 256, 3, 3, 1, 1, false};
  const ConvCase strided{64, 4, 32, 32, 8, 4, 4, 2, 1, false};
  expect_true(routes(g4, ConvPass::Forward) && routes(g4, ConvPass::BackwardData) &&
                  routes(g4, ConvPass::BackwardWeight), "4 -> 8 channels take the direct loops");
  expect_true(!routes(wide, ConvPass::Forward) && !routes(wide, ConvPass::BackwardWeight), "256 channels do not");
  const ConvCase g32{8, 16, 128, 128, 32, 3, 3, 1, 1, false}, g32t{8, 32, 128, 128, 16, 3, 3, 1, 1, false};
  expect_true(routes(g32, ConvPass::Forward) && routes(g32, ConvPass::BackwardData),
              "16 -> 32 channels: a direct forward and backward-data (16 input-gradient channels)");
  expect_true(routes(g32t, ConvPass::Forward) && !routes(g32t, ConvPass::BackwardData),
              "32 -> 16 channels: a direct forward, but 32 input-gradient channels are too many");
  const ConvCase g64{32, 64, 32, 32, 16, 3, 3, 1, 1, false};
  expect_true(routes(g64, ConvPass::BackwardWeight), "64 -> 16 channels: a direct weight gradient (K * C = 1024)");
  expect_true(!routes(strided, ConvPass::Forward), "strided convs do not");
  c3::cpu::set_direct_conv_enabled(false);
  expect_true(!routes(g4, ConvPass::Forward), "set_direct_conv_enabled(false) turns the path off");
}

C3_TEST(speed_blocked_forward_matches_reference) {
  if (!is_cpu(be, "speed_blocked_forward_matches_reference")) return;
  if (!c3::cpu::direct_loops_available()) {
    std::printf("     note: no AVX2+FMA or Advanced SIMD on this CPU: the blocked forward is never used\n");
    return;
  }
  KernelSweep sweep;
  PathGuard paths;
  const ConvCase cases[] = {
      {3, 9, 16, 16, 7, 4, 4, 2, 1, true},     // rows of 8: tiles of two rows; 7 channels: a part panel
      {2, 8, 18, 16, 8, 4, 4, 2, 1, false},    // rows of 8 on an odd number of rows
      {2, 8, 34, 32, 13, 4, 4, 2, 1, true},    // rows of 16
      {1, 8, 10, 8, 6, 4, 4, 2, 1, false},     // rows of 4: tiles of four rows over 5 rows
      {2, 15, 16, 64, 9, 3, 3, 2, 1, true},    // 3x3 stride 2, rows of 32
      {2, 32, 12, 48, 6, 2, 2, 3, 0, false},   // stride 3
      {8, 32, 16, 16, 64, 4, 4, 2, 1, false},  // D's 32 -> 64 at 16x16
  };
  uint64_t seed = 77000;
  for (int threads : {1, 2}) {
    c3::set_num_threads(threads);
    for (const ConvCase& cc : cases) {
      const Conv2dParams p = params(cc);
      expect_true(c3::cpu::blocked_forward_applies(p), describe(p) + " should take the blocked forward");
      const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * p.R * p.S, ny = p.N * p.K * p.OH * p.OW;
      Vec x = random_vec(nx, ++seed), w = random_vec(nw, ++seed), b = random_vec(p.K, ++seed);
      const float* bias = cc.bias ? b.data() : nullptr;
      Vec y(ny, kNaN), ry(ny);
      c3::cpu::blocked_forward(p, x.data(), w.data(), bias, y.data());
      c3::cpu::conv2d_forward_reference(p, x.data(), w.data(), bias, ry.data());
      expect_close(y, ry, 1e-4, 1e-5 * (p.C * p.R * p.S + 1),
                   describe(p) + " blocked forward, " + std::to_string(threads) + " thread(s)");
    }
  }
  const ConvCase odd{2, 3, 14, 14, 12, 4, 4, 2, 1, false}, narrow{2, 3, 16, 16, 4, 4, 4, 2, 1, false};
  const ConvCase unit{2, 8, 16, 16, 8, 3, 3, 1, 1, false}, shallow{2, 3, 32, 32, 32, 4, 4, 2, 1, false};
  const ConvCase wide4{8, 512, 8, 8, 512, 4, 4, 2, 1, false};
  expect_true(!c3::cpu::blocked_forward_applies(params(odd)), "7-wide rows make no tiles");
  expect_true(!c3::cpu::blocked_forward_applies(params(narrow)), "4 output channels do not fill a panel");
  expect_true(!c3::cpu::blocked_forward_applies(params(unit)), "stride 1 has its own paths");
  expect_true(!c3::cpu::blocked_forward_applies(params(shallow)), "48 taps are too few (D's first conv)");
  expect_true(!c3::cpu::blocked_forward_applies(params(wide4)), "four-row tiles over a 512-channel image miss L1");
}

// ---------------------------------------------------------------- winograd

// max |got - want| / max |want|: the error relative to the output's scale
double scaled_error(const Vec& got, const Vec& want) {
  double e = 0, m = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    e = std::max(e, std::fabs(double(got[i]) - double(want[i])));
    m = std::max(m, std::fabs(double(want[i])));
  }
  return m > 0 ? e / m : e;
}

struct TileGuard {
  ~TileGuard() { c3::cpu::set_winograd_tile(0); }
};

C3_TEST(speed_winograd_matches_direct_conv) {
  if (!is_cpu(be, "speed_winograd_matches_direct_conv")) return;
  PathGuard paths;
  TileGuard tile;
  KernelSweep sweep;
  // The path's shape rules are bypassed: every case runs all three passes on Winograd, with
  // F(2x2) and with F(4x4) tiles.
  const ConvCase cases[] = {
      {2, 16, 4, 4, 16, 3, 3, 1, 1, true},     // D's 4x4 maps: one F(4x4) tile per image
      {3, 17, 7, 9, 20, 3, 3, 1, 1, false},    // odd maps: part tiles at the edges
      {2, 16, 1, 1, 16, 3, 3, 1, 1, true},     // a 1x1 map
      {2, 16, 5, 6, 18, 3, 3, 1, 0, true},     // no padding (backward-data pads 2)
      {1, 16, 5, 5, 16, 3, 3, 1, 2, false},    // padding 2 (backward-data pads 0)
      {2, 16, 96, 96, 16, 3, 3, 1, 1, true},   // one 8-image block over the chunk budget
      {17, 16, 40, 40, 16, 3, 3, 1, 1, false}, // three chunks of one block, the last part-filled
      {16, 32, 4, 4, 48, 3, 3, 1, 1, false},   // many images per GEMM
      {2, 24, 8, 8, 40, 3, 3, 1, 1, true},     // 8x8 maps: four F(4x4) tiles
      {1, 3, 6, 5, 2, 3, 3, 1, 1, true},       // tiny channel counts
  };
  double worst[3] = {0, 0, 0};  // F(2x2), F(4x4), implicit GEMM
  uint64_t seed = 74000;
  for (const ConvCase& cc : cases) {
    const Conv2dParams p = params(cc);
    const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * 9, ny = p.N * p.K * p.OH * p.OW;
    Vec x = random_vec(nx, ++seed), w = random_vec(nw, ++seed), b = random_vec(p.K, ++seed);
    Vec dy = random_vec(ny, ++seed);
    const float* bias = cc.bias ? b.data() : nullptr;
    Vec ry(ny), rdx(nx), rdw(nw);
    c3::cpu::conv2d_forward_reference(p, x.data(), w.data(), bias, ry.data());
    c3::cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), rdx.data());
    c3::cpu::conv2d_backward_weight_reference(p, dy.data(), x.data(), rdw.data());
    for (int path = 0; path < 3; ++path) {
      for (int threads : {1, 2}) {
        c3::set_num_threads(threads);
        Vec y(ny, kNaN), dx(nx, kNaN), dw(nw, kNaN);
        if (path < 2) {
          c3::cpu::set_winograd_tile(path == 0 ? 2 : 4);
          c3::cpu::winograd_forward(p, x.data(), w.data(), bias, y.data());
          c3::cpu::winograd_backward_data(p, dy.data(), w.data(), dx.data());
          c3::cpu::winograd_backward_weight(p, dy.data(), x.data(), dw.data());
        } else {
          c3::cpu::set_winograd_enabled(false);
          c3::cpu::set_winograd_s2_enabled(false);
          c3::cpu::set_direct_conv_enabled(false);
          c3::cpu::conv2d_forward(p, x.data(), w.data(), bias, y.data());
          c3::cpu::conv2d_backward_data(p, dy.data(), w.data(), dx.data());
          c3::cpu::conv2d_backward_weight(p, dy.data(), x.data(), dw.data());
        }
        static const char* names[3] = {" winograd F(2x2)", " winograd F(4x4)", " implicit gemm"};
        const std::string what = describe(p) + names[path] + tag(c3::cpu::gemm_micro_kernel(), threads);
        // F(4x4)'s larger transform entries cost about a decimal digit: a looser bound for it
        const double loose = path == 1 ? 10.0 : 1.0;
        expect_close(y, ry, 1e-4 * loose, 2e-5 * loose * (p.C * 9 + 1), what + " forward");
        expect_close(dx, rdx, 1e-4 * loose, 2e-5 * loose * (p.K * 9 + 1), what + " backward_data");
        expect_close(dw, rdw, 1e-4 * loose, 2e-5 * loose * (p.N * p.OH * p.OW + 1), what + " backward_weight");
        worst[path] = std::max({worst[path], scaled_error(y, ry), scaled_error(dx, rdx), scaled_error(dw, rdw)});
      }
    }
  }
  // the routing: which shapes conv2d sends to Winograd, pass by pass
  c3::cpu::set_winograd_enabled(true);
  using c3::cpu::ConvPass;
  auto routes = [](const ConvCase& cc, ConvPass pass) { return c3::cpu::winograd_applies(params(cc), pass); };
  const ConvCase d256{64, 256, 4, 4, 256, 3, 3, 1, 1, false}, few_tiles{4, 512, 4, 4, 512, 3, 3, 1, 1, false};
  const ConvCase d512_b8{8, 512, 4, 4, 512, 3, 3, 1, 1, false}, d512_b32{32, 512, 4, 4, 512, 3, 3, 1, 1, false};
  const ConvCase narrow{64, 4, 32, 32, 8, 3, 3, 1, 1, false}, strided{64, 256, 8, 8, 256, 3, 3, 2, 1, false};
  const ConvCase g64{8, 64, 64, 64, 64, 3, 3, 1, 1, false};
  expect_true(routes(d256, ConvPass::Forward) && routes(d256, ConvPass::BackwardData) &&
                  routes(d256, ConvPass::BackwardWeight), "D's 256-channel 4x4 convs at batch 64 take Winograd");
  expect_true(!routes(few_tiles, ConvPass::Forward) && !routes(few_tiles, ConvPass::BackwardWeight),
              "16 tiles are too few for Winograd");
  expect_true(routes(d512_b8, ConvPass::Forward) && routes(d512_b8, ConvPass::BackwardData) &&
                  routes(d512_b8, ConvPass::BackwardWeight), "D's 512-channel 4x4 convs at batch 8 (32 tiles) take Winograd");
  expect_true(routes(d512_b32, ConvPass::BackwardWeight), "D's 512-channel 4x4 weight gradient at batch 32 takes Winograd");
  expect_true(!routes(narrow, ConvPass::Forward), "4 -> 8 channels stay off Winograd");
  expect_true(!routes(strided, ConvPass::Forward), "stride 2 is not Winograd's");
  expect_true(routes(g64, ConvPass::Forward) && !routes(g64, ConvPass::BackwardWeight),
              "64 channels: Winograd forward, implicit GEMM weight gradient");
  c3::cpu::set_winograd_enabled(false);
  expect_true(!routes(d256, ConvPass::Forward), "set_winograd_enabled(false) turns the path off");
  // F(2x2, 3x3) only adds, subtracts and halves: its error should stay near the direct sum's
  expect_true(worst[0] < 1e-5, "winograd F(2x2) max scaled error " + std::to_string(worst[0]));
  expect_true(worst[1] < 1e-4, "winograd F(4x4) max scaled error " + std::to_string(worst[1]));
  std::printf("     note: max error / max |output| vs float64: winograd F(2x2) %.2e, F(4x4) %.2e, implicit gemm %.2e\n",
              worst[0], worst[1], worst[2]);
}

// ---------------------------------------------------------------- upsample then 3x3 conv

C3_TEST(speed_conv2d_up_matches_upsampled_conv) {
  if (!is_cpu(be, "speed_conv2d_up_matches_upsampled_conv")) return;
  PathGuard paths;
  KernelSweep sweep;
  // p is the conv on x's size (3x3, stride 1, pad 1); the output is 2H x 2W
  const ConvCase cases[] = {
      {8, 32, 8, 8, 16, 3, 3, 1, 1, true},     // F(4x4, 2x2) forward and backward-data, F(2x2) weight gradient
      {8, 32, 16, 16, 16, 3, 3, 1, 1, false},  // F(4x4, 2x2) in all three passes
      {3, 33, 5, 7, 17, 3, 3, 1, 1, false},    // odd maps and channels under 8x8: the fallback
      {2, 4, 5, 6, 3, 3, 3, 1, 1, true},       // too few channels: upsample, then the 3x3 conv's path
      {40, 40, 4, 4, 20, 3, 3, 1, 1, false},   // 4x4 maps: the fallback
      {4, 32, 9, 11, 16, 3, 3, 1, 1, false},   // odd maps from 8x8: the phases, F(2x2, 2x2)
  };
  double worst = 0;
  uint64_t seed = 76000;
  for (const ConvCase& cc : cases) {
    const Conv2dParams p = params(cc);
    const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * 9, ny = p.N * p.K * 4 * p.H * p.W;
    Vec x = random_vec(nx, ++seed), w = random_vec(nw, ++seed), b = random_vec(p.K, ++seed), dy = random_vec(ny, ++seed);
    const float* bias = cc.bias ? b.data() : nullptr;
    Vec ry(ny), rdx(nx), rdw(nw);
    c3::cpu::conv2d_up_forward_reference(p, x.data(), w.data(), bias, ry.data());
    c3::cpu::conv2d_up_backward_data_reference(p, dy.data(), w.data(), rdx.data());
    c3::cpu::conv2d_up_backward_weight_reference(p, dy.data(), x.data(), rdw.data());
    for (const c3::cpu::MicroKernel* k : sweep.kernels())
      for (int threads : {1, 2}) {
        c3::cpu::set_gemm_micro_kernel(*k);
        c3::set_num_threads(threads);
        Vec y(ny, kNaN), dx(nx, kNaN), dw(nw, kNaN);
        c3::cpu::conv2d_up_forward(p, x.data(), w.data(), bias, y.data());
        c3::cpu::conv2d_up_backward_data(p, dy.data(), w.data(), dx.data());
        c3::cpu::conv2d_up_backward_weight(p, dy.data(), x.data(), dw.data());
        const std::string what = describe(p) + " upsampled" + (c3::cpu::conv2d_up_applies(p) ? " (phases)" : " (fallback)") +
                                 tag(*k, threads);
        // the phase kernels sum up to 4 taps; F(4x4, 2x2) loses a few bits as on the stride-2 path
        expect_close(y, ry, 1e-3, 2e-4 * (p.C * 9 + 1), what + " forward");
        expect_close(dx, rdx, 1e-3, 2e-4 * (p.K * 9 + 1), what + " backward_data");
        expect_close(dw, rdw, 1e-3, 2e-4 * (4 * p.N * p.H * p.W + 1), what + " backward_weight");
        worst = std::max({worst, scaled_error(y, ry), scaled_error(dx, rdx), scaled_error(dw, rdw)});
      }
  }
  const Conv2dParams g16{32, 128, 8, 8, 128, 3, 3, 8, 8, 1, 1}, narrow{32, 8, 32, 32, 16, 3, 3, 32, 32, 1, 1};
  expect_true(c3::cpu::conv2d_up_applies(g16), "G's 128 -> 128 upsample block at batch 32 runs on the phases");
  expect_true(!c3::cpu::conv2d_up_applies(narrow), "8 input channels: upsample, then the 3x3 path");
  const Conv2dParams g4{32, 256, 4, 4, 256, 3, 3, 4, 4, 1, 1};
  expect_true(!c3::cpu::conv2d_up_applies(g4), "4x4 maps: upsample, then the 3x3 path");
  c3::cpu::set_winograd_s2_enabled(false);
  expect_true(!c3::cpu::conv2d_up_applies(g16), "C3GAN_WINOGRAD_S2=0 turns the phase path off");
  expect_true(worst < 1e-4, "upsampled conv max scaled error " + std::to_string(worst));
  std::printf("     note: max error / max |output| vs float64: upsample + 3x3 conv on the phases %.2e\n", worst);
}

// ---------------------------------------------------------------- winograd, 4x4 stride 2

C3_TEST(speed_winograd_s2_matches_direct_conv) {
  if (!is_cpu(be, "speed_winograd_s2_matches_direct_conv")) return;
  PathGuard paths;
  KernelSweep sweep;
  // The shape rules are bypassed: every case runs the three passes of the phase split.
  const ConvCase cases[] = {
      {2, 16, 8, 8, 32, 4, 4, 2, 1, true},     // D's layers: even maps, padding 1
      {3, 5, 9, 7, 6, 4, 4, 2, 1, false},      // odd maps: a last row and column no tap of some phase reaches
      {2, 4, 10, 10, 3, 4, 4, 2, 0, true},     // no padding
      {2, 3, 8, 6, 5, 4, 4, 2, 2, false},      // padding 2
      {1, 2, 9, 9, 4, 4, 4, 2, 3, true},       // padding 3: phases that start past the input
      {2, 8, 4, 4, 8, 4, 4, 2, 1, false},      // 2x2 output: one tile per image
      {2, 4, 66, 66, 8, 4, 4, 2, 1, false},    // a large map
      {11, 8, 12, 10, 8, 4, 4, 2, 1, true},    // two 8-image blocks, the second part-filled
      {1, 3, 4, 5, 2, 4, 4, 2, 1, false},      // output 2x2 from a 4x5 map
  };
  double worst[2] = {0, 0};  // F(2x2, 2x2), F(4x4, 2x2)
  uint64_t seed = 75000;
  for (const ConvCase& cc : cases) {
    const Conv2dParams p = params(cc);
    const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * 16, ny = p.N * p.K * p.OH * p.OW;
    Vec x = random_vec(nx, ++seed), w = random_vec(nw, ++seed), b = random_vec(p.K, ++seed);
    Vec dy = random_vec(ny, ++seed);
    const float* bias = cc.bias ? b.data() : nullptr;
    Vec ry(ny), rdx(nx), rdw(nw);
    c3::cpu::conv2d_forward_reference(p, x.data(), w.data(), bias, ry.data());
    c3::cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), rdx.data());
    c3::cpu::conv2d_backward_weight_reference(p, dy.data(), x.data(), rdw.data());
    for (int tile : {2, 4})
      for (int threads : {1, 2}) {
        c3::set_num_threads(threads);
        c3::cpu::set_winograd_s2_tile(tile);
        Vec y(ny, kNaN), dx(nx, kNaN), dw(nw, kNaN);
        c3::cpu::winograd_s2_forward(p, x.data(), w.data(), bias, y.data());
        c3::cpu::winograd_s2_backward_data(p, dy.data(), w.data(), dx.data());
        c3::cpu::winograd_s2_backward_weight(p, dy.data(), x.data(), dw.data());
        const std::string what = describe(p) + " winograd s2 F(" + std::to_string(tile) + "x" + std::to_string(tile) +
                                  ", 2x2)" + tag(c3::cpu::gemm_micro_kernel(), threads);
        // F(4x4, 2x2)'s transform entries reach 8 and 1/6: a looser bound for it
        const double loose = tile == 4 ? 10.0 : 1.0;
        expect_close(y, ry, 1e-4 * loose, 2e-5 * loose * (p.C * 16 + 1), what + " forward");
        expect_close(dx, rdx, 1e-4 * loose, 2e-5 * loose * (p.K * 16 + 1), what + " backward_data");
        expect_close(dw, rdw, 1e-4 * loose, 2e-5 * loose * (p.N * p.OH * p.OW + 1), what + " backward_weight");
        double& w_tile = worst[tile == 4];
        w_tile = std::max({w_tile, scaled_error(y, ry), scaled_error(dx, rdx), scaled_error(dw, rdw)});
      }
    c3::cpu::set_winograd_s2_tile(0);
  }
  // the weight gradient of few channel pairs by the direct loops over the phases
  c3::cpu::set_winograd_s2_enabled(true);
  const ConvCase narrow_cases[] = {{2, 3, 32, 32, 32, 4, 4, 2, 1, false}, {1, 2, 9, 11, 16, 4, 4, 2, 3, false},
                                   {3, 3, 12, 12, 8, 4, 4, 2, 0, false}};
  for (const ConvCase& cc : narrow_cases) {
    const Conv2dParams p = params(cc);
    if (!c3::cpu::phased_direct_applies(p)) {  // the direct loops need their vectors
      expect_true(!c3::cpu::direct_loops_available(), describe(p) + " takes the phased direct weight gradient");
      continue;
    }
    const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * 16, ny = p.N * p.K * p.OH * p.OW;
    Vec x = random_vec(nx, ++seed), dy = random_vec(ny, ++seed), rdw(nw), dw(nw, kNaN);
    c3::cpu::conv2d_backward_weight_reference(p, dy.data(), x.data(), rdw.data());
    c3::cpu::phased_direct_backward_weight(p, dy.data(), x.data(), dw.data());
    expect_close(dw, rdw, 1e-4, 2e-5 * (p.N * p.OH * p.OW + 1), describe(p) + " phased direct backward_weight");
  }
  const ConvCase first64{32, 3, 64, 64, 64, 4, 4, 2, 1, false};
  expect_true(!c3::cpu::phased_direct_applies(params(first64)), "3 -> 64 (768 phase pairs) stays on the implicit GEMM");
  // the routing, pass by pass, on the model's shapes
  using c3::cpu::ConvPass;
  auto routes = [](const ConvCase& cc, ConvPass pass) { return c3::cpu::winograd_s2_applies(params(cc), pass); };
  const ConvCase d64px{32, 128, 16, 16, 256, 4, 4, 2, 1, false}, first{32, 3, 64, 64, 64, 4, 4, 2, 1, false};
  const ConvCase narrow_out{64, 32, 16, 16, 64, 4, 4, 2, 1, false}, small_map{64, 64, 8, 8, 128, 4, 4, 2, 1, false};
  const ConvCase few_tiles{8, 512, 8, 8, 512, 4, 4, 2, 1, false}, s1{32, 128, 16, 16, 256, 4, 4, 1, 1, false};
  expect_true(routes(d64px, ConvPass::Forward) && routes(d64px, ConvPass::BackwardData) &&
                  routes(d64px, ConvPass::BackwardWeight), "D's 128 -> 256 at 64 px takes the phase split");
  expect_true(!routes(first, ConvPass::Forward) && !routes(first, ConvPass::BackwardWeight),
              "3 input channels stay on the implicit GEMM");
  expect_true(routes(narrow_out, ConvPass::Forward) && routes(narrow_out, ConvPass::BackwardData) &&
                  routes(narrow_out, ConvPass::BackwardWeight), "32 -> 64 on 8x8 outputs at batch 64: F(4x4, 2x2)");
  expect_true(routes(small_map, ConvPass::BackwardData) && routes(small_map, ConvPass::Forward) &&
                  !routes(small_map, ConvPass::BackwardWeight),
              "64 channels on a 4x4 output at batch 64: F(4x4, 2x2) forward and backward-data, implicit weight gradient");
  const ConvCase narrow16{64, 16, 16, 16, 32, 4, 4, 2, 1, false};
  expect_true(!routes(narrow16, ConvPass::Forward), "16 -> 32 channels stay off the phase split");
  const ConvCase d64px_last{32, 256, 8, 8, 512, 4, 4, 2, 1, false};
  expect_true(routes(d64px_last, ConvPass::Forward) && routes(d64px_last, ConvPass::BackwardData) &&
                  routes(d64px_last, ConvPass::BackwardWeight), "256 -> 512 on a 4x4 output at batch 32: all three");
  expect_true(!routes(few_tiles, ConvPass::BackwardWeight) && !routes(few_tiles, ConvPass::BackwardData) &&
                  routes(few_tiles, ConvPass::Forward),
              "32 tiles: Winograd forward only");
  expect_true(!routes(s1, ConvPass::Forward), "stride 1 is not the phase split's");
  c3::cpu::set_winograd_s2_enabled(false);
  expect_true(!routes(d64px, ConvPass::Forward), "set_winograd_s2_enabled(false) turns the path off");
  // the tile by shape: F(4x4, 2x2) on whole 4x4 tiles with 32 of them or more
  auto tile = [](const ConvCase& cc, ConvPass pass) { return c3::cpu::winograd_s2_tile(params(cc), pass); };
  const ConvCase d32x32{32, 64, 32, 32, 128, 4, 4, 2, 1, false}, odd{32, 64, 10, 10, 128, 4, 4, 2, 1, false};
  expect_true(tile(d32x32, ConvPass::Forward) == 4 && tile(d32x32, ConvPass::BackwardData) == 4 &&
                  tile(d32x32, ConvPass::BackwardWeight) == 4,
              "64 -> 128 from 32x32 maps at batch 32 takes F(4x4, 2x2)");
  expect_true(tile(odd, ConvPass::Forward) == 2, "5x5 outputs (4 F(4x4) tiles against 9 F(2x2) ones) take F(2x2, 2x2)");
  expect_true(tile(d64px_last, ConvPass::Forward) == 4 && tile(d64px_last, ConvPass::BackwardWeight) == 2,
              "256 -> 512 on a 4x4 output at batch 32: F(4x4, 2x2) forward, F(2x2, 2x2) weight gradient");
  // F(2x2, 2x2)'s transforms are integer: the error stays near the direct sum's
  expect_true(worst[0] < 1e-5, "winograd s2 F(2x2) max scaled error " + std::to_string(worst[0]));
  expect_true(worst[1] < 1e-4, "winograd s2 F(4x4) max scaled error " + std::to_string(worst[1]));
  std::printf("     note: max error / max |output| vs float64: winograd 4x4 stride 2 F(2x2) %.2e, F(4x4) %.2e\n", worst[0],
              worst[1]);
}

// ---------------------------------------------------------------- blocked backward-data, 4x4 stride 2

C3_TEST(speed_blocked_backward_data_matches_reference) {
  if (!is_cpu(be, "speed_blocked_backward_data_matches_reference")) return;
  if (!c3::cpu::direct_loops_available()) {
    std::printf("     note: blocked backward-data skipped, no AVX2+FMA or Advanced SIMD on this CPU\n");
    return;
  }
  PathGuard paths;
  KernelSweep sweep;
  const ConvCase cases[] = {
      {2, 8, 32, 32, 40, 4, 4, 2, 1, false},   // 16-wide phases: one-row tiles
      {3, 7, 16, 16, 33, 4, 4, 2, 1, false},   // 8-wide: two-row tiles; a part panel of channels
      {2, 12, 8, 8, 32, 4, 4, 2, 1, false},    // 4-wide: four-row tiles
      {2, 6, 16, 16, 32, 4, 4, 2, 2, false},   // padding 2
      {2, 6, 16, 16, 32, 4, 4, 2, 0, false},   // no padding
      {1, 6, 16, 16, 32, 4, 4, 2, 3, false},   // padding 3
      {1, 9, 15, 16, 32, 4, 4, 2, 1, false},   // odd height: the second row phase is one shorter
  };
  uint64_t seed = 77000;
  for (const ConvCase& cc : cases) {
    const Conv2dParams p = params(cc);
    expect_true(c3::cpu::blocked_backward_data_applies(p), describe(p) + " takes the blocked backward-data");
    const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * 16, ny = p.N * p.K * p.OH * p.OW;
    Vec w = random_vec(nw, ++seed), dy = random_vec(ny, ++seed), rdx(nx);
    c3::cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), rdx.data());
    for (int threads : {1, 2}) {
      c3::set_num_threads(threads);
      Vec dx(nx, kNaN);  // every element is written
      c3::cpu::blocked_backward_data(p, dy.data(), w.data(), dx.data());
      expect_close(dx, rdx, 1e-4, 2e-5 * (p.K * 16 + 1), describe(p) + " blocked backward_data, " + std::to_string(threads) + " threads");
    }
  }
  const ConvCase odd_width{1, 6, 16, 15, 32, 4, 4, 2, 1, false}, narrow{2, 8, 8, 8, 8, 4, 4, 2, 1, false};
  const ConvCase wide{8, 512, 8, 8, 512, 4, 4, 2, 1, false};
  expect_true(!c3::cpu::blocked_backward_data_applies(params(wide)), "16 MiB of weights stay on the Winograd path");
  expect_true(!c3::cpu::blocked_backward_data_applies(params(odd_width)), "odd widths stay on the GEMM paths");
  expect_true(!c3::cpu::blocked_backward_data_applies(params(narrow)), "a short tap loop (K * 4 < 128) stays on the GEMM paths");
}

// ---------------------------------------------------------------- transformed-weight cache

C3_TEST(speed_winograd_weight_cache) {
  if (!is_cpu(be, "speed_winograd_weight_cache")) return;
  namespace wino = c3::cpu::wino;
  PathGuard paths;
  c3::cpu::set_winograd_enabled(true);
  const size_t budget = wino::weight_cache_bytes();
  wino::set_weight_cache_bytes(size_t(64) << 20);
  wino::clear_weight_cache();
  const ConvCase cc{3, 16, 8, 8, 24, 3, 3, 1, 1, false};
  const Conv2dParams p = params(cc);
  const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * 9, ny = p.N * p.K * p.OH * p.OW;
  Vec x = random_vec(nx, 76001), w = random_vec(nw, 76002), dy = random_vec(ny, 76003);
  Vec y1(ny), y2(ny), ry(ny), dx1(nx), dx2(nx), rdx(nx);
  const wino::WeightCacheStats s0 = wino::weight_cache_stats();
  c3::cpu::winograd_forward(p, x.data(), w.data(), nullptr, y1.data());
  c3::cpu::winograd_forward(p, x.data(), w.data(), nullptr, y2.data());
  c3::cpu::winograd_backward_data(p, dy.data(), w.data(), dx1.data());
  c3::cpu::winograd_backward_data(p, dy.data(), w.data(), dx2.data());
  const wino::WeightCacheStats s1 = wino::weight_cache_stats();
  expect_true(s1.hits == s0.hits + 2 && s1.misses == s0.misses + 2, "the second forward and backward-data reuse the panels");
  expect_true(y1 == y2 && dx1 == dx2, "reused panels give the same bits");
  // an optimiser step writes the weights in place: same pointer, new values
  for (float& v : w) v *= 0.5f;
  c3::cpu::winograd_forward(p, x.data(), w.data(), nullptr, y1.data());
  c3::cpu::winograd_backward_data(p, dy.data(), w.data(), dx1.data());
  c3::cpu::conv2d_forward_reference(p, x.data(), w.data(), nullptr, ry.data());
  c3::cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), rdx.data());
  const wino::WeightCacheStats s2 = wino::weight_cache_stats();
  expect_true(s2.hits == s1.hits && s2.misses == s1.misses + 2, "changed weights are transformed again");
  expect_close(y1, ry, 1e-4, 1e-4 * (p.C * 9 + 1), "forward after the weights changed");
  expect_close(dx1, rdx, 1e-4, 1e-4 * (p.K * 9 + 1), "backward-data after the weights changed");
  expect_true(s2.entries == 2 && s2.bytes > 0, "one entry per use of the weights");
  wino::set_weight_cache_bytes(0);
  expect_true(wino::weight_cache_stats().entries == 0, "a zero budget drops every entry");
  c3::cpu::winograd_forward(p, x.data(), w.data(), nullptr, y2.data());
  expect_true(y1 == y2 && wino::weight_cache_stats().entries == 0, "with the cache off the results are the same");
  wino::set_weight_cache_bytes(budget);
}

// ---------------------------------------------------------------- constant channels

struct CodeCase {
  int64_t N, Cx, Kc, H, W, K, R;
};

const CodeCase kCodeCases[] = {
    {2, 3, 4, 5, 6, 5, 3},   // 3x3 'same'
    {3, 0, 2, 4, 4, 3, 3},   // only code channels
    {2, 2, 3, 1, 1, 4, 3},   // a 1x1 image: every position is a border
    {2, 3, 5, 2, 7, 3, 5},   // 5x5 kernel on a map shorter than the kernel
    {1, 1, 2, 6, 3, 2, 1},   // 1x1 kernel: no padding
    {4, 16, 20, 8, 8, 32, 3}, // the image head's shape in small
    {2, 4, 3, 9, 11, 6, 7},  // 7x7
};

// xin = concat(x, code tiled over H x W) along channels, on the host
Vec tiled(const CodeCase& c, const Vec& x, const Vec& code) {
  const int64_t HW = c.H * c.W, C = c.Cx + c.Kc;
  Vec xin(c.N * C * HW);
  for (int64_t n = 0; n < c.N; ++n) {
    std::copy(x.begin() + n * c.Cx * HW, x.begin() + (n + 1) * c.Cx * HW, xin.begin() + n * C * HW);
    for (int64_t j = 0; j < c.Kc; ++j)
      std::fill(xin.begin() + (n * C + c.Cx + j) * HW, xin.begin() + (n * C + c.Cx + j + 1) * HW, code[n * c.Kc + j]);
  }
  return xin;
}

Conv2dParams code_params(const CodeCase& c) {
  const int64_t pad = (c.R - 1) / 2;
  return Conv2dParams{c.N, c.Cx + c.Kc, c.H, c.W, c.K, c.R, c.R, c.H, c.W, 1, pad};
}

std::string describe(const CodeCase& c) {
  return "const channels N" + std::to_string(c.N) + " Cx" + std::to_string(c.Cx) + " Kc" + std::to_string(c.Kc) + " " +
         std::to_string(c.H) + "x" + std::to_string(c.W) + " K" + std::to_string(c.K) + " " + std::to_string(c.R) +
         "x" + std::to_string(c.R);
}

struct CodeRef {
  Vec y, dw, dcode;
};

// the plain conv of the tiled input: y, dw and dcode (= dx of the code channels summed over H, W)
CodeRef code_reference(const CodeCase& c, const Vec& x, const Vec& code, const Vec& w, const Vec& dy) {
  const Conv2dParams p = code_params(c);
  const Vec xin = tiled(c, x, code);
  CodeRef r{Vec(c.N * c.K * c.H * c.W), Vec(w.size()), Vec(c.N * c.Kc, 0.0f)};
  Vec dxin(xin.size());
  c3::cpu::conv2d_forward_reference(p, xin.data(), w.data(), nullptr, r.y.data());
  c3::cpu::conv2d_backward_weight_reference(p, dy.data(), xin.data(), r.dw.data());
  c3::cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), dxin.data());
  const int64_t HW = c.H * c.W;
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t j = 0; j < c.Kc; ++j) {
      double s = 0;
      for (int64_t i = 0; i < HW; ++i) s += dxin[(n * p.C + c.Cx + j) * HW + i];
      r.dcode[n * c.Kc + j] = static_cast<float>(s);
    }
  return r;
}

C3_TEST(speed_conv2d_code_channels_match_tiled_conv) {
  if (!be.conv2d_code_channels) {
    std::printf("     note: %s has no conv2d_code_channels (ops fall back to the plain conv)\n", be.name);
    return;
  }
  uint64_t seed = 72000;
  for (const CodeCase& c : kCodeCases) {
    const Conv2dParams p = code_params(c);
    const int64_t RS = c.R * c.R;
    Vec x = random_vec(c.N * c.Cx * c.H * c.W, ++seed), code = random_vec(c.N * c.Kc, ++seed);
    Vec w = random_vec(c.K * p.C * RS, ++seed), dy = random_vec(c.N * c.K * c.H * c.W, ++seed);
    const CodeRef ref = code_reference(c, x, code, w, dy);
    const std::string what = describe(c);
    // forward: the kernel adds the code part onto y, here onto the reference's x part
    Vec wx(c.K * c.Cx * RS);
    for (int64_t k = 0; k < c.K; ++k)
      std::copy(w.begin() + k * p.C * RS, w.begin() + (k * p.C + c.Cx) * RS, wx.begin() + k * c.Cx * RS);
    Conv2dParams px = p;
    px.C = c.Cx;
    Vec yx(ref.y.size());
    c3::cpu::conv2d_forward_reference(px, x.data(), wx.data(), nullptr, yx.data());
    Buf bcode(be, code), bw(be, w), bdy(be, dy), by(be, yx);
    be.conv2d_code_channels(false, p, c.Kc, bcode.p(), bw.p(), nullptr, by.p(), nullptr, nullptr);
    expect_close(by.host(), ref.y, 1e-4, 1e-5 * (p.C * RS + 1), what + " forward");
    // backward: dw's code part and dcode; dw's x part is left as it was
    const float sentinel = 7.0f;
    Buf bdw(be, Vec(w.size(), sentinel)), bdc(be, Vec(code.size(), kNaN));
    be.conv2d_code_channels(true, p, c.Kc, bcode.p(), bw.p(), bdy.p(), nullptr, bdw.p(), bdc.p());
    Vec dw = bdw.host(), want_dw = ref.dw;
    for (int64_t k = 0; k < c.K; ++k)
      std::fill(want_dw.begin() + k * p.C * RS, want_dw.begin() + (k * p.C + c.Cx) * RS, sentinel);
    expect_close(dw, want_dw, 1e-4, 1e-5 * (c.N * c.H * c.W + 1), what + " dw (code part; x part untouched)");
    expect_close(bdc.host(), ref.dcode, 1e-4, 1e-5 * (c.K * RS * c.H * c.W + 1), what + " dcode");
    // either output may be null
    Buf bdc2(be, Vec(code.size(), kNaN));
    be.conv2d_code_channels(true, p, c.Kc, bcode.p(), bw.p(), bdy.p(), nullptr, nullptr, bdc2.p());
    expect_close(bdc2.host(), ref.dcode, 1e-4, 1e-5 * (c.K * RS * c.H * c.W + 1), what + " dcode without dw");
  }
}

// The checked op on this backend (the kernel where the backend has it, the plain conv of the
// tiled input where it does not) against the same references, and its argument checks.
C3_TEST(speed_ops_conv2d_const_channels) {
  namespace ops = c3::ops;
  const c3::Device d = std::string(be.name) == "cuda" ? c3::Device::CUDA : c3::Device::CPU;
  uint64_t seed = 73000;
  for (const CodeCase& c : kCodeCases) {
    const Conv2dParams p = code_params(c);
    Vec x = random_vec(c.N * c.Cx * c.H * c.W, ++seed), code = random_vec(c.N * c.Kc, ++seed);
    Vec w = random_vec(c.K * p.C * c.R * c.R, ++seed), dy = random_vec(c.N * c.K * c.H * c.W, ++seed);
    const CodeRef ref = code_reference(c, x, code, w, dy);
    // the reference's dx of the x channels
    const Vec xin = tiled(c, x, code);
    Vec dxin(xin.size());
    c3::cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), dxin.data());
    Vec want_dx(x.size());
    const int64_t HW = c.H * c.W;
    for (int64_t n = 0; n < c.N; ++n)
      std::copy(dxin.begin() + n * p.C * HW, dxin.begin() + (n * p.C + c.Cx) * HW, want_dx.begin() + n * c.Cx * HW);

    auto host = [](const c3::Tensor& t) {
      Vec h(static_cast<size_t>(t.numel()));
      ops::to_host(t, h.data(), h.size());
      return h;
    };
    const c3::Tensor tx = ops::from_host(d, {c.N, c.Cx, c.H, c.W}, x.data(), x.size());
    const c3::Tensor tc = ops::from_host(d, {c.N, c.Kc}, code.data(), code.size());
    const c3::Tensor tw = ops::from_host(d, {c.K, p.C, c.R, c.R}, w.data(), w.size());
    const c3::Tensor tdy = ops::from_host(d, {c.N, c.K, c.H, c.W}, dy.data(), dy.size());
    const std::string what = "ops " + describe(c);
    // the x channels go through the tile GEMM (TF32 products on CUDA's default math)
    const double ty = p.C * c.R * c.R + 1, tdx = c.K * c.R * c.R + 1, tdw = c.N * HW + 1;
    expect_close(host(ops::conv2d_const_channels(tx, tw, tc)), ref.y, product_tol(be, 1e-4, 1e-5 * ty, ty),
                 what + " forward");
    const ops::ConstChannelsGrads g = ops::conv2d_const_channels_backward(tdy, tx, tw, tc, true, true, true);
    expect_close(host(g.dx), want_dx, product_tol(be, 1e-4, 1e-5 * tdx, tdx), what + " dx");
    expect_close(host(g.dw), ref.dw, product_tol(be, 1e-4, 1e-5 * tdw, tdw), what + " dw");
    expect_close(host(g.dcode), ref.dcode, 1e-4, 1e-5 * (c.K * c.R * c.R * HW + 1), what + " dcode");
    const ops::ConstChannelsGrads only = ops::conv2d_const_channels_backward(tdy, tx, tw, tc, false, false, true);
    expect_true(!only.dx.defined() && !only.dw.defined() && only.dcode.defined(), what + ": only dcode asked for");
  }
  // argument checks name the op and the problem
  auto throws = [&](const std::vector<int64_t>& xs, const std::vector<int64_t>& ws, const std::vector<int64_t>& cs,
                    const std::string& needle) {
    const c3::Tensor tx = ops::full(d, xs, 1.0f), tw = ops::full(d, ws, 1.0f), tc = ops::full(d, cs, 1.0f);
    try {
      ops::conv2d_const_channels(tx, tw, tc);
    } catch (const std::exception& e) {
      const std::string m = e.what();
      expect_true(m.find("conv2d_const_channels") != std::string::npos && m.find(needle) != std::string::npos,
                  "error message '" + m + "' should name the op and contain '" + needle + "'");
      return;
    }
    expect_true(false, "conv2d_const_channels should reject " + needle);
  };
  throws({2, 3, 4, 4}, {5, 6, 2, 2}, {2, 3}, "odd square kernel");
  throws({2, 3, 4, 4}, {5, 6, 3, 1}, {2, 3}, "odd square kernel");
  throws({2, 3, 4, 4}, {5, 7, 3, 3}, {2, 3}, "expects 7 input channels");
  throws({2, 3, 4, 4}, {5, 6, 3, 3}, {3, 3}, "has 3 rows");
  throws({2, 3, 4, 4}, {5, 6, 3, 3}, {2, 3, 1}, "rank 2");
}

}  // namespace
