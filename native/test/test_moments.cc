// The conv -> batch-norm statistics hand-off (backend.h: conv2d_forward's moments, batch norm's
// given moments): the conv's output is the same with or without them, the moments are the
// output's own per-channel mean and biased variance (float64 loops over the downloaded output),
// and a batch norm fed them gives what it gives when it sums x itself.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/threadpool.h"
#include "../cpu/conv_direct.h"
#include "../cpu/kernels.h"
#include "../cpu/winograd.h"
#include "harness.h"

namespace {

using c3::Backend;
using c3::BnEpilogue;
using c3::Conv2dParams;
using c3::test::Buf;
using c3::test::expect_close;
using c3::test::random_vec;
using Vec = std::vector<float>;
using DVec = std::vector<double>;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// per channel of x (N, C, HW): mean and biased variance, interleaved as the moments are
DVec moments_d(int64_t N, int64_t C, int64_t HW, const Vec& x) {
  DVec m(2 * C, 0.0);
  const double cnt = static_cast<double>(N * HW);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, q = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s += x[(n * C + c) * HW + i];
    const double mean = s / cnt;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double d = x[(n * C + c) * HW + i] - mean;
        q += d * d;
      }
    m[2 * c] = mean;
    m[2 * c + 1] = q / cnt;
  }
  return m;
}

double max_abs(const Vec& v) {
  double a = 0;
  for (float f : v) {
    const double m = std::fabs(static_cast<double>(f));
    if (m > a) a = m;  // (an fmax reduction here crashes aarch64 g++ 12's vectoriser)
  }
  return a;
}

// The moments against the float64 ones of y itself: float sums over tiles or chunks, merged in
// double, so a few float roundings of the values' scale.
void expect_moments(const Vec& got, int64_t N, int64_t C, int64_t HW, const Vec& y, const std::string& what) {
  const DVec want = moments_d(N, C, HW, y);
  const double scale = max_abs(y);
  DVec mean(C), var(C);
  Vec gmean(C), gvar(C);
  for (int64_t c = 0; c < C; ++c) mean[c] = want[2 * c], var[c] = want[2 * c + 1], gmean[c] = got[2 * c], gvar[c] = got[2 * c + 1];
  expect_close(gmean, mean, 1e-6, 2e-6 * scale, what + " mean");
  expect_close(gvar, var, 2e-5, 4e-6 * scale * scale, what + " variance");
}

struct Case {
  int64_t N, C, H, W, K, R, S, stride, pad;
  float bias_offset;  // added to the bias: a mean large against the spread
};

// Shapes for every path of the CUDA tile epilogue as well as the CPU's: the small-M (K <= 32) and
// big tiles, a last column tile cut short, several tiles per channel, and small outputs with a
// long reduction (K split across blocks on a device with few SMs: the moments then come from a
// pass over the output).
const Case kCases[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 0.0f},      // 84 columns: one partial tile, small M
    {3, 8, 20, 20, 40, 3, 3, 1, 1, 0.0f},   // 1200 columns over 10 tiles, the last of 48; big M
    {4, 16, 12, 12, 33, 3, 3, 1, 1, 50.0f}, // 576 columns, K just over the small tile, offset mean
    {2, 64, 4, 4, 48, 3, 3, 1, 1, 0.0f},    // 32 columns, 576-long reduction: split K
    {2, 32, 8, 8, 16, 4, 4, 2, 1, -20.0f},  // D's 4x4 stride 2, split K, offset mean
    {1, 5, 9, 9, 130, 1, 1, 1, 0, 0.0f},    // K past one big tile's rows
};

C3_TEST(conv2d_forward_gives_the_output_moments) {
  uint64_t seed = 9100;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Case& cc : kCases) {
    Conv2dParams p{cc.N, cc.C, cc.H, cc.W, cc.K, cc.R, cc.S, 0, 0, cc.stride, cc.pad};
    p.OH = (p.H + 2 * p.pad - p.R) / p.stride + 1;
    p.OW = (p.W + 2 * p.pad - p.S) / p.stride + 1;
    const int64_t ny = p.N * p.K * p.OH * p.OW;
    Vec x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * p.R * p.S, ++seed);
    Vec b = random_vec(p.K, ++seed);
    for (float& v : b) v += cc.bias_offset;
    Buf bx(be, x), bw(be, w), bb(be, b), by0(be, Vec(ny, nan)), by(be, Vec(ny, nan)), bm(be, Vec(2 * p.K, nan));
    be.conv2d_forward(p, bx.p(), bw.p(), bb.p(), by0.p(), nullptr);
    be.conv2d_forward(p, bx.p(), bw.p(), bb.p(), by.p(), bm.p());
    const std::string what = "conv N" + std::to_string(p.N) + " C" + std::to_string(p.C) + " " + std::to_string(p.H) +
                             "x" + std::to_string(p.W) + " K" + std::to_string(p.K) + " " + std::to_string(p.R) + "x" +
                             std::to_string(p.S) + " s" + std::to_string(p.stride);
    const Vec y = by.host();
    expect_close(y, by0.host(), 0.0, 0.0, what + ": the output is the same with moments");
    expect_moments(bm.host(), p.N, p.K, p.OH * p.OW, y, what);
  }
}

C3_TEST(conv2d_up_forward_gives_the_output_moments) {
  // N, C, H, W, K; the last with a long reduction over few columns (split K on CUDA)
  const int64_t shapes[][5] = {{4, 16, 8, 8, 24}, {3, 9, 5, 7, 40}, {2, 64, 4, 4, 24}};
  uint64_t seed = 9200;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (auto& sh : shapes) {
    const Conv2dParams p{sh[0], sh[1], sh[2], sh[3], sh[4], 3, 3, sh[2], sh[3], 1, 1};
    const int64_t ny = p.N * p.K * 4 * p.H * p.W;
    Vec x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * 9, ++seed);
    Vec b = random_vec(p.K, ++seed, 2.0f, 6.0f);  // with a bias: a mean away from 0
    Buf bx(be, x), bw(be, w), bb(be, b), by0(be, Vec(ny, nan)), by(be, Vec(ny, nan)), bm(be, Vec(2 * p.K, nan));
    be.conv2d_up_forward(p, bx.p(), bw.p(), bb.p(), by0.p(), nullptr);
    be.conv2d_up_forward(p, bx.p(), bw.p(), bb.p(), by.p(), bm.p());
    const std::string what = "conv_up N" + std::to_string(p.N) + " C" + std::to_string(p.C) + " K" + std::to_string(p.K);
    const Vec y = by.host();
    expect_close(y, by0.host(), 0.0, 0.0, what + ": the output is the same with moments");
    expect_moments(bm.host(), p.N, p.K, 4 * p.H * p.W, y, what);
  }
}

// The CPU's Winograd paths form the moments while each output plane is in cache
// (winograd_core.h plane_moments): every path and tile size, batches with a part-filled 8-image
// block and several chunks, against the float64 moments of the output; the output is the same
// as without moments and the moments the same bits on 1 and 2 threads.
C3_TEST(cpu_winograd_outputs_give_their_moments) {
  if (std::string(be.name) != "cpu") return;
  struct Restore {
    int threads = c3::num_threads();
    ~Restore() {
      c3::cpu::set_winograd_tile(0);
      c3::cpu::set_winograd_s2_tile(0);
      c3::set_num_threads(threads);
    }
  } restore;
  enum Path { S1, S2, Up };
  struct WCase {
    Path path;
    int tile;  // forced F(tile x tile, .), 0 by shape
    int64_t N, C, H, W, K;
    float bias_offset;
  };
  const WCase cases[] = {
      {S1, 2, 10, 32, 12, 12, 40, 5.0f},  {S1, 4, 10, 32, 12, 12, 40, 0.0f}, {S1, 2, 3, 16, 9, 7, 20, -3.0f},
      {S1, 4, 17, 16, 40, 40, 16, 0.0f},  // three chunks, the last part-filled
      {S2, 2, 9, 32, 16, 16, 64, 2.0f},   {S2, 4, 9, 32, 16, 16, 64, 0.0f}, {S2, 2, 3, 16, 10, 14, 24, 0.0f},
      {Up, 0, 11, 32, 8, 8, 16, 4.0f},    {Up, 0, 4, 32, 9, 11, 16, 0.0f},  {Up, 0, 2, 4, 5, 6, 3, 0.0f},
  };
  uint64_t seed = 9400;
  for (const WCase& wc : cases) {
    Conv2dParams p{wc.N, wc.C, wc.H, wc.W, wc.K, 3, 3, wc.H, wc.W, 1, 1};
    if (wc.path == S2) p = Conv2dParams{wc.N, wc.C, wc.H, wc.W, wc.K, 4, 4, wc.H / 2, wc.W / 2, 2, 1};
    const int64_t hw = wc.path == Up ? 4 * p.OH * p.OW : p.OH * p.OW, ny = p.N * p.K * hw;
    Vec x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * p.R * p.S, ++seed);
    Vec b = random_vec(p.K, ++seed);
    for (float& v : b) v += wc.bias_offset;
    c3::cpu::set_winograd_tile(wc.path == S1 ? wc.tile : 0);
    c3::cpu::set_winograd_s2_tile(wc.path == S2 ? wc.tile : 0);
    auto run = [&](float* y, float* m) {
      if (wc.path == S1) c3::cpu::winograd_forward(p, x.data(), w.data(), b.data(), y, m);
      else if (wc.path == S2) c3::cpu::winograd_s2_forward(p, x.data(), w.data(), b.data(), y, m);
      else c3::cpu::conv2d_up_forward(p, x.data(), w.data(), b.data(), y, m);
    };
    const std::string what = std::string(wc.path == S1 ? "winograd 3x3" : wc.path == S2 ? "winograd 4x4 s2" : "conv_up") +
                             " F" + std::to_string(wc.tile) + " N" + std::to_string(p.N) + " C" + std::to_string(p.C) +
                             " " + std::to_string(p.H) + "x" + std::to_string(p.W) + " K" + std::to_string(p.K);
    Vec y0(ny, kNaN), y(ny, kNaN), m(2 * p.K, kNaN), m1(2 * p.K, kNaN);
    c3::set_num_threads(2);
    run(y0.data(), nullptr);
    run(y.data(), m.data());
    expect_close(y, y0, 0.0, 0.0, what + ": the output is the same with moments");
    expect_moments(m, p.N, p.K, hw, y, what);
    c3::set_num_threads(1);
    run(y0.data(), m1.data());
    expect_close(m1, m, 0.0, 0.0, what + ": the same moments on 1 thread");
  }
}

// The CPU's direct loops (G's narrow layers) sum each band of output rows right after writing it:
// several bands and a short last one, a partial last vector, the 4-channel blocks and the pairs,
// an offset mean; the moments the same bits on 1 and 2 threads.
C3_TEST(cpu_direct_conv_outputs_give_their_moments) {
  if (std::string(be.name) != "cpu") return;
  c3::cpu::set_direct_conv_enabled(true);
  const Conv2dParams probe{2, 4, 32, 32, 8, 3, 3, 32, 32, 1, 1};
  if (!c3::cpu::direct_conv_applies(probe, c3::cpu::ConvPass::Forward)) {
    std::printf("     note: no AVX2+FMA or Advanced SIMD on this CPU: the direct loops are never used\n");
    return;
  }
  struct Restore {
    int threads = c3::num_threads();
    bool wide = c3::cpu::direct_wide_registers();
    ~Restore() {
      c3::set_num_threads(threads);
      c3::cpu::set_direct_wide_registers(wide);
    }
  } restore;
  // N, C, H, W, K, bias offset
  const struct { int64_t N, C, H, W, K; float offset; } cases[] = {
      {2, 4, 32, 32, 8, 0.0f},    // 4 bands of 8 rows, 4-channel blocks
      {3, 16, 20, 13, 6, 30.0f},  // a short last band, a partial vector, a block of 4 and a pair
      {2, 3, 9, 40, 3, -5.0f},    // a pair and a single channel, 40 columns: 32 + 8
      {1, 8, 64, 64, 32, 0.0f},   // 8 bands, K at the direct forward's limit
  };
  uint64_t seed = 9500;
  for (bool wide : {true, false}) {
    c3::cpu::set_direct_wide_registers(wide);
    for (const auto& cc : cases) {
      const Conv2dParams p{cc.N, cc.C, cc.H, cc.W, cc.K, 3, 3, cc.H, cc.W, 1, 1};
      const int64_t ny = p.N * p.K * p.OH * p.OW;
      Vec x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * 9, ++seed);
      Vec b = random_vec(p.K, ++seed);
      for (float& v : b) v += cc.offset;
      const std::string what = std::string("direct") + (c3::cpu::direct_wide_registers() ? " (AVX-512VL blocks)" : "") +
                               " N" + std::to_string(p.N) + " C" + std::to_string(p.C) + " " + std::to_string(p.H) +
                               "x" + std::to_string(p.W) + " K" + std::to_string(p.K);
      Vec y0(ny, kNaN), y(ny, kNaN), m(2 * p.K, kNaN), m1(2 * p.K, kNaN);
      c3::set_num_threads(2);
      c3::cpu::direct_conv_forward(p, x.data(), w.data(), b.data(), y0.data());
      c3::cpu::direct_conv_forward(p, x.data(), w.data(), b.data(), y.data(), m.data());
      expect_close(y, y0, 0.0, 0.0, what + ": the output is the same with moments");
      expect_moments(m, p.N, p.K, p.OH * p.OW, y, what);
      c3::set_num_threads(1);
      c3::cpu::direct_conv_forward(p, x.data(), w.data(), b.data(), y0.data(), m1.data());
      expect_close(m1, m, 0.0, 0.0, what + ": the same moments on 1 thread");
      // conv2d_forward routes the shape here and hands the moments through
      Vec y2(ny, kNaN), m2(2 * p.K, kNaN);
      c3::cpu::conv2d_forward(p, x.data(), w.data(), b.data(), y2.data(), m2.data());
      if (c3::cpu::direct_conv_applies(p, c3::cpu::ConvPass::Forward) &&
          !c3::cpu::winograd_applies(p, c3::cpu::ConvPass::Forward))
        expect_close(m2, m1, 0.0, 0.0, what + ": conv2d_forward's moments are the direct loops'");
    }
  }
}

// Batch norm with the moments handed in against batch norm summing x itself: the same statistics
// up to float rounding of the mean (the moments carry it in float), so the same outputs.
C3_TEST(batchnorm_train_from_given_moments) {
  const int64_t shapes[][3] = {{8, 5, 1}, {3, 4, 30}, {2, 3, 1000}, {16, 64, 16}};
  uint64_t seed = 9300;
  for (auto& s : shapes) {
    const int64_t N = s[0], C = s[1], HW = s[2];
    Vec x = random_vec(N * C * HW, ++seed, -1.0f, 3.0f), g = random_vec(C, ++seed, 0.5f, 1.5f);
    Vec b = random_vec(C, ++seed), rm = random_vec(C, ++seed), rv = random_vec(C, ++seed, 0.5f, 2.0f);
    const DVec md = moments_d(N, C, HW, x);
    Vec m(md.begin(), md.end());
    Buf bx(be, x), bg(be, g), bb(be, b), bmo(be, m);
    Buf brm0(be, rm), brv0(be, rv), by0(be, x.size()), bs0(be, C), bi0(be, C);
    Buf brm(be, rm), brv(be, rv), by(be, x.size()), bs(be, C), bi(be, C), bs2(be, C), bi2(be, C);
    be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm0.p(), brv0.p(), 0.1f, 1e-5f, by0.p(), bs0.p(),
                               bi0.p(), nullptr, BnEpilogue{});
    be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 0.1f, 1e-5f, by.p(), bs.p(),
                               bi.p(), bmo.p(), BnEpilogue{});
    const std::string what = "batchnorm from moments N" + std::to_string(N) + " C" + std::to_string(C) + " HW" +
                             std::to_string(HW);
    expect_close(by.host(), by0.host(), 1e-5, 2e-6, what + " y");
    expect_close(bs.host(), bs0.host(), 1e-6, 1e-7, what + " save_mean");
    expect_close(bi.host(), bi0.host(), 1e-6, 0.0, what + " save_invstd");
    expect_close(brm.host(), brm0.host(), 1e-6, 1e-7, what + " running_mean");
    expect_close(brv.host(), brv0.host(), 1e-6, 0.0, what + " running_var");
    // the statistics only (y null, as for bn_glu_forward)
    Buf brm2(be, rm), brv2(be, rv);
    be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm2.p(), brv2.p(), 0.1f, 1e-5f, nullptr, bs2.p(),
                               bi2.p(), bmo.p(), BnEpilogue{});
    expect_close(bs2.host(), bs.host(), 0.0, 0.0, what + " save_mean without y");
    expect_close(bi2.host(), bi.host(), 0.0, 0.0, what + " save_invstd without y");
    expect_close(brv2.host(), brv.host(), 0.0, 0.0, what + " running_var without y");
    // with a LeakyReLU after it (BnEpilogue): the separate op's rounding
    Buf brm3(be, rm), brv3(be, rv), byl(be, x.size()), bs3(be, C), bi3(be, C), bl(be, x.size());
    be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm3.p(), brv3.p(), 0.1f, 1e-5f, byl.p(), bs3.p(),
                               bi3.p(), bmo.p(), BnEpilogue{nullptr, true, 0.2f});
    be.unary_forward(c3::UnaryOp::LeakyRelu, x.size(), by.p(), 0.2f, bl.p());
    expect_close(byl.host(), bl.host(), 0.0, 0.0, what + " LeakyReLU(y)");
    expect_close(brv3.host(), brv.host(), 0.0, 0.0, what + " running_var with a LeakyReLU");
  }
}

// Batch norm-GLU in training (bn_glu_forward_train) against its two steps: the statistics
// (batchnorm_forward_train without y), then bn_glu_forward from them; from given moments and not.
C3_TEST(bn_glu_forward_train_is_its_two_steps) {
  const int64_t shapes[][3] = {{8, 5, 1}, {3, 4, 30}, {2, 3, 1000}, {16, 32, 16}, {4, 6, 7}};
  uint64_t seed = 9400;
  for (auto& s : shapes)
    for (bool given : {true, false}) {
      const int64_t N = s[0], half = s[1], HW = s[2], C = 2 * half, n = N * half * HW;
      Vec x = random_vec(2 * n, ++seed, -1.0f, 3.0f), g = random_vec(C, ++seed, 0.5f, 1.5f);
      Vec b = random_vec(C, ++seed), rm = random_vec(C, ++seed), rv = random_vec(C, ++seed, 0.5f, 2.0f);
      const DVec md = moments_d(N, C, HW, x);
      Vec m(md.begin(), md.end());
      Buf bx(be, x), bg(be, g), bb(be, b), bmo(be, m), brm(be, rm), brv(be, rv), by(be, n), bs(be, C), bi(be, C),
          brm2(be, rm), brv2(be, rv), by2(be, n), bs2(be, C), bi2(be, C);
      const float* mo = given ? bmo.p() : nullptr;
      be.bn_glu_forward_train(N, half, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 0.1f, 1e-5f, mo, by.p(), bs.p(),
                              bi.p());
      be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm2.p(), brv2.p(), 0.1f, 1e-5f, nullptr, bs2.p(),
                                 bi2.p(), mo, BnEpilogue{});
      be.bn_glu_forward(N, half, HW, bx.p(), bg.p(), bb.p(), bs2.p(), bi2.p(), by2.p());
      const std::string what = std::string("bn_glu train") + (given ? " from moments" : "") + " N" +
                               std::to_string(N) + " half" + std::to_string(half) + " HW" + std::to_string(HW);
      expect_close(by.host(), by2.host(), 0.0, 0.0, what + " y");
      expect_close(bs.host(), bs2.host(), 0.0, 0.0, what + " save_mean");
      expect_close(bi.host(), bi2.host(), 0.0, 0.0, what + " save_invstd");
      expect_close(brm.host(), brm2.host(), 0.0, 0.0, what + " running_mean");
      expect_close(brv.host(), brv2.host(), 0.0, 0.0, what + " running_var");
    }
}

}  // namespace
