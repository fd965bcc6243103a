// Dense kernels (memory, random, gemm, conv2d, batchnorm, layout, adam) and the thread pool,
// against float64 loops written here, finite differences for the backward passes, and the CPU
// *_reference kernels for the fast paths.
#include <algorithm>
#include <memory>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../core/threadpool.h"
#include "../cpu/kernels.h"
#include "harness.h"

namespace {

using c3::AdamTensor;
using c3::Backend;
using c3::BnEpilogue;
using c3::UnaryOp;
using c3::Conv2dParams;
using c3::test::Buf;
using c3::test::expect_close;
using c3::test::product_tol;
using c3::test::Tol;
using c3::test::expect_true;
using c3::test::numeric_grad;
using c3::test::random_vec;
using Vec = std::vector<float>;
using DVec = std::vector<double>;

DVec to_d(const Vec& v) { return DVec(v.begin(), v.end()); }
Vec to_f(const DVec& v) { return Vec(v.begin(), v.end()); }

// Restores the pool size when a test that changes it ends (also on failure).
struct ThreadsGuard {
  int saved = c3::num_threads();
  ~ThreadsGuard() { c3::set_num_threads(saved); }
};

// ---------------------------------------------------------------- thread pool

C3_TEST(threadpool_covers_range_in_grain_chunks) {
  ThreadsGuard guard;
  for (int threads : {1, 2, 3}) {
    c3::set_num_threads(threads);
    expect_true(c3::num_threads() == threads, "num_threads() after set_num_threads(" + std::to_string(threads) + ")");
    for (int64_t n : {0, 1, 5, 1000, 12345}) {
      const int64_t grain = 7;
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int64_t> min_chunk{INT64_MAX};
      std::atomic<int> chunks{0};
      c3::parallel_for(n, grain, [&](int64_t b, int64_t e) {
        chunks++;
        int64_t len = e - b, cur = min_chunk.load();
        while (len < cur && !min_chunk.compare_exchange_weak(cur, len)) {
        }
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (int64_t i = 0; i < n; ++i)
        expect_true(hits[i] == 1, "index " + std::to_string(i) + " of " + std::to_string(n) + " visited " +
                                      std::to_string(hits[i].load()) + " times");
      if (n >= grain) expect_true(min_chunk >= grain, "a chunk is shorter than the grain for n=" + std::to_string(n));
      if (threads == 1) expect_true(chunks <= 1, "one thread runs a single chunk");
    }
  }
}

C3_TEST(threadpool_propagates_exceptions) {
  ThreadsGuard guard;
  c3::set_num_threads(2);
  bool caught = false;
  try {
    c3::parallel_for(1000, 1, [&](int64_t b, int64_t e) {
      if (b <= 999 && 999 < e) throw std::runtime_error("boom at 999");
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "boom at 999";
  }
  expect_true(caught, "exception from a worker chunk reaches the caller with its message");
  // the pool still works afterwards
  std::atomic<int64_t> sum{0};
  c3::parallel_for(100, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  expect_true(sum == 4950, "pool usable after an exception");
}

C3_TEST(threadpool_nested_calls_run_serially) {
  ThreadsGuard guard;
  c3::set_num_threads(2);
  std::vector<std::atomic<int>> hits(64 * 64);
  c3::parallel_for(64, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      c3::parallel_for(64, 1, [&](int64_t jb, int64_t je) {
        for (int64_t j = jb; j < je; ++j) hits[i * 64 + j]++;
      });
  });
  for (auto& h : hits) expect_true(h == 1, "nested parallel_for visits every pair once");
  bool threw = false;
  c3::parallel_for(4, 1, [&](int64_t, int64_t) {
    try {
      c3::set_num_threads(1);
    } catch (const c3::Error&) {
      static std::mutex mu;
      std::lock_guard<std::mutex> g(mu);
      threw = true;
    }
  });
  expect_true(threw, "set_num_threads inside a parallel region is refused");
}

C3_TEST(threadpool_concurrent_callers) {
  // two threads outside the pool call parallel_for at once: one gets the workers, the other
  // runs serially; both must see every index exactly once
  ThreadsGuard guard;
  c3::set_num_threads(2);
  std::atomic<int> bad{0};
  auto caller = [&](int id) {
    try {
      for (int rep = 0; rep < 100; ++rep) {
        std::vector<int> hits(5000, 0);
        c3::parallel_for(5000, 16, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i]++;
          std::this_thread::sleep_for(std::chrono::microseconds(50));  // make the calls overlap
        });
        for (int h : hits)
          if (h != 1) bad++;
      }
    } catch (...) {
      bad += 1000 + id;
    }
  };
  std::thread t1(caller, 1), t2(caller, 2);
  t1.join();
  t2.join();
  expect_true(bad == 0, "concurrent parallel_for callers: " + std::to_string(bad.load()) + " errors");
}

// ---------------------------------------------------------------- memory and streaming ops

C3_TEST(memory_alloc_fill_copy_axpy_affine) {
  const size_t n = 100003;  // above the threading grain, odd
  void* p = be.alloc(n * 4);
  expect_true(reinterpret_cast<uintptr_t>(p) % 64 == 0, "alloc is 64-byte aligned");
  be.free(p);
  Vec x = random_vec(n, 11), y = random_vec(n, 12);
  Buf bx(be, x), by(be, y), bz(be, n);
  be.axpy(n, 0.75f, bx.p(), by.p());
  DVec want(n);
  for (size_t i = 0; i < n; ++i) want[i] = y[i] + 0.75 * x[i];
  expect_close(by.host(), want, 1e-6, 1e-7, "axpy");
  be.affine(n, bx.p(), -2.5f, 0.25f, bz.p());
  for (size_t i = 0; i < n; ++i) want[i] = -2.5 * x[i] + 0.25;
  expect_close(bz.host(), want, 1e-6, 1e-7, "affine");
  be.copy(bz.p(), bx.p(), n);
  expect_close(bz.host(), x, 0, 0, "copy");
  be.fill(bz.p(), n, 3.5f);
  expect_close(bz.host(), DVec(n, 3.5), 0, 0, "fill");
  Vec back(n);
  be.download(back.data(), bx.p(), n);
  expect_close(back, x, 0, 0, "upload/download round trip");
  be.affine(n, bx.p(), -2.5f, 0.25f, bx.p());  // in place (ops::affine_, batch norm's batch count)
  for (size_t i = 0; i < n; ++i) want[i] = -2.5 * x[i] + 0.25;
  expect_close(bx.host(), want, 1e-6, 1e-7, "affine in place");
}

C3_TEST(memory_alloc_failure_throws_out_of_memory) {
  bool oom = false;
  try {
    void* p = be.alloc(std::numeric_limits<size_t>::max() / 2);
    be.free(p);
  } catch (const c3::OutOfMemory& e) {
    oom = std::string(e.what()).find("alloc") != std::string::npos;
  }
  expect_true(oom, "a huge alloc throws c3::OutOfMemory naming alloc");
}

// ---------------------------------------------------------------- Philox

C3_TEST(philox_known_answer) {
  // Random123 kat_vectors: philox4x32 10, counter 0, key 0
  uint32_t out[4];
  c3::Philox::block(0, 0, out);
  const uint32_t want[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
  for (int i = 0; i < 4; ++i) expect_true(out[i] == want[i], "Philox4x32-10 word " + std::to_string(i));
  // to_unit maps into (0, 1]
  expect_true(c3::Philox::to_unit(0) > 0.0f && c3::Philox::to_unit(0xffffffffu) == 1.0f, "to_unit range");
  // both halves of the 64-bit counter and key matter
  uint32_t hi[4], key_hi[4];
  c3::Philox::block(0, uint64_t(1) << 32, hi);
  c3::Philox::block(uint64_t(1) << 32, 0, key_hi);
  expect_true(hi[0] != out[0] && key_hi[0] != out[0] && hi[0] != key_hi[0], "high counter and key words are used");
  // uniform_at / normal_at are word 0 / Box-Muller on words 0 and 1 of block(key, i)
  for (uint64_t i : {uint64_t(0), uint64_t(17), (uint64_t(3) << 40) + 9}) {
    uint32_t w[4];
    c3::Philox::block(99, i, w);
    double u1 = c3::Philox::to_unit(w[0]), u2 = c3::Philox::to_unit(w[1]);
    double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    expect_true(c3::Philox::uniform_at(99, i) == c3::Philox::to_unit(w[0]), "uniform_at is to_unit(word 0)");
    expect_true(std::fabs(c3::Philox::normal_at(99, i) - z) <= 1e-6 * (1 + std::fabs(z)), "normal_at is Box-Muller");
  }
}

C3_TEST(philox_same_numbers_for_any_thread_count) {
  ThreadsGuard guard;
  const size_t n = 50001;
  const uint64_t key = 0x1234abcd5678ull, offset = 977;
  Vec draws[2], uni[2];
  for (int t = 0; t < 2; ++t) {
    c3::set_num_threads(t + 1);
    Buf b(be, n), u(be, n);
    be.rand_normal(b.p(), n, key, offset, 0.0f, 1.0f);
    be.rand_uniform(u.p(), n, key, offset, -2.0f, 3.0f);
    draws[t] = b.host();
    uni[t] = u.host();
  }
  expect_true(std::memcmp(draws[0].data(), draws[1].data(), n * 4) == 0, "normals identical on 1 and 2 threads");
  expect_true(std::memcmp(uni[0].data(), uni[1].data(), n * 4) == 0, "uniforms identical on 1 and 2 threads");
  // element i is normal_at(key, offset + i): matches the host definition, and a later offset
  // continues the same stream
  DVec want(n), want_u(n);
  for (size_t i = 0; i < n; ++i) {
    want[i] = c3::Philox::normal_at(key, offset + i);
    want_u[i] = -2.0 + 5.0 * static_cast<double>(c3::Philox::uniform_at(key, offset + i));
  }
  expect_close(draws[0], want, 1e-6, 1e-6, "rand_normal element i = normal_at(key, offset + i)");
  expect_close(uni[0], want_u, 1e-6, 1e-6, "rand_uniform element i = lo + (hi-lo) uniform_at(key, offset + i)");
  Buf tail(be, n - 100);
  be.rand_normal(tail.p(), n - 100, key, offset + 100, 0.0f, 1.0f);
  expect_close(tail.host(), Vec(draws[0].begin() + 100, draws[0].end()), 0, 0, "offset continues the stream");
  for (float v : uni[0]) expect_true(v > -2.0f && v <= 3.0f, "uniform in (lo, hi]");
}

C3_TEST(philox_normal_moments) {
  const size_t n = 100000;
  Buf b(be, n);
  be.rand_normal(b.p(), n, 42, 0, 0.0f, 1.0f);
  Vec v = b.host();
  double s = 0, s2 = 0;
  for (float x : v) s += x, s2 += static_cast<double>(x) * x;
  const double mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
  // standard errors: 0.0032 for the mean, 0.0022 for the std
  expect_true(std::fabs(mean) < 0.015, "mean of 100k normals is " + std::to_string(mean));
  expect_true(std::fabs(sd - 1.0) < 0.01, "std of 100k normals is " + std::to_string(sd));
  be.rand_normal(b.p(), n, 43, 0, 2.0f, 0.5f);
  v = b.host();
  s = 0;
  for (float x : v) s += x;
  expect_true(std::fabs(s / n - 2.0) < 0.01, "mean/std parameters shift the draw");
  Buf u(be, n);
  be.rand_uniform(u.p(), n, 44, 0, 0.0f, 1.0f);
  v = u.host();
  s = 0;
  for (float x : v) s += x;
  expect_true(std::fabs(s / n - 0.5) < 0.005, "mean of 100k uniforms is " + std::to_string(s / n));
}

// ---------------------------------------------------------------- gemm

DVec gemm_d(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const Vec& A, const Vec& B, double beta,
            const Vec& C) {
  DVec out(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        double a = ta ? A[k * M + i] : A[i * K + k];
        double b = tb ? B[j * K + k] : B[k * N + j];
        s += a * b;
      }
      out[i * N + j] = alpha * s + (beta == 0 ? 0.0 : beta * C[i * N + j]);
    }
  return out;
}

void check_gemm(const Backend& be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                uint64_t seed) {
  Vec A = random_vec(M * K, seed), B = random_vec(K * N, seed + 1), C = random_vec(M * N, seed + 2);
  if (beta == 0.0f) std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
  Buf ba(be, A), bb(be, B), bc(be, C);
  be.gemm(ta, tb, M, N, K, alpha, ba.p(), bb.p(), beta, bc.p());
  const std::string what = "gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " " + std::to_string(M) +
                           "x" + std::to_string(N) + "x" + std::to_string(K) + " alpha=" + std::to_string(alpha) +
                           " beta=" + std::to_string(beta);
  const double atol = 2e-6 * (K + 1);
  expect_close(bc.host(), gemm_d(ta, tb, M, N, K, alpha, A, B, beta, C), product_tol(be, 1e-4, atol, K + 1), what);
}

C3_TEST(gemm_all_transposes_odd_sizes) {
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {1, 33, 7}, {33, 1, 17}, {6, 8, 256},
                               {13, 31, 257}, {65, 33, 1}, {97, 130, 70}};
  uint64_t seed = 100;
  for (auto& s : shapes)
    for (int t = 0; t < 4; ++t) {
      check_gemm(be, t & 1, t & 2, s[0], s[1], s[2], 1.0f, 0.0f, seed += 3);
      check_gemm(be, t & 1, t & 2, s[0], s[1], s[2], 0.5f, -1.5f, seed += 3);
      check_gemm(be, t & 1, t & 2, s[0], s[1], s[2], -2.0f, 1.0f, seed += 3);
    }
}

C3_TEST(gemm_large_blocks_threaded) {
  // crosses the K block (256), the N block (2048) and several M blocks, with threads
  for (int t = 0; t < 4; ++t) check_gemm(be, t & 1, t & 2, 200, 2053, 300, 1.0f, t == 3 ? 0.25f : 0.0f, 900 + t);
}

C3_TEST(gemm_degenerate_k_and_alpha) {
  // K = 0 and alpha = 0 leave beta * C (beta = 0: zeros even over NaN)
  Vec C = random_vec(12, 5);
  Vec nan(12, std::numeric_limits<float>::quiet_NaN());
  Vec A = random_vec(12, 6), B = random_vec(12, 7);
  Buf ba(be, A), bb(be, B), bc(be, C), bn(be, nan);
  be.gemm(false, false, 3, 4, 0, 1.0f, ba.p(), bb.p(), 2.0f, bc.p());
  DVec want(12);
  for (int i = 0; i < 12; ++i) want[i] = 2.0 * C[i];
  expect_close(bc.host(), want, 1e-6, 0, "gemm K=0 scales C by beta");
  be.gemm(false, false, 3, 4, 3, 0.0f, ba.p(), bb.p(), 0.0f, bn.p());
  expect_close(bn.host(), DVec(12, 0.0), 0, 0, "gemm alpha=0 beta=0 writes zeros over NaN");
}

C3_TEST(gemm_fast_matches_reference_kernel) {
  const int64_t shapes[][3] = {{64, 300, 147}, {129, 17, 520}, {5, 700, 9}};
  uint64_t seed = 500;
  for (auto& s : shapes)
    for (int t = 0; t < 4; ++t) {
      const int64_t M = s[0], N = s[1], K = s[2];
      Vec A = random_vec(M * K, ++seed), B = random_vec(K * N, ++seed), C = random_vec(M * N, ++seed);
      Vec R = C;
      Buf ba(be, A), bb(be, B), bc(be, C);
      be.gemm(t & 1, t & 2, M, N, K, 0.7f, ba.p(), bb.p(), 0.3f, bc.p());
      c3::cpu::gemm_reference(t & 1, t & 2, M, N, K, 0.7f, A.data(), B.data(), 0.3f, R.data());
      expect_close(bc.host(), R, product_tol(be, 1e-4, 2e-6 * K, K), "gemm vs gemm_reference t=" + std::to_string(t));
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

// y = conv(x, w) + bias in float64
DVec conv_d(const Conv2dParams& p, const DVec& x, const DVec& w, const DVec* bias) {
  DVec y(p.N * p.K * p.OH * p.OW, 0.0);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          double s = bias ? (*bias)[k] : 0.0;
          for (int64_t c = 0; c < p.C; ++c)
            for (int64_t r = 0; r < p.R; ++r)
              for (int64_t q = 0; q < p.S; ++q) {
                int64_t ih = oh * p.stride - p.pad + r, iw = ow * p.stride - p.pad + q;
                if (ih >= 0 && ih < p.H && iw >= 0 && iw < p.W)
                  s += x[((n * p.C + c) * p.H + ih) * p.W + iw] * w[((k * p.C + c) * p.R + r) * p.S + q];
              }
          y[((n * p.K + k) * p.OH + oh) * p.OW + ow] = s;
        }
  return y;
}

// dx and dw of sum(dy * conv(x, w)) in float64, written as gathers (not the kernels' scatters)
DVec conv_dx_d(const Conv2dParams& p, const DVec& dy, const DVec& w) {
  DVec dx(p.N * p.C * p.H * p.W, 0.0);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t ih = 0; ih < p.H; ++ih)
        for (int64_t iw = 0; iw < p.W; ++iw) {
          double s = 0;
          for (int64_t k = 0; k < p.K; ++k)
            for (int64_t r = 0; r < p.R; ++r)
              for (int64_t q = 0; q < p.S; ++q) {
                int64_t th = ih + p.pad - r, tw = iw + p.pad - q;
                if (th < 0 || tw < 0 || th % p.stride || tw % p.stride) continue;
                int64_t oh = th / p.stride, ow = tw / p.stride;
                if (oh >= p.OH || ow >= p.OW) continue;
                s += dy[((n * p.K + k) * p.OH + oh) * p.OW + ow] * w[((k * p.C + c) * p.R + r) * p.S + q];
              }
          dx[((n * p.C + c) * p.H + ih) * p.W + iw] = s;
        }
  return dx;
}

DVec conv_dw_d(const Conv2dParams& p, const DVec& dy, const DVec& x) {
  DVec dw(p.K * p.C * p.R * p.S, 0.0);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          double d = dy[((n * p.K + k) * p.OH + oh) * p.OW + ow];
          for (int64_t c = 0; c < p.C; ++c)
            for (int64_t r = 0; r < p.R; ++r)
              for (int64_t q = 0; q < p.S; ++q) {
                int64_t ih = oh * p.stride - p.pad + r, iw = ow * p.stride - p.pad + q;
                if (ih >= 0 && ih < p.H && iw >= 0 && iw < p.W)
                  dw[((k * p.C + c) * p.R + r) * p.S + q] += d * x[((n * p.C + c) * p.H + ih) * p.W + iw];
              }
        }
  return dw;
}

const ConvCase kConvCases[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1, true},     // 3x3 s1 p1
    {2, 3, 8, 8, 5, 4, 4, 2, 1, false},    // 4x4 s2 p1 (D's downsampling)
    {3, 6, 4, 4, 2, 4, 4, 4, 0, true},     // 4x4 s4 p0 on a 4x4 map (D's heads)
    {2, 5, 6, 7, 3, 1, 1, 1, 0, true},     // 1x1
    {1, 4, 9, 7, 3, 1, 1, 2, 0, false},    // 1x1 stride 2
    {2, 3, 9, 7, 5, 3, 2, 2, 1, true},     // odd: 3x2 kernel, stride 2, odd map
    {1, 2, 5, 5, 1, 5, 5, 1, 2, false},    // kernel as large as the map
    {1, 3, 11, 13, 7, 3, 3, 3, 2, true},   // stride 3, pad 2
    {1, 16, 40, 40, 6, 3, 3, 1, 1, false}, // a single image
    {2, 8, 40, 36, 5, 1, 1, 1, 0, true},   // 1x1 on a large map: no im2col copy, one image per chunk
    {30, 8, 16, 16, 4, 3, 3, 1, 1, true},  // all images in one chunk
    {3, 16, 84, 84, 2, 3, 3, 1, 1, true},  // chunks of 2 images, then 1 (8 MiB im2col budget)
    {2, 32, 84, 84, 2, 3, 3, 1, 1, false}, // one image per chunk, two chunks
    {2, 32, 90, 90, 2, 3, 3, 1, 1, true},  // an image over the budget: bands of 80 + 10 output rows
    {1, 64, 100, 100, 2, 4, 4, 2, 1, false}, // bands whose input rows overlap (stride 2 < kernel 4)
};

C3_TEST(conv2d_forward_against_float64) {
  uint64_t seed = 2000;
  for (const ConvCase& cc : kConvCases) {
    Conv2dParams p = params(cc);
    Vec x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * p.R * p.S, ++seed);
    Vec b = random_vec(p.K, ++seed);
    Buf bx(be, x), bw(be, w), bb(be, b), by(be, p.N * p.K * p.OH * p.OW);
    be.conv2d_forward(p, bx.p(), bw.p(), cc.bias ? bb.p() : nullptr, by.p(), nullptr);
    DVec bd = to_d(b);
    DVec want = conv_d(p, to_d(x), to_d(w), cc.bias ? &bd : nullptr);
    const std::string what = describe(p) + (cc.bias ? " bias" : "") + " forward";
    const Tol tol = product_tol(be, 1e-4, 1e-5 * (p.C * p.R * p.S + 1), p.C * p.R * p.S + 1);
    expect_close(by.host(), want, tol, what);
    // and the plain-loop reference kernel agrees with the fast path
    Vec ref(want.size());
    c3::cpu::conv2d_forward_reference(p, x.data(), w.data(), cc.bias ? b.data() : nullptr, ref.data());
    expect_close(by.host(), ref, tol, what + " vs reference kernel");
  }
}

C3_TEST(conv2d_backward_against_float64) {
  uint64_t seed = 3000;
  for (const ConvCase& cc : kConvCases) {
    Conv2dParams p = params(cc);
    Vec x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * p.R * p.S, ++seed);
    Vec dy = random_vec(p.N * p.K * p.OH * p.OW, ++seed);
    // outputs start as NaN: the kernels must overwrite them
    Vec nan_x(x.size(), std::numeric_limits<float>::quiet_NaN()), nan_w(w.size(), std::numeric_limits<float>::quiet_NaN());
    Buf bx(be, x), bw(be, w), bdy(be, dy), bdx(be, nan_x), bdw(be, nan_w);
    be.conv2d_backward_data(p, bdy.p(), bw.p(), bdx.p());
    be.conv2d_backward_weight(p, bdy.p(), bx.p(), bdw.p());
    const std::string what = describe(p);
    const double tx = p.K * p.R * p.S + 1, tw = p.N * p.OH * p.OW + 1;
    const Tol tol_x = product_tol(be, 1e-4, 1e-5 * tx, tx), tol_w = product_tol(be, 1e-4, 1e-5 * tw, tw);
    expect_close(bdx.host(), conv_dx_d(p, to_d(dy), to_d(w)), tol_x, what + " backward_data");
    expect_close(bdw.host(), conv_dw_d(p, to_d(dy), to_d(x)), tol_w, what + " backward_weight");
    Vec rdx(x.size()), rdw(w.size());
    c3::cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), rdx.data());
    c3::cpu::conv2d_backward_weight_reference(p, dy.data(), x.data(), rdw.data());
    expect_close(bdx.host(), rdx, tol_x, what + " backward_data vs reference kernel");
    expect_close(bdw.host(), rdw, tol_w, what + " backward_weight vs reference kernel");
  }
}


// The conv of a 2x-upsampled input (backend.h conv2d_up_*) against upsampling, then the plain conv loops.
C3_TEST(conv2d_up_against_reference) {
  const int64_t shapes[][5] = {{8, 32, 8, 8, 16}, {3, 33, 5, 7, 17}, {2, 4, 5, 6, 3}};  // N, C, H, W, K
  uint64_t seed = 3500;
  for (auto& sh : shapes) {
    const Conv2dParams p{sh[0], sh[1], sh[2], sh[3], sh[4], 3, 3, sh[2], sh[3], 1, 1};
    const int64_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * 9, ny = p.N * p.K * 4 * p.H * p.W;
    Vec x = random_vec(nx, ++seed), w = random_vec(nw, ++seed), b = random_vec(p.K, ++seed), dy = random_vec(ny, ++seed);
    Vec ry(ny), rdx(nx), rdw(nw);
    c3::cpu::conv2d_up_forward_reference(p, x.data(), w.data(), b.data(), ry.data());
    c3::cpu::conv2d_up_backward_data_reference(p, dy.data(), w.data(), rdx.data());
    c3::cpu::conv2d_up_backward_weight_reference(p, dy.data(), x.data(), rdw.data());
    const float nan = std::numeric_limits<float>::quiet_NaN();
    Buf bx(be, x), bw(be, w), bb(be, b), bdy(be, dy), by(be, Vec(ny, nan)), bdx(be, Vec(nx, nan)), bdw(be, Vec(nw, nan));
    be.conv2d_up_forward(p, bx.p(), bw.p(), bb.p(), by.p(), nullptr);
    be.conv2d_up_backward_data(p, bdy.p(), bw.p(), bdx.p());
    be.conv2d_up_backward_weight(p, bdy.p(), bx.p(), bdw.p());
    const std::string what = describe(p) + " upsampled";
    expect_close(by.host(), ry, 1e-3, 2e-4 * (p.C * 9 + 1), what + " forward");
    expect_close(bdx.host(), rdx, 1e-3, 2e-4 * (p.K * 9 + 1), what + " backward_data");
    expect_close(bdw.host(), rdw, 1e-3, 2e-4 * (4 * p.N * p.H * p.W + 1), what + " backward_weight");
  }
}
C3_TEST(conv2d_gradients_match_finite_differences) {
  const ConvCase cases[] = {{2, 2, 5, 4, 3, 3, 3, 1, 1, false},
                            {1, 2, 6, 6, 2, 4, 4, 2, 1, false},
                            {2, 3, 4, 4, 2, 4, 4, 4, 0, false},
                            {1, 3, 3, 5, 2, 1, 1, 1, 0, false}};
  uint64_t seed = 4000;
  for (const ConvCase& cc : cases) {
    Conv2dParams p = params(cc);
    Vec x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * p.R * p.S, ++seed);
    Vec dy = random_vec(p.N * p.K * p.OH * p.OW, ++seed);
    const DVec dyd = to_d(dy), xd = to_d(x), wd = to_d(w);
    auto loss = [&](const DVec& xx, const DVec& ww) {
      DVec y = conv_d(p, xx, ww, nullptr);
      double s = 0;
      for (size_t i = 0; i < y.size(); ++i) s += dyd[i] * y[i];
      return s;
    };
    DVec gx = numeric_grad(xd, [&](const DVec& v) { return loss(v, wd); });
    DVec gw = numeric_grad(wd, [&](const DVec& v) { return loss(xd, v); });
    Buf bx(be, x), bw(be, w), bdy(be, dy), bdx(be, x.size()), bdw(be, w.size());
    be.conv2d_backward_data(p, bdy.p(), bw.p(), bdx.p());
    be.conv2d_backward_weight(p, bdy.p(), bx.p(), bdw.p());
    expect_close(bdx.host(), gx, product_tol(be, 1e-3, 1e-4, p.K * p.R * p.S), describe(p) + " dx vs finite differences");
    expect_close(bdw.host(), gw, product_tol(be, 1e-3, 1e-4, p.N * p.OH * p.OW), describe(p) + " dw vs finite differences");
  }
}

// ---------------------------------------------------------------- batchnorm

struct BnRef {
  DVec y, mean, invstd, run_mean, run_var;
};

BnRef bn_train_d(int64_t N, int64_t C, int64_t HW, const DVec& x, const DVec& g, const DVec& b, const DVec& rm,
                 const DVec& rv, double momentum, double eps) {
  BnRef r{DVec(x.size()), DVec(C), DVec(C), DVec(C), DVec(C)};
  const double cnt = static_cast<double>(N * HW);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, s2 = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s += x[(n * C + c) * HW + i];
    const double mean = s / cnt;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s2 += std::pow(x[(n * C + c) * HW + i] - mean, 2);
    const double var = s2 / cnt, invstd = 1.0 / std::sqrt(var + eps);
    r.mean[c] = mean;
    r.invstd[c] = invstd;
    r.run_mean[c] = (1 - momentum) * rm[c] + momentum * mean;
    r.run_var[c] = (1 - momentum) * rv[c] + momentum * var * cnt / (cnt - 1);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        r.y[j] = (x[j] - mean) * invstd * g[c] + b[c];
      }
  }
  return r;
}

DVec bn_eval_d(int64_t N, int64_t C, int64_t HW, const DVec& x, const DVec& g, const DVec& b, const DVec& rm,
               const DVec& rv, double eps) {
  DVec y(x.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        y[j] = (x[j] - rm[c]) / std::sqrt(rv[c] + eps) * g[c] + b[c];
      }
  return y;
}

C3_TEST(batchnorm_forward_train_and_running_stats) {
  const int64_t shapes[][3] = {{8, 5, 1}, {3, 4, 30}, {2, 3, 1000}, {64, 300, 1}};
  uint64_t seed = 5000;
  for (auto& s : shapes) {
    const int64_t N = s[0], C = s[1], HW = s[2];
    Vec x = random_vec(N * C * HW, ++seed, -1.0f, 3.0f), g = random_vec(C, ++seed, 0.5f, 1.5f);
    Vec b = random_vec(C, ++seed), rm = random_vec(C, ++seed), rv = random_vec(C, ++seed, 0.5f, 2.0f);
    Buf bx(be, x), bg(be, g), bb(be, b), brm(be, rm), brv(be, rv), by(be, x.size()), bm(be, C), bi(be, C);
    be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 0.1f, 1e-5f, by.p(), bm.p(),
                               bi.p(), nullptr, BnEpilogue{});
    BnRef r = bn_train_d(N, C, HW, to_d(x), to_d(g), to_d(b), to_d(rm), to_d(rv), 0.1, 1e-5);
    const std::string what = "batchnorm train N" + std::to_string(N) + " C" + std::to_string(C) + " HW" +
                             std::to_string(HW);
    expect_close(by.host(), r.y, 1e-4, 1e-5, what + " y");
    expect_close(bm.host(), r.mean, 1e-5, 1e-6, what + " save_mean");
    expect_close(bi.host(), r.invstd, 1e-5, 1e-6, what + " save_invstd");
    expect_close(brm.host(), r.run_mean, 1e-5, 1e-6, what + " running_mean");
    expect_close(brv.host(), r.run_var, 1e-5, 1e-6, what + " running_var (unbiased)");
    // a residual is added to y after it is rounded, as a separate add would; the statistics are the same
    Vec res = random_vec(N * C * HW, ++seed);
    Buf bres(be, res), byr(be, x.size()), bm2(be, C), bi2(be, C), brm2(be, rm), brv2(be, rv);
    be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm2.p(), brv2.p(), 0.1f, 1e-5f, byr.p(), bm2.p(),
                               bi2.p(), nullptr, BnEpilogue{bres.p()});
    Vec want = by.host();
    for (size_t i = 0; i < want.size(); ++i) want[i] += res[i];
    expect_close(byr.host(), want, 0, 0, what + " y + residual");
    expect_close(bm2.host(), bm.host(), 0, 0, what + " save_mean with a residual");
    // a LeakyReLU after it: the separate op's rounding
    Buf byl(be, x.size()), bl(be, x.size()), bm3(be, C), bi3(be, C), brm3(be, rm), brv3(be, rv);
    be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm3.p(), brv3.p(), 0.1f, 1e-5f, byl.p(), bm3.p(),
                               bi3.p(), nullptr, BnEpilogue{nullptr, true, 0.2f});
    be.unary_forward(UnaryOp::LeakyRelu, x.size(), by.p(), 0.2f, bl.p());
    expect_close(byl.host(), bl.host(), 0, 0, what + " LeakyReLU(y)");
  }
}

C3_TEST(batchnorm_forward_eval_uses_running_stats) {
  const int64_t N = 4, C = 3, HW = 10;
  Vec x = random_vec(N * C * HW, 61), g = random_vec(C, 62), b = random_vec(C, 63);
  Vec rm = random_vec(C, 64), rv = random_vec(C, 65, 0.2f, 2.0f);
  Buf bx(be, x), bg(be, g), bb(be, b), brm(be, rm), brv(be, rv), by(be, x.size());
  be.batchnorm_forward_eval(N, C, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 1e-3f, by.p(), BnEpilogue{});
  expect_close(by.host(), bn_eval_d(N, C, HW, to_d(x), to_d(g), to_d(b), to_d(rm), to_d(rv), 1e-3), 1e-5, 1e-6,
               "batchnorm eval");
  expect_close(brm.host(), rm, 0, 0, "eval leaves running_mean alone");
  expect_close(brv.host(), rv, 0, 0, "eval leaves running_var alone");
  Vec res = random_vec(N * C * HW, 66);
  Buf bres(be, res), byr(be, x.size());
  be.batchnorm_forward_eval(N, C, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 1e-3f, byr.p(),
                            BnEpilogue{bres.p()});
  Vec want = by.host();
  for (size_t i = 0; i < want.size(); ++i) want[i] += res[i];
  expect_close(byr.host(), want, 0, 0, "batchnorm eval + residual");
  // both, then a LeakyReLU with slope 0 (ReLU): the separate ops in turn
  Buf byrl(be, x.size()), bl(be, x.size());
  be.batchnorm_forward_eval(N, C, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 1e-3f, byrl.p(),
                            BnEpilogue{bres.p(), true, 0.0f});
  be.unary_forward(UnaryOp::LeakyRelu, x.size(), byr.p(), 0.0f, bl.p());
  expect_close(byrl.host(), bl.host(), 0, 0, "batchnorm eval + residual, then ReLU");
}

// Through a LeakyReLU after the batch norm: LeakyReLU's backward from its output, then batch
// norm's, to the bit (test/gradcheck.test.ts takes leaky(bn(x)) against finite differences).
C3_TEST(batchnorm_leaky_backward_is_the_two_passes) {
  const int64_t shapes[][3] = {{6, 4, 1}, {3, 5, 40}, {64, 300, 1}, {2, 3, 1000}};
  uint64_t seed = 7600;
  for (auto& s : shapes)
    for (bool training : {true, false}) {
      const int64_t N = s[0], C = s[1], HW = s[2], n = N * C * HW;
      Vec x = random_vec(n, ++seed, -2.0f, 2.0f), g = random_vec(C, ++seed, 0.5f, 1.5f), b = random_vec(C, ++seed);
      Vec mean = random_vec(C, ++seed, -0.5f, 0.5f), invstd = random_vec(C, ++seed, 0.5f, 2.0f);
      Vec dy = random_vec(n, ++seed), y(n);
      for (int64_t i = 0; i < n; ++i) {  // some outputs exactly 0, the rest of both signs
        const int64_t c = i / HW % C;
        const float z = (x[i] - mean[c]) * invstd[c] * g[c] + b[c];
        y[i] = i % 7 == 0 ? 0.0f : z > 0 ? z : 0.2f * z;
      }
      Buf bx(be, x), bg(be, g), bm(be, mean), bi(be, invstd), bdy(be, dy), by(be, y), bdx(be, n), bdg(be, C),
          bdb(be, C), bdz2(be, n), bdx2(be, n), bdg2(be, C), bdb2(be, C);
      be.batchnorm_leaky_backward(N, C, HW, training, 0.2f, bdy.p(), by.p(), bx.p(), bg.p(), bm.p(), bi.p(), bdx.p(),
                                  bdg.p(), bdb.p());
      be.unary_backward(UnaryOp::LeakyRelu, n, bdy.p(), by.p(), by.p(), 0.2f, bdz2.p());
      be.batchnorm_backward(N, C, HW, training, bdz2.p(), bx.p(), bg.p(), bm.p(), bi.p(), bdx2.p(), bdg2.p(),
                            bdb2.p());
      const std::string what = std::string("batchnorm leaky backward ") + (training ? "train" : "eval") + " N" +
                               std::to_string(N) + " C" + std::to_string(C) + " HW" + std::to_string(HW);
      expect_close(bdx.host(), bdx2.host(), 0, 0, what + " dx");
      expect_close(bdg.host(), bdg2.host(), 0, 0, what + " dgamma");
      expect_close(bdb.host(), bdb2.host(), 0, 0, what + " dbeta");
    }
}

void check_bn_backward(const Backend& be, int64_t N, int64_t C, int64_t HW, bool training, bool with_param_grads,
                       uint64_t seed) {
  Vec x = random_vec(N * C * HW, seed, -2.0f, 2.0f), g = random_vec(C, seed + 1, 0.5f, 1.5f);
  Vec b = random_vec(C, seed + 2), dy = random_vec(N * C * HW, seed + 3);
  Vec rm = random_vec(C, seed + 4), rv = random_vec(C, seed + 5, 0.5f, 2.0f);
  const double eps = 1e-5;
  const DVec xd = to_d(x), gd = to_d(g), bd = to_d(b), dyd = to_d(dy), rmd = to_d(rm), rvd = to_d(rv);
  auto loss = [&](const DVec& xx, const DVec& gg, const DVec& bb) {
    DVec y = training ? bn_train_d(N, C, HW, xx, gg, bb, rmd, rvd, 0.1, eps).y : bn_eval_d(N, C, HW, xx, gg, bb, rmd, rvd, eps);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += dyd[i] * y[i];
    return s;
  };
  DVec gx = numeric_grad(xd, [&](const DVec& v) { return loss(v, gd, bd); });
  DVec gg = numeric_grad(gd, [&](const DVec& v) { return loss(xd, v, bd); });
  DVec gb = numeric_grad(bd, [&](const DVec& v) { return loss(xd, gd, v); });

  // saved statistics: the batch's in training, the running ones in eval
  Vec save_mean(C), save_invstd(C);
  if (training) {
    BnRef r = bn_train_d(N, C, HW, xd, gd, bd, rmd, rvd, 0.1, eps);
    save_mean = to_f(r.mean);
    save_invstd = to_f(r.invstd);
  } else {
    for (int64_t c = 0; c < C; ++c) save_mean[c] = rm[c], save_invstd[c] = static_cast<float>(1.0 / std::sqrt(rv[c] + eps));
  }
  Buf bx(be, x), bg(be, g), bdy(be, dy), bm(be, save_mean), bi(be, save_invstd), bdx(be, x.size()), bdg(be, C),
      bdb(be, C);
  be.batchnorm_backward(N, C, HW, training, bdy.p(), bx.p(), bg.p(), bm.p(), bi.p(), bdx.p(),
                        with_param_grads ? bdg.p() : nullptr, with_param_grads ? bdb.p() : nullptr);
  const std::string what = std::string("batchnorm backward ") + (training ? "train" : "eval") + " N" +
                           std::to_string(N) + " C" + std::to_string(C) + " HW" + std::to_string(HW);
  expect_close(bdx.host(), gx, 2e-3, 2e-4, what + " dx vs finite differences");
  if (with_param_grads) {
    expect_close(bdg.host(), gg, 2e-3, 2e-4, what + " dgamma vs finite differences");
    expect_close(bdb.host(), gb, 2e-3, 2e-4, what + " dbeta vs finite differences");
  }
}

C3_TEST(batchnorm_backward_train_finite_differences) {
  check_bn_backward(be, 6, 4, 1, true, true, 7000);   // BatchNorm1d
  check_bn_backward(be, 3, 2, 12, true, true, 7100);  // BatchNorm2d
  check_bn_backward(be, 2, 3, 5, true, false, 7200);  // dgamma/dbeta not requested
}

C3_TEST(batchnorm_backward_eval_finite_differences) {
  check_bn_backward(be, 5, 3, 1, false, true, 7300);
  check_bn_backward(be, 2, 2, 9, false, true, 7400);
}

// ---------------------------------------------------------------- adam

C3_TEST(adam_three_steps_match_hand_loop) {
  const size_t n = 40000;  // threaded
  for (float wd : {0.0f, 0.01f}) {
    Vec p = random_vec(n, 80), m(n, 0.0f), v(n, 0.0f);
    DVec pd = to_d(p), md(n, 0.0), vd(n, 0.0);
    Buf bp(be, p), bm(be, m), bv(be, v), bg(be, n);
    // double hyper-parameters, as PyTorch holds them; the tolerance on v is tight enough to catch
    // 1 - beta2 formed in float (1.0f - 0.999f is 1.3e-5 off)
    const double lr = 2e-4, b1 = 0.5, b2 = 0.999, eps = 1e-8;
    for (int step = 1; step <= 3; ++step) {
      Vec g = random_vec(n, 81 + step);
      be.upload(bg.p(), g.data(), n);
      const AdamTensor t{bp.p(), bg.p(), bm.p(), bv.p(), n, step};
      be.adam_step(&t, 1, lr, b1, b2, eps, wd);
      const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
      for (size_t i = 0; i < n; ++i) {
        const double gi = g[i] + static_cast<double>(wd) * pd[i];
        md[i] = b1 * md[i] + (1 - b1) * gi;
        vd[i] = b2 * vd[i] + (1 - b2) * gi * gi;
        pd[i] -= lr / bc1 * md[i] / (std::sqrt(vd[i]) / std::sqrt(bc2) + eps);
      }
    }
    const std::string what = "adam wd=" + std::to_string(wd);
    expect_close(bm.host(), md, 1e-5, 1e-7, what + " m");
    expect_close(bv.host(), vd, 2e-6, 1e-12, what + " v");
    expect_close(bp.host(), pd, 1e-6, 1e-8, what + " param");
  }
}

C3_TEST(adam_many_tensors_match_one_by_one) {
  // one call over tensors of every size class (empty, tiny, across the threads' pieces), each with
  // its own step count, against a call per tensor: the same bits
  const size_t sizes[] = {1, 0, 7, 16385, 40000, 3, 100003};
  const int64_t steps[] = {1, 4, 2, 3, 1, 9, 2};
  const size_t count = sizeof sizes / sizeof sizes[0];
  for (float wd : {0.0f, 0.01f}) {
    std::vector<std::unique_ptr<Buf>> together, alone;
    std::vector<AdamTensor> joint;
    for (size_t k = 0; k < count; ++k) {
      const size_t n = sizes[k];
      for (auto* set : {&together, &alone}) {
        set->push_back(std::make_unique<Buf>(be, random_vec(n, 8100 + k)));   // param
        set->push_back(std::make_unique<Buf>(be, random_vec(n, 8200 + k)));   // grad
        set->push_back(std::make_unique<Buf>(be, random_vec(n, 8300 + k)));   // m
        Vec v = random_vec(n, 8400 + k);
        for (float& x : v) x = x * x;  // a second moment is never negative
        set->push_back(std::make_unique<Buf>(be, v));
      }
      joint.push_back({together[4 * k]->p(), together[4 * k + 1]->p(), together[4 * k + 2]->p(), together[4 * k + 3]->p(), n,
                       steps[k]});
      const AdamTensor one{alone[4 * k]->p(), alone[4 * k + 1]->p(), alone[4 * k + 2]->p(), alone[4 * k + 3]->p(), n, steps[k]};
      be.adam_step(&one, 1, 2e-4, 0.5, 0.999, 1e-8, wd);
    }
    be.adam_step(joint.data(), joint.size(), 2e-4, 0.5, 0.999, 1e-8, wd);
    for (size_t k = 0; k < count; ++k)
      for (int j : {0, 2, 3})
        expect_close(together[4 * k + j]->host(), alone[4 * k + j]->host(), 0, 0,
                     "adam wd=" + std::to_string(wd) + " tensor " + std::to_string(k) + (j == 0 ? " param" : j == 2 ? " m" : " v"));
  }
}

// ---------------------------------------------------------------- layout

C3_TEST(upsample2x_forward_and_backward) {
  const int64_t shapes[][3] = {{1, 1, 1}, {3, 4, 5}, {6, 17, 9}, {40, 32, 32}};
  uint64_t seed = 8000;
  for (auto& s : shapes) {
    const int64_t P = s[0], H = s[1], W = s[2];
    Vec x = random_vec(P * H * W, ++seed), dy = random_vec(P * 4 * H * W, ++seed);
    Buf bx(be, x), by(be, dy.size()), bdy(be, dy), bdx(be, x.size());
    be.upsample2x_forward(P, H, W, bx.p(), by.p());
    be.upsample2x_backward(P, H, W, bdy.p(), bdx.p());
    DVec y(dy.size()), dx(x.size(), 0.0);
    for (int64_t p = 0; p < P; ++p)
      for (int64_t i = 0; i < 2 * H; ++i)
        for (int64_t j = 0; j < 2 * W; ++j) {
          y[(p * 2 * H + i) * 2 * W + j] = x[(p * H + i / 2) * W + j / 2];
          dx[(p * H + i / 2) * W + j / 2] += dy[(p * 2 * H + i) * 2 * W + j];
        }
    const std::string what = "upsample2x " + std::to_string(P) + "x" + std::to_string(H) + "x" + std::to_string(W);
    expect_close(by.host(), y, 0, 0, what + " forward");
    expect_close(bdx.host(), dx, 1e-6, 1e-7, what + " backward");
  }
}

C3_TEST(copy_block_concat_and_slice) {
  // concat-style: src (outer 3, 4 rows of inner 5) into rows [2, 6) of dst (outer 3, 7 rows)
  const int64_t outer = 3, inner = 5, src_dim = 4, dst_dim = 7;
  Vec src = random_vec(outer * src_dim * inner, 90);
  const float sentinel = -7.0f;
  Vec dst(outer * dst_dim * inner, sentinel);
  Buf bs(be, src), bd(be, dst);
  be.copy_block(outer, inner, 4, bs.p(), src_dim, 0, bd.p(), dst_dim, 2);
  DVec want(dst.begin(), dst.end());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < 4; ++j)
      for (int64_t i = 0; i < inner; ++i) want[(o * dst_dim + 2 + j) * inner + i] = src[(o * src_dim + j) * inner + i];
  expect_close(bd.host(), want, 0, 0, "copy_block into an offset (concat)");
  // slice-style: rows [1, 3) of src into a dst of 2 rows
  Buf bsl(be, outer * 2 * inner);
  be.copy_block(outer, inner, 2, bs.p(), src_dim, 1, bsl.p(), 2, 0);
  DVec want2(outer * 2 * inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < inner; ++i) want2[(o * 2 + j) * inner + i] = src[(o * src_dim + 1 + j) * inner + i];
  expect_close(bsl.host(), want2, 0, 0, "copy_block from an offset (slice)");
  // many outer rows (threaded), inner 1
  const int64_t big = 70000;
  Vec s2 = random_vec(big * 3, 91);
  Buf b2(be, s2), d2(be, big);
  be.copy_block(big, 1, 1, b2.p(), 3, 2, d2.p(), 1, 0);
  DVec want3(big);
  for (int64_t o = 0; o < big; ++o) want3[o] = s2[o * 3 + 2];
  expect_close(d2.host(), want3, 0, 0, "copy_block with many outer rows");
}

}  // namespace
