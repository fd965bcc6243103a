// CUDA backend checks. Two parts:
// - host checks of the CUDA kernels' index arithmetic (fast division, the device Philox copy,
//   the implicit-GEMM descriptors of gemm and conv2d), run in every build, GPU or not;
// - cuda_vs_cpu_* cases that run each op on both backends with the same inputs and compare
//   (tolerances derived from the math mode: TF32 products, exact-fp32 FFMA, or plain float
//   kernels). They pass with a printed note when no CUDA device is usable.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <array>
#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <string>
#include <vector>

#include "../core/rng.h"
#include "../cpu/kernels.h"
#include "../cuda/broadcast.cuh"
#include "../cuda/conv_const.cuh"
#include "../cuda/conv_gemm.cuh"
#include "../cuda/emu/mma_fragment.h"
#include "../cuda/philox.cuh"
#include "../cuda/tile_core.cuh"
#include "../cuda/tile_wgmma.cuh"
#include "harness.h"
#ifdef C3GAN_HAVE_CUDA
#include "../cuda/cuda.h"
#endif

namespace c3::cpu {  // the plain loops beside the fast broadcast kernels (cpu/pointwise.cc)
void binary_forward_reference(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y);
void expand_reference(const BroadcastIndex& idx, const float* x, float* y);
}  // namespace c3::cpu

namespace {

using namespace c3;
using namespace c3::test;
using Vf = std::vector<float>;
using Vd = std::vector<double>;

// ---------------------------------------------------------------- host checks (any build)

Vf nan_vec(size_t n) { return Vf(n, std::numeric_limits<float>::quiet_NaN()); }

C3_TEST(cuda_host_fastdiv_matches_division) {
  std::vector<int64_t> divisors;
  for (int64_t d = 1; d <= 3000; ++d) divisors.push_back(d);
  for (int s = 12; s <= 30; ++s) {
    const int64_t p = int64_t(1) << s;
    divisors.insert(divisors.end(), {p - 1, p, p + 1, 3 * p / 2});
  }
  divisors.push_back((int64_t(1) << 31) - 1);
  for (uint64_t i = 0; i < 2000; ++i)
    divisors.push_back(1 + static_cast<int64_t>(Philox::uniform_at(7, i) * 2147483000.0));
  std::vector<int32_t> ns;
  for (int32_t n = 0; n < 5000; ++n) ns.push_back(n);
  for (uint64_t i = 0; i < 3000; ++i) ns.push_back(static_cast<int32_t>(Philox::uniform_at(8, i) * 2147483000.0));
  ns.push_back(2147483647);
  ns.push_back(2147483646);
  for (int64_t d : divisors) {
    const cuda::FastDiv f(d);
    auto one = [&](int64_t n) {
      if (n < 0 || n > 2147483647) return;
      int32_t q, r;
      f.divmod(static_cast<int32_t>(n), q, r);
      if (q != n / d || r != n % d)
        throw Failure("FastDiv(" + std::to_string(d) + ") of " + std::to_string(n) + " gives " + std::to_string(q) +
                      " rem " + std::to_string(r));
    };
    for (int32_t n : ns) one(n);
    for (int64_t k : {int64_t(1), int64_t(2), int64_t(7), 2147483647 / d}) one(k * d - 1), one(k * d), one(k * d + 1);
  }
}

C3_TEST(cuda_host_philox_copy_matches_core_rng) {
  const uint64_t keys[] = {0, 1, 99, 0x1234abcd5678ull, ~uint64_t(0), uint64_t(1) << 32};
  for (uint64_t key : keys)
    for (uint64_t i = 0; i < 4000; ++i) {
      const uint64_t ctr = i < 2000 ? i : (i * 0x9E3779B97F4A7C15ull);
      uint32_t a[4], b[4];
      Philox::block(key, ctr, a);
      cuda::PhiloxD::block(key, ctr, b);
      for (int w = 0; w < 4; ++w) expect_true(a[w] == b[w], "device Philox word differs from core/rng.cc");
      const float u0 = Philox::uniform_at(key, ctr), u1 = cuda::PhiloxD::uniform_at(key, ctr);
      const float n0 = Philox::normal_at(key, ctr), n1 = cuda::PhiloxD::normal_at(key, ctr);
      expect_true(std::memcmp(&u0, &u1, 4) == 0, "device uniform_at differs from core/rng.cc");
      expect_true(std::memcmp(&n0, &n1, 4) == 0, "device normal_at differs from core/rng.cc");
    }
}

// The tile kernel's operands evaluated as plain loops (gemmop::reference_product) must equal
// the CPU reference kernels: this checks every index map the CUDA GEMM and conv2d use.
C3_TEST(cuda_host_gemm_descriptors_match_reference) {
  using namespace cuda::gemmop;
  const int shapes[][3] = {{7, 5, 3}, {1, 33, 7}, {40, 9, 17}, {5, 40, 2}};
  uint64_t seed = 40000;
  for (auto& sh : shapes)
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const int M = sh[0], N = sh[1], K = sh[2];
      Vf A = random_vec(M * K, ++seed), B = random_vec(K * N, ++seed), C = random_vec(M * N, ++seed);
      Vf want = C, got = C, got_t = C;
      cpu::gemm_reference(ta, tb, M, N, K, 0.5f, A.data(), B.data(), -1.5f, want.data());
      // op(A) as M x K rows, op(B)^T as N x K rows, exactly as gemm.cu builds them
      const Linear<true> ar{A.data(), M, K, 1}, br{B.data(), N, K, 1};
      const Linear<false> ac{A.data(), M, 1, M}, bc{B.data(), N, 1, N};
      const DenseOut out{got.data(), N, 1, 0.5f, -1.5f, nullptr}, out_t{got_t.data(), 1, N, 0.5f, -1.5f, nullptr};
      if (!ta && !tb) reference_product(ar, bc, out, K), reference_product(bc, ar, out_t, K);
      if (!ta && tb) reference_product(ar, br, out, K), reference_product(br, ar, out_t, K);
      if (ta && !tb) reference_product(ac, bc, out, K), reference_product(bc, ac, out_t, K);
      if (ta && tb) reference_product(ac, br, out, K), reference_product(br, ac, out_t, K);
      const std::string what = "gemm descriptors t=" + std::to_string(t) + " " + std::to_string(M) + "x" +
                               std::to_string(N) + "x" + std::to_string(K);
      expect_close(got, want, 1e-5, 1e-6, what);
      expect_close(got_t, want, 1e-5, 1e-6, what + " (computed transposed)");
    }
}

struct ConvCase {
  int64_t N, C, H, W, K, R, S, stride, pad;
};

Conv2dParams conv_params(const ConvCase& c) {
  Conv2dParams p{c.N, c.C, c.H, c.W, c.K, c.R, c.S, 0, 0, c.stride, c.pad};
  p.OH = (c.H + 2 * c.pad - c.R) / c.stride + 1;
  p.OW = (c.W + 2 * c.pad - c.S) / c.stride + 1;
  return p;
}

std::string conv_name(const Conv2dParams& p) {
  char b[160];
  std::snprintf(b, sizeof b, "conv N%lld C%lld %lldx%lld K%lld %lldx%lld s%lld p%lld", (long long)p.N, (long long)p.C,
                (long long)p.H, (long long)p.W, (long long)p.K, (long long)p.R, (long long)p.S, (long long)p.stride,
                (long long)p.pad);
  return b;
}

const ConvCase kHostConvCases[] = {
    {2, 3, 7, 6, 4, 3, 3, 1, 1},  {2, 3, 8, 8, 5, 4, 4, 2, 1},  {3, 6, 4, 4, 2, 4, 4, 4, 0},
    {2, 5, 6, 7, 3, 1, 1, 1, 0},  {1, 4, 9, 7, 3, 1, 1, 2, 0},  {2, 3, 9, 7, 5, 3, 2, 2, 1},
    {1, 2, 5, 5, 1, 5, 5, 1, 2},  {1, 3, 11, 13, 7, 3, 3, 3, 2}, {1, 2, 7, 9, 3, 2, 3, 3, 0},
    {2, 2, 9, 8, 3, 4, 4, 2, 3},  {1, 1, 1, 5, 2, 1, 3, 2, 1},
};

C3_TEST(cuda_host_conv_descriptors_match_reference) {
  using namespace cuda::gemmop;
  uint64_t seed = 41000;
  for (const ConvCase& cc : kHostConvCases) {
    const Conv2dParams p = conv_params(cc);
    const ConvShape s = conv_shape(p);
    const std::string what = conv_name(p);
    Vf x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * p.R * p.S, ++seed);
    Vf b = random_vec(p.K, ++seed), dy = random_vec(p.N * p.K * p.OH * p.OW, ++seed);
    // forward, with bias
    Vf y_ref(dy.size()), y(dy.size(), NAN);
    cpu::conv2d_forward_reference(p, x.data(), w.data(), b.data(), y_ref.data());
    reference_product(conv_weight(s, w.data()), conv_fwd_x(s, x.data()), conv_fwd_out(s, y.data(), b.data()),
                      s.C * s.R * s.S);
    expect_close(y, y_ref, 1e-5, 1e-6, what + " forward descriptors");
    // backward data: the phases (and the zero fill) as conv2d.cu runs them
    Vf dx_ref(x.size()), dx(x.size(), NAN);
    cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), dx_ref.data());
    if (bwdd_needs_zero(s)) std::fill(dx.begin(), dx.end(), 0.0f);
    for_each_bwdd_phase(s, [&](const Phase& ph) {
      reference_product(conv_bwdd_w(s, ph, w.data()), conv_bwdd_dy(s, ph, dy.data()), conv_bwdd_out(s, ph, dx.data()),
                        s.K * ph.Rp * ph.Sp);
    });
    expect_close(dx, dx_ref, 1e-5, 1e-6, what + " backward-data descriptors (per stride phase)");
    // backward weight
    Vf dw_ref(w.size()), dw(w.size(), NAN);
    cpu::conv2d_backward_weight_reference(p, dy.data(), x.data(), dw_ref.data());
    reference_product(conv_bwdw_dy(s, dy.data()), conv_bwdw_x(s, x.data()),
                      DenseOut{dw.data(), s.C * s.R * s.S, 1, 1.0f, 0.0f, nullptr}, s.N * s.OH * s.OW);
    expect_close(dw, dw_ref, 1e-5, 1e-6, what + " backward-weight descriptors");
  }
}

// numpy-style broadcast of shape a against shape b: the index the ops layer builds
BroadcastIndex broadcast_index(const Shape& a, const Shape& b, int64_t& n_out) {
  const size_t r = std::max(a.size(), b.size());
  Shape pa(r - a.size(), 1), pb(r - b.size(), 1);
  pa.insert(pa.end(), a.begin(), a.end());
  pb.insert(pb.end(), b.begin(), b.end());
  BroadcastIndex idx{};
  idx.ndim = static_cast<int>(r);
  n_out = 1;
  for (size_t k = 0; k < r; ++k) idx.shape[k] = std::max(pa[k], pb[k]), n_out *= idx.shape[k];
  for (int64_t k = static_cast<int64_t>(r) - 1, sa = 1, sb = 1; k >= 0; --k) {
    idx.stride_a[k] = pa[k] == 1 ? 0 : sa, idx.stride_b[k] = pb[k] == 1 ? 0 : sb;
    sa *= pa[k], sb *= pb[k];
  }
  return idx;
}

// sum_to's index for x reduced to y (y right-aligned against x)
BroadcastIndex reduce_index(const Shape& x, const Shape& y, int64_t& nx, int64_t& ny) {
  BroadcastIndex idx{};
  idx.ndim = static_cast<int>(x.size());
  Shape py(x.size() - y.size(), 1);
  py.insert(py.end(), y.begin(), y.end());
  nx = 1, ny = 1;
  for (size_t k = 0; k < x.size(); ++k) idx.shape[k] = x[k], nx *= x[k], ny *= py[k];
  for (int64_t k = idx.ndim - 1, st = 1; k >= 0; --k) idx.stride_a[k] = py[k] == 1 ? 0 : st, st *= py[k];
  return idx;
}

// The broadcast kernels' index maps (broadcast.cuh), walked as the kernels walk them, against
// the CPU's reference loops: binary/expand offsets, and sum_to's plan in both of its schemes
// (thread per output with an odometer, block per output with a division per term) and slices.
C3_TEST(cuda_host_broadcast_and_sum_to_index_maps) {
  using namespace cuda::bcast;
  const std::pair<Shape, Shape> pairs[] = {{{3, 4, 5}, {3, 4, 5}}, {{3, 4, 5}, {}},      {{16, 32, 4, 4}, {1, 32, 1, 1}},
                                           {{5, 7}, {5, 1}},        {{1, 7}, {9, 7}},     {{2, 1, 3, 1, 2, 1}, {1, 2, 1, 3, 1, 2}},
                                           {{4, 1}, {1, 5}},        {{3, 1, 2}, {4, 1}}};
  uint64_t seed = 44000;
  for (const auto& pr : pairs) {
    int64_t n;
    const BroadcastIndex idx = broadcast_index(pr.first, pr.second, n);
    int64_t na = 1, nb = 1;
    for (int64_t d : pr.first) na *= d;
    for (int64_t d : pr.second) nb *= d;
    Vf a = random_vec(na, ++seed), b = random_vec(nb, ++seed), want(n), want_e(n), got(n), got_e(n);
    cpu::binary_forward_reference(BinaryOp::Sub, idx, a.data(), b.data(), want.data());
    cpu::expand_reference(idx, a.data(), want_e.data());
    const Walk w = coalesce(idx, true), we = coalesce(idx, false);
    for (int i = 0; i < n; ++i) {
      int oa, ob, ea, eb;
      walk_offsets(w, i, oa, ob);
      walk_offsets(we, i, ea, eb);
      got[i] = a[oa] - b[ob];
      got_e[i] = a[ea];
    }
    const std::string what = shape_str(pr.first) + " with " + shape_str(pr.second);
    expect_close(got, want, 0, 0, "binary walk " + what);
    expect_close(got_e, want_e, 0, 0, "expand walk " + what);
  }
  const std::pair<Shape, Shape> sums[] = {{{6, 5}, {1, 5}},        {{6, 5}, {6, 1}},          {{2, 3, 4, 5}, {}},
                                          {{2, 3, 4, 5}, {2, 1, 4, 1}}, {{2, 3, 4, 5}, {1, 3, 1, 5}}, {{8, 16, 32, 32}, {1, 16, 1, 1}},
                                          {{1000, 300}, {1, 300}}, {{300, 1000}, {300, 1}},   {{1 << 16}, {1}},
                                          {{2, 1, 3, 1, 2, 3}, {1, 1, 3, 1, 1, 3}}, {{1000, 5}, {1000, 1}}, {{3, 4}, {3, 4}},
                                          {{}, {}}, {{5, 1, 6}, {5, 1, 1}}};
  for (const auto& sp : sums)
    for (int64_t sms : {int64_t(132), int64_t(2)}) {
      int64_t nx, ny;
      const BroadcastIndex idx = reduce_index(sp.first, sp.second, nx, ny);
      Vf x = random_vec(nx, ++seed), got = nan_vec(ny);
      Vd want(ny, 0.0);  // the reference loop of cpu/pointwise.cc, summing in double
      for (int64_t i = 0; i < nx; ++i) {
        int64_t rem = i, oy = 0;
        for (int d = idx.ndim - 1; d >= 0; --d) oy += (rem % idx.shape[d]) * idx.stride_a[d], rem /= idx.shape[d];
        want[oy] += x[i];
      }
      const SumPlan p = sum_plan(idx, sms, 256);
      const std::string what = "sum_to plan " + shape_str(sp.first) + " to " + shape_str(sp.second) + " sms " +
                               std::to_string(sms);
      expect_true(p.Y == ny && static_cast<int64_t>(p.Y) * p.R == nx, what + ": Y * R covers x");
      expect_true(p.slices >= 1 && static_cast<int64_t>(p.slices) * p.slice_len >= p.R &&
                      static_cast<int64_t>(p.slices - 1) * p.slice_len < p.R,
                  what + ": slices cover the reduction");
      std::vector<double> part(static_cast<size_t>(p.slices) * p.Y, NAN);
      for (int s = 0; s < p.slices; ++s) {
        const int r0 = s * p.slice_len, r1 = std::min(p.R, r0 + p.slice_len);
        for (int u = 0; u < p.Y; ++u) {
          int xb, yb;
          kept_offsets(p, u, xb, yb);
          double acc = 0;
          if (p.blocks) {
            for (int r = r0; r < r1; ++r) acc += x[xb + reduced_offset(p, r, nullptr)];
          } else {
            int rc[kMaxDims] = {};
            int roff = reduced_offset(p, r0, rc);
            for (int r = r0; r < r1; ++r) {
              acc += x[xb + roff];
              next_reduced(p, rc, roff);
            }
          }
          part[static_cast<size_t>(s) * p.Y + yb] = acc;
        }
      }
      for (int j = 0; j < p.Y; ++j) {
        double t = 0;
        for (int s = 0; s < p.slices; ++s) t += part[static_cast<size_t>(s) * p.Y + j];
        got[j] = static_cast<float>(t);
      }
      expect_close(got, want, 1e-6, 1e-7, what);
    }
}

// ---------------------------------------------------------------- the tile kernel on emulated threads


// The block algorithm of tile_core.cuh run on host threads: one std::thread per CUDA thread,
// __syncthreads as a barrier, and mma.sync emulated from its PTX fragment layout (each lane
// posts its registers, then computes its four outputs from the warp's posted fragments).
// This checks the loaders, shared-memory layouts, double buffering, index tables, epilogue and
// K split of the real kernel code without a GPU.
// A reusable barrier for n threads; waiters yield (the emulation runs hundreds of threads on a
// few cores, where sleeping on a condition variable costs more than yielding).
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    const int gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      gen_.store(gen + 1, std::memory_order_release);
      return;
    }
    while (gen_.load(std::memory_order_acquire) == gen) std::this_thread::yield();
  }

 private:
  const int n_;
  std::atomic<int> count_{0}, gen_{0};
};

struct EmuBlock {
  Barrier block;
  std::vector<std::unique_ptr<Barrier>> warp;
  std::vector<uint32_t> fa, fb;  // per lane: 4 A and 2 B fragment registers
  explicit EmuBlock(int threads) : block(threads), fa(threads * 4), fb(threads * 2) {
    for (int w = 0; w < threads / 32; ++w) warp.emplace_back(new Barrier(32));
  }
};

struct EmuCtx {
  EmuBlock* blk;
  int t, x, y, z;
  int tid() const { return t; }
  int bx() const { return x; }
  int by() const { return y; }
  int bz() const { return z; }
  void sync() const { blk->block.wait(); }
  // each lane posts its fragment registers, then computes its four outputs from the warp's
  void mma(float d[4], const uint32_t a[4], const uint32_t b[2]) const {
    const int w = t / 32, lane = t % 32;
    uint32_t* A = &blk->fa[w * 32 * 4];
    uint32_t* B = &blk->fb[w * 32 * 2];
    for (int q = 0; q < 4; ++q) A[lane * 4 + q] = a[q];
    B[lane * 2] = b[0], B[lane * 2 + 1] = b[1];
    blk->warp[w]->wait();
    c3emu::mma_m16n8k8_lane(d, lane, A, B);
    blk->warp[w]->wait();  // every lane has read the posted fragments
  }
};

bool full_emulation() {
  const char* v = std::getenv("C3GAN_TILE_EMULATION");
  return v && !std::strcmp(v, "full");
}

// tile_gemm.cuh's run_tiles, with blocks one after another on emulated threads
template <class CFG, bool TF32, class OpA, class OpB, class Out>
void emulate_tiles(const OpA& a, const OpB& b, const Out& out, int K, int sms) {
  using namespace cuda::tile;
  const int M = a.rows, N = b.rows;
  if (M <= 0 || N <= 0) return;
  const Plan p = plan_tiles<CFG>(M, N, K, sms);
  std::vector<float> ws(p.splits > 1 ? static_cast<size_t>(p.splits) * M * N : 0,
                        std::numeric_limits<float>::quiet_NaN());
  // one host thread per CUDA thread, walking every block in turn (a block barrier between blocks)
  EmuBlock blk(CFG::THREADS);
  auto sh = std::make_unique<Shared<CFG, OpA, OpB>>();
  std::vector<std::thread> threads;
  for (int t = 0; t < CFG::THREADS; ++t)
    threads.emplace_back([&, t] {
      for (int z = 0; z < p.splits; ++z)
        for (int y = 0; y < p.tiles_m; ++y)
          for (int x = 0; x < p.tiles_n; ++x) {
            blk.block.wait();
            if (t == 0) std::memset(static_cast<void*>(sh.get()), 0xff, sizeof(*sh));  // NaN: unwritten reads show
            blk.block.wait();
            EmuCtx ctx{&blk, t, x, y, z};
            tile_block<CFG, TF32>(ctx, *sh, a, b, out, K, p.kchunk, p.splits > 1 ? ws.data() : nullptr);
          }
    });
  for (auto& th : threads) th.join();
  if (p.splits > 1)
    for (int64_t i = 0; i < static_cast<int64_t>(M) * N; ++i) splitk_reduce_at(ws.data(), p.splits, M, N, out, i);
}

// tile_gemm.cuh's tile_gemm: the tile shape by M, the math mode by tf32
template <class OpA, class OpB, class Out>
void emulate_gemm(bool tf32, const OpA& a, const OpB& b, const Out& out, int K, int sms = 132) {
  using namespace cuda::tile;
  if (a.rows <= 32) {
    if (tf32) emulate_tiles<SmallM, true>(a, b, out, K, sms);
    else emulate_tiles<SmallM, false>(a, b, out, K, sms);
  } else {
    if (tf32) emulate_tiles<Big, true>(a, b, out, K, sms);
    else emulate_tiles<Big, false>(a, b, out, K, sms);
  }
}

// |got - want| <= (tf32 ? 1e-3 + 3 (K+2) 2^-24 : 2 (K+2) 2^-24) * scale, scale = sum |terms|
void expect_product(const Vf& got, const Vf& want, const Vf& scale, int64_t K, bool tf32, const std::string& what) {
  const double rel = tf32 ? 1.0e-3 + 3.0 * (K + 2) * 6.0e-8 : 2.0 * (K + 2) * 6.0e-8;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= rel * scale[i] + 1e-30)) {
      char b[200];
      std::snprintf(b, sizeof b, ": element %zu is %.9g, expected %.9g (allowed %.3g)", i, got[i], want[i],
                    rel * scale[i]);
      throw Failure(what + b);
    }
  }
}

Vf abs_of(Vf v) {
  for (float& x : v) x = std::fabs(x);
  return v;
}

C3_TEST(cuda_host_tile_kernel_emulated_gemm) {
  using namespace cuda::gemmop;
  // one tile, narrow tiles (M <= 32), ragged 2 x 2 tiles, a K split, and the transposed product
  // gemm.cu uses for N <= 32 < M
  const int shapes[][3] = {{70, 45, 40}, {20, 130, 33}, {130, 129, 17}, {40, 40, 300}, {100, 20, 50}};
  uint64_t seed = 42000;
  for (size_t si = 0; si < std::size(shapes); ++si)
    for (int t = 0; t < 4; ++t)
      for (bool tf32 : {true, false}) {
        // every transpose on the first shape, one on the others (all with C3GAN_TILE_EMULATION=full)
        if (si > 0 && t != static_cast<int>(si % 4) && !full_emulation()) continue;
        const auto& sh = shapes[si];
        const bool ta = t & 1, tb = t & 2;
        const int M = sh[0], N = sh[1], K = sh[2];
        Vf A = random_vec(M * K, ++seed), B = random_vec(K * N, ++seed), C = random_vec(M * N, ++seed);
        const float alpha = 0.75f, beta = t == 3 ? 0.0f : -0.5f;
        Vf want = C, scale = beta == 0.0f ? Vf(M * N, 0.0f) : abs_of(C);
        cpu::gemm_reference(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, want.data());
        const Vf aA = abs_of(A), aB = abs_of(B);
        cpu::gemm_reference(ta, tb, M, N, K, std::fabs(alpha), aA.data(), aB.data(), std::fabs(beta), scale.data());
        Vf got = beta == 0.0f ? nan_vec(M * N) : C;
        const Linear<true> ar{A.data(), M, K, 1}, br{B.data(), N, K, 1};
        const Linear<false> ac{A.data(), M, 1, M}, bc{B.data(), N, 1, N};
        const bool swap = N <= 32 && M > 32;
        const DenseOut out = swap ? DenseOut{got.data(), 1, N, alpha, beta, nullptr}
                                  : DenseOut{got.data(), N, 1, alpha, beta, nullptr};
        auto run = [&](const auto& a, const auto& b) {
          if (swap) emulate_gemm(tf32, b, a, out, K);
          else emulate_gemm(tf32, a, b, out, K);
        };
        if (!ta && !tb) run(ar, bc);
        if (!ta && tb) run(ar, br);
        if (ta && !tb) run(ac, bc);
        if (ta && tb) run(ac, br);
        char what[120];
        std::snprintf(what, sizeof what, "emulated tile gemm %s ta=%d tb=%d %dx%dx%d", tf32 ? "tf32" : "fp32", ta, tb,
                      M, N, K);
        expect_product(got, want, scale, K, tf32, what);
      }
}

C3_TEST(cuda_host_tile_kernel_emulated_conv) {
  using namespace cuda::gemmop;
  // 3x3 s1, 4x4 s2, 1x1 s2 (phases without taps), many output channels (wide tiles); with
  // C3GAN_TILE_EMULATION=full also 4x4 s4 and 3x3 s3 p2
  const ConvCase cases[] = {{2, 3, 7, 6, 4, 3, 3, 1, 1}, {2, 3, 8, 8, 5, 4, 4, 2, 1},   {1, 4, 9, 7, 3, 1, 1, 2, 0},
                            {2, 8, 9, 9, 40, 3, 3, 1, 1}, {3, 6, 4, 4, 2, 4, 4, 4, 0}, {1, 3, 11, 13, 7, 3, 3, 3, 2}};
  uint64_t seed = 43000;
  for (size_t ci = 0; ci < std::size(cases); ++ci)
    for (bool tf32 : {true, false}) {
      if (ci >= 4 && !full_emulation()) continue;
      const ConvCase& cc = cases[ci];
      const Conv2dParams p = conv_params(cc);
      const ConvShape s = conv_shape(p);
      const std::string what = std::string("emulated tile ") + (tf32 ? "tf32 " : "fp32 ") + conv_name(p);
      Vf x = random_vec(p.N * p.C * p.H * p.W, ++seed), w = random_vec(p.K * p.C * p.R * p.S, ++seed);
      Vf b = random_vec(p.K, ++seed), dy = random_vec(p.N * p.K * p.OH * p.OW, ++seed);
      const Vf ax = abs_of(x), aw = abs_of(w), ab = abs_of(b), ady = abs_of(dy);
      Vf y_ref(dy.size()), sy(dy.size()), y = nan_vec(dy.size());
      cpu::conv2d_forward_reference(p, x.data(), w.data(), b.data(), y_ref.data());
      cpu::conv2d_forward_reference(p, ax.data(), aw.data(), ab.data(), sy.data());
      emulate_gemm(tf32, conv_weight(s, w.data()), conv_fwd_x(s, x.data()), conv_fwd_out(s, y.data(), b.data()),
                   s.C * s.R * s.S);
      expect_product(y, y_ref, sy, s.C * s.R * s.S, tf32, what + " forward");
      Vf dx_ref(x.size()), sdx(x.size()), dx = nan_vec(x.size());
      cpu::conv2d_backward_data_reference(p, dy.data(), w.data(), dx_ref.data());
      cpu::conv2d_backward_data_reference(p, ady.data(), aw.data(), sdx.data());
      if (bwdd_needs_zero(s)) std::fill(dx.begin(), dx.end(), 0.0f);
      for_each_bwdd_phase(s, [&](const Phase& ph) {
        emulate_gemm(tf32, conv_bwdd_w(s, ph, w.data()), conv_bwdd_dy(s, ph, dy.data()),
                     conv_bwdd_out(s, ph, dx.data()), s.K * ph.Rp * ph.Sp);
      });
      expect_product(dx, dx_ref, sdx, s.K * s.R * s.S, tf32, what + " backward data");
      Vf dw_ref(w.size()), sdw(w.size()), dw = nan_vec(w.size());
      cpu::conv2d_backward_weight_reference(p, dy.data(), x.data(), dw_ref.data());
      cpu::conv2d_backward_weight_reference(p, ady.data(), ax.data(), sdw.data());
      // 4 "SMs" so that the tiny product still splits its K = N OH OW
      emulate_gemm(tf32, conv_bwdw_dy(s, dy.data()), conv_bwdw_x(s, x.data()),
                   DenseOut{dw.data(), s.C * s.R * s.S, 1, 1.0f, 0.0f, nullptr}, s.N * s.OH * s.OW, 4);
      expect_product(dw, dw_ref, sdw, s.N * s.OH * s.OW, tf32, what + " backward weight");
    }
}

// ---------------------------------------------------------------- constant channels (conv_const.cuh)

struct CodeChCase {
  int64_t N, Cx, Kc, H, W, K, R;  // odd square kernel R x R, stride 1, pad (R - 1) / 2
};

// 3x3, 5x5, 7x7 and 1x1 kernels; maps shorter than, equal to and longer than the kernel; tails:
// interior rows wider than a warp, more rows than a block has warps, Kc above 32 lanes; and the
// empty cases (no batch, no output channels, no code channels)
const CodeChCase kCodeChCases[] = {
    {2, 3, 4, 5, 6, 5, 3},  {3, 0, 2, 4, 4, 3, 3},   {2, 2, 3, 1, 1, 4, 3},   {2, 3, 5, 2, 7, 3, 5},
    {1, 1, 2, 6, 3, 2, 1},  {4, 16, 20, 8, 8, 32, 3}, {2, 4, 3, 9, 11, 6, 7},  {2, 2, 7, 3, 40, 3, 3},
    {1, 1, 3, 70, 1, 2, 3}, {3, 2, 33, 13, 37, 5, 3}, {2, 1, 2, 3, 3, 2, 3},   {2, 1, 2, 5, 5, 2, 5},
    {2, 1, 2, 6, 4, 3, 5},  {1, 2, 2, 1, 9, 2, 5},    {0, 2, 3, 4, 4, 2, 3},   {2, 2, 3, 4, 4, 0, 3},
    {2, 3, 0, 4, 4, 2, 3},
};

Conv2dParams codech_params(const CodeChCase& c) {
  const int64_t pad = (c.R - 1) / 2;
  return Conv2dParams{c.N, c.Cx + c.Kc, c.H, c.W, c.K, c.R, c.R, c.H, c.W, 1, pad};
}

std::string codech_name(const CodeChCase& c) {
  char b[160];
  std::snprintf(b, sizeof b, "code channels N%lld Cx%lld Kc%lld %lldx%lld K%lld %lldx%lld", (long long)c.N,
                (long long)c.Cx, (long long)c.Kc, (long long)c.H, (long long)c.W, (long long)c.K, (long long)c.R,
                (long long)c.R);
  return b;
}

// Every axis class against conv_const.cc's loops: a class's positions share their in-image
// taps, the classes partition the axis in order, and the positions where tap t is inside (the
// CPU's tap_outputs) are exactly those of the classes that see t.
// The wgmma pipeline's shared-memory slices (tile_wgmma.cuh SmemCore) are the K-major,
// non-swizzled layout its descriptors describe (emu/wgmma_layout.h, the address rule the
// emulator and, per the PTX ISA, the tensor cores read by): each warpgroup's k step from its
// descriptor; the fields round-trip; and each warp store of CoreLoader fills one whole core
// matrix, its 32 lanes on 32 banks, for operands contiguous along k and along the rows.
template <class Op>
void check_core_loader_stores(const char* what) {
  using namespace c3::cuda::tile;
  using S = SmemCore<Wg::BM>;
  std::vector<int> hits(S::kElems, 0);
  const Op op{nullptr, Wg::BM, 1, 1};
  for (int w = 0; w < Wg::THREADS / 32; ++w)
    for (int e = 0; e < 8; ++e) {
      int lo = S::kElems;
      unsigned banks = 0;
      for (int lane = 0; lane < 32; ++lane) {
        CoreLoader<Op, Wg::BM, Wg::THREADS> l;
        l.init(op, 0, w * 32 + lane);
        const int at = S::idx(l.i0 + 8 * (e >> 2), (e & 3) * 4 + l.c4);
        ++hits[at];
        lo = std::min(lo, at);
        banks |= 1u << (at % 32);
      }
      expect_true(lo % 32 == 0 && banks == 0xffffffffu, std::string(what) + ": warp " + std::to_string(w) + " store " +
                                                   std::to_string(e) + " fills one core matrix on 32 banks");
    }
  for (int i = 0; i < S::kElems; ++i)
    expect_true(hits[i] == 1, std::string(what) + ": slice element " + std::to_string(i) + " stored once");
}

C3_TEST(cuda_host_wgmma_layout_matches_descriptors) {
  using namespace c3::cuda::tile;
  using S = SmemCore<Wg::BM>;
  const c3emu::SmemDesc rt = c3emu::decode_desc(c3emu::encode_desc(0x3ff0, S::LBO, S::SBO));
  expect_true(rt.start == 0x3ff0 && rt.lbo == S::LBO && rt.sbo == S::SBO && rt.swizzle == 0 && rt.base_offset == 0,
              "descriptor fields round-trip");
  const uint32_t base = 0x400;  // the slice's shared address
  for (int g = 0; g < 2; ++g)
    for (int s = 0; s < BK / 8; ++s) {
      const uint32_t start = base + 4 * static_cast<uint32_t>(S::idx(64 * g, 8 * s));
      const c3emu::SmemDesc d = c3emu::decode_desc(c3emu::encode_desc(start, S::LBO, S::SBO));
      for (int row = 0; row < 64; ++row)
        for (int k = 0; k < 8; ++k)
          if (c3emu::kmajor_at(d, row, k) != base + 4 * static_cast<uint32_t>(S::idx(64 * g + row, 8 * s + k)))
            throw Failure("warpgroup " + std::to_string(g) + ", k step " + std::to_string(s) + ": row " +
                          std::to_string(row) + ", k " + std::to_string(k) + " is not where the descriptor says");
    }
  check_core_loader_stores<c3::cuda::gemmop::Linear<true>>("k-contiguous operand");
  check_core_loader_stores<c3::cuda::gemmop::Linear<false>>("row-contiguous operand");
}

C3_TEST(cuda_host_code_channels_axis_classes) {
  for (int taps = 1; taps <= 15; taps += 2)
    for (int out = 0; out <= 40; ++out) {
      const int pad = (taps - 1) / 2;
      const cuda::codech::Axis ax{out, taps, pad};
      const std::string what = "axis out " + std::to_string(out) + " taps " + std::to_string(taps);
      const int n = ax.classes();
      expect_true(n == std::min(out, 2 * pad + 1), what + ": class count");
      int next = 0;
      for (int c = 0; c < n; ++c) {
        expect_true(ax.first(c) == next && ax.end(c) > ax.first(c), what + ": classes partition the axis in order");
        next = ax.end(c);
      }
      expect_true(next == out, what + ": classes cover the axis");
      for (int o = 0; o < out; ++o) {
        const int c = ax.cls(o);
        expect_true(c >= 0 && c < n && ax.first(c) <= o && o < ax.end(c), what + ": position in its class's range");
        const int lo = std::max(0, pad - o), hi = std::max(lo, std::min(taps, out + pad - o));  // inside_taps
        expect_true(ax.tap_lo(c) == lo && ax.tap_hi(c) == hi,
                    what + ": position " + std::to_string(o) + " sees the taps of its class");
      }
      for (int t = 0; t < taps; ++t) {
        const int lo = std::max(0, pad - t), hi = std::max(lo, std::min(out, out + pad - t));  // tap_outputs
        for (int o = 0; o < out; ++o)
          expect_true(ax.sees(ax.cls(o), t) == (lo <= o && o < hi),
                      what + ": tap " + std::to_string(t) + " at position " + std::to_string(o));
      }
    }
}

// conv_const.cu's kernels as plain loops over the same codech functions, with each kernel's
// partition of the work (the warps of a tap-sum block take rows w, w + warps, ...).
void emulate_code_channels(bool backward, const Conv2dParams& p, int64_t Kc, const float* code, const float* w,
                           const float* dy, float* y, float* dw, float* dcode) {
  using namespace cuda::codech;
  const Plan q = make_plan(p, Kc);
  const int ncls = q.classes(), ncr = q.row.classes(), ncs = q.col.classes();
  const int OHW = q.row.out * q.col.out;
  if (!backward) {
    if (Kc == 0 || q.N * q.K * OHW == 0) return;
    std::vector<double> wsum(static_cast<size_t>(q.K) * ncls * q.Kc);
    for (int i = 0; i < static_cast<int>(wsum.size()); ++i) wsum[i] = wsum_at(q, w, i);
    Vf bias(static_cast<size_t>(q.N) * q.K * ncls);
    for (int b = 0; b < static_cast<int>(bias.size()); ++b) {
      int64_t co, wo;
      bias_rows(q, b, co, wo);
      double acc = 0;
      for (int j = 0; j < q.Kc; ++j) acc += static_cast<double>(code[co + j]) * wsum[wo + j];
      bias[b] = static_cast<float>(acc);
    }
    const cuda::FastDiv fohw(OHW), fow(q.col.out);
    for (int i = 0; i < q.N * q.K * OHW; ++i) y[i] += bias[bias_index(q, fohw, fow, i)];
    return;
  }
  if (Kc == 0 || (!dw && !dcode)) return;
  const int planes = q.N * q.K;
  Vf D(static_cast<size_t>(planes) * q.RS, std::numeric_limits<float>::quiet_NaN());
  const int warps = std::min(8, std::max(1, q.row.out));
  for (int plane = 0; plane < planes; ++plane) {
    const float* src = dy + static_cast<int64_t>(plane) * OHW;
    std::vector<double> part(static_cast<size_t>(warps) * ncs, 0.0), E(static_cast<size_t>(ncr) * ncs, NAN);
    for (int warp = 0; warp < warps; ++warp)
      for (int h = warp; h < q.row.out; h += warps) {
        const float* rowp = src + static_cast<int64_t>(h) * q.col.out;
        double inner = 0;
        if (q.col.has_interior())
          for (int x = q.col.pad; x < q.col.out - q.col.pad; ++x) inner += rowp[x];
        const int cr = q.row.cls(h);
        const bool interior_row = q.row.has_interior() && cr == q.row.pad;
        for (int cs = 0; cs < ncs; ++cs) {
          const double v = col_class_value(q.col, rowp, cs, inner);
          if (interior_row) part[warp * ncs + cs] += v;
          else E[cr * ncs + cs] = v;
        }
      }
    if (q.row.has_interior())
      for (int cs = 0; cs < ncs; ++cs) {
        double s = 0;
        for (int wp = 0; wp < warps; ++wp) s += part[wp * ncs + cs];
        E[q.row.pad * ncs + cs] = s;
      }
    for (int t = 0; t < q.RS; ++t) D[static_cast<size_t>(plane) * q.RS + t] = static_cast<float>(tap_sum(q, E.data(), t));
  }
  if (dw)
    for (int i = 0; i < q.K * q.Kc * q.RS; ++i) {
      int64_t off;
      const double v = dw_at(q, code, D.data(), i, off);
      dw[off] = static_cast<float>(v);
    }
  if (dcode)
    for (int e = 0; e < q.N * q.Kc; ++e) {
      double acc = 0;
      for (int u = 0; u < q.K * q.RS; ++u) acc += dcode_term(q, w, D.data(), e / q.Kc, e % q.Kc, u);
      dcode[e] = static_cast<float>(acc);
    }
}

// The code-channel results of op(backend or emulation) for one case, with the magnitude scales
// (the same op over absolute values) that bound the CPU's float rounding.
struct CodeChRun {
  Vf y, dw, dcode, dw_only, dcode_only;
};

using CodeChOp = std::function<void(bool, const Conv2dParams&, int64_t, const float*, const float*, const float*,
                                    float*, float*, float*)>;

constexpr float kDwSentinel = 7.0f;  // dw's x part must come back as it went in

CodeChRun run_codech_host(const CodeChOp& op, const CodeChCase& c, const Vf& code, const Vf& w, const Vf& dy,
                          const Vf& y0) {
  const Conv2dParams p = codech_params(c);
  CodeChRun r{y0, Vf(w.size(), kDwSentinel), nan_vec(code.size()), Vf(w.size(), kDwSentinel), nan_vec(code.size())};
  op(false, p, c.Kc, code.data(), w.data(), nullptr, r.y.data(), nullptr, nullptr);
  op(true, p, c.Kc, code.data(), w.data(), dy.data(), nullptr, r.dw.data(), r.dcode.data());
  op(true, p, c.Kc, code.data(), w.data(), dy.data(), nullptr, r.dw_only.data(), nullptr);
  op(true, p, c.Kc, code.data(), w.data(), dy.data(), nullptr, nullptr, r.dcode_only.data());
  return r;
}

Vf absval(Vf v) {
  for (float& x : v) x = std::fabs(x);
  return v;
}

struct CodeChData {
  Vf code, w, dy, y0;
  Vf sy, sdw, sdcode;  // scales: the CPU op over |inputs| (|y0| for y, 0 in dw's x part)
};

CodeChData codech_data(const CodeChCase& c, uint64_t seed) {
  const Conv2dParams p = codech_params(c);
  CodeChData d;
  d.code = random_vec(c.N * c.Kc, seed), d.w = random_vec(c.K * p.C * c.R * c.R, seed + 1);
  d.dy = random_vec(c.N * c.K * c.H * c.W, seed + 2), d.y0 = random_vec(c.N * c.K * c.H * c.W, seed + 3);
  const Vf ac = absval(d.code), aw = absval(d.w), ady = absval(d.dy);
  d.sy = absval(d.y0), d.sdw = Vf(d.w.size(), 0.0f), d.sdcode = Vf(d.code.size(), 0.0f);
  const Backend& cpu = cpu_backend();
  cpu.conv2d_code_channels(false, p, c.Kc, ac.data(), aw.data(), nullptr, d.sy.data(), nullptr, nullptr);
  cpu.conv2d_code_channels(true, p, c.Kc, ac.data(), aw.data(), ady.data(), nullptr, d.sdw.data(), d.sdcode.data());
  return d;
}

// got against the CPU's results: y to (Kc + 2)-term rounding, dw to N-term, dcode to K*R*S-term
// (the CPU multiplies in float; these kernels in double), dw's x part exactly the sentinel
void expect_codech(const CodeChRun& got, const CodeChRun& want, const CodeChData& d, const CodeChCase& c,
                   const std::string& what) {
  expect_product(got.y, want.y, d.sy, c.Kc + 2, false, what + " forward (y += code part)");
  expect_product(got.dw, want.dw, d.sdw, c.N + 2, false, what + " dw (code part; x part untouched)");
  expect_product(got.dcode, want.dcode, d.sdcode, c.K * c.R * c.R + 2, false, what + " dcode");
  expect_product(got.dw_only, want.dw, d.sdw, c.N + 2, false, what + " dw without dcode");
  expect_product(got.dcode_only, want.dcode, d.sdcode, c.K * c.R * c.R + 2, false, what + " dcode without dw");
}

C3_TEST(cuda_host_code_channels_emulated_kernels) {
  uint64_t seed = 45000;
  for (const CodeChCase& c : kCodeChCases) {
    const CodeChData d = codech_data(c, seed += 4);
    const CodeChRun want = run_codech_host(cpu::conv2d_code_channels, c, d.code, d.w, d.dy, d.y0);
    const CodeChRun got = run_codech_host(emulate_code_channels, c, d.code, d.w, d.dy, d.y0);
    expect_codech(got, want, d, c, "emulated " + codech_name(c));
  }
}

// ---------------------------------------------------------------- CUDA against the CPU backend

// C3GAN_CUDA_VS_CPU_SELFTEST=1 runs these cases with the CPU backend standing in for CUDA: a
// check of the comparison code itself on machines without a GPU.
bool selftest() {
  const char* v = std::getenv("C3GAN_CUDA_VS_CPU_SELFTEST");
  return v && *v && std::strcmp(v, "0") != 0;
}

// The CUDA table, or null (with a printed note) when this build or machine has no usable device.
const Backend* gpu_or_skip(const char* what) {
  if (selftest()) return &cpu_backend();
  const Backend* g = cuda_backend();
  if (!g || !cuda_available()) {
    std::printf("     note: %s skipped, cuda %s\n", what, cuda_status());
    return nullptr;
  }
  return g;
}

using Outputs = std::vector<Vf>;

// f(backend) runs the op on that backend and returns its outputs read back to the host
template <class F>
void on_both(const Backend& gpu, F f, Outputs& cpu_out, Outputs& gpu_out) {
  cpu_out = f(cpu_backend());
  gpu_out = f(gpu);
}

// bitwise equality (NaNs must match bit for bit too)
void expect_same(const Vf& got, const Vf& want, const std::string& what) {
  if (got.size() != want.size()) throw Failure(what + ": size " + std::to_string(got.size()) + " != " + std::to_string(want.size()));
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      char b[200];
      std::snprintf(b, sizeof b, ": element %zu is %.9g on cuda, %.9g on cpu (bitwise comparison)", i, got[i], want[i]);
      throw Failure(what + b);
    }
}

#ifdef C3GAN_HAVE_CUDA
// |got - want| <= rel * max |want| everywhere (the same products summed in another order)
void expect_agree(const Vf& got, const Vf& want, double rel, const std::string& what) {
  if (got.size() != want.size()) throw Failure(what + ": size mismatch");
  double top = 0;
  for (float w : want) top = std::max(top, std::fabs(static_cast<double>(w)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(d <= rel * top)) {
      char b[200];
      std::snprintf(b, sizeof b, ": element %zu is %.9g, %.9g expected (allowed %.3g)", i, got[i], want[i], rel * top);
      throw Failure(what + b);
    }
  }
}

Vf absv(Vf v) {
  for (float& x : v) x = std::fabs(x);
  return v;
}

// |got - want| <= tol[i] everywhere, and got finite where want is
void expect_within(const Vf& got, const Vf& want, const Vd& tol, const std::string& what) {
  if (got.size() != want.size()) throw Failure(what + ": size mismatch");
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double excess = std::fabs(static_cast<double>(got[i]) - want[i]) / tol[i];
    if (!(excess == excess) || (!std::isfinite(got[i]) && std::isfinite(want[i]))) excess = INFINITY;
    if (excess > worst) worst = excess, wi = i;
  }
  if (worst > 1.0) {
    char b[240];
    std::snprintf(b, sizeof b, ": element %zu is %.9g on cuda, %.9g on cpu, allowed error %.3g (%.3g times over)", wi,
                  got[wi], want[wi], tol[wi], worst);
    throw Failure(what + b);
  }
}

// Restores a CUDA knob (tile pipeline, conv engine) to the value it had, at the end of a scope.
template <class T>
struct Restore {
  T saved;
  void (*set)(T);
  ~Restore() { set(saved); }
};

// Sets the CUDA math mode for a scope and restores the previous one.
struct MathScope {
  CudaMath saved;
  explicit MathScope(CudaMath m) : saved(cuda_math()) { cuda_set_math(m); }
  ~MathScope() { cuda_set_math(saved); }
};
const CudaMath kModes[] = {CudaMath::TF32, CudaMath::FP32};
const char* mode_name(CudaMath m) { return m == CudaMath::TF32 ? "tf32" : "fp32"; }
// Error bound of a K-term product against the CPU's fp32 result, given scale = sum |a||b|:
// TF32 rounds each operand to 11 significant bits (relative 2^-11, so 2^-10 per product);
// both sides accumulate in fp32 (K * 2^-24 each).
Vd product_tolerance(const Vf& scale, int64_t K, CudaMath m) {
  // (tensor-core accumulation may truncate: three units of 2^-24 per term in TF32 mode)
  const double rel = m == CudaMath::TF32 ? 1.0e-3 + 3.0 * (K + 2) * 6.0e-8 : 2.0 * (K + 2) * 6.0e-8;
  Vd t(scale.size());
  for (size_t i = 0; i < scale.size(); ++i) t[i] = rel * scale[i] + 1e-30;
  return t;
}
#endif

// f(" tf32") and f(" fp32") under each CUDA math mode; f("") once in a build without CUDA (the
// selftest's CPU stand-in)
template <class F>
void for_each_math(F f) {
#ifdef C3GAN_HAVE_CUDA
  for (CudaMath m : kModes) {
    MathScope scope(m);
    f(std::string(" ") + mode_name(m));
  }
#else
  f(std::string());
#endif
}

// f(backend) returns {a fused entry's output, the separate ops' output}: the same bits on each
// backend, in each math mode
template <class F>
void expect_fusion_bitwise(const Backend& gpu, const std::string& what, const char* apart, F f) {
  for_each_math([&](const std::string& mode) {
    Outputs c, d;
    on_both(gpu, f, c, d);
    expect_same(c[0], c[1], what + mode + " is " + apart + " on the cpu");
    expect_same(d[0], d[1], what + mode + " is " + apart + " on cuda");
  });
}

C3_TEST(cuda_vs_cpu_memory_and_streaming_ops) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_memory_and_streaming_ops");
  if (!g) return;
  // sizes around the 4 MiB staging chunks (1M floats) and a ragged tail
  for (size_t n : {size_t(1), size_t(1000), size_t(1) << 20, (size_t(1) << 20) + 1, size_t(3300001)}) {
    Vf x = random_vec(n, 50000 + n), y = random_vec(n, 50001 + n);
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      Buf bx(be, x), by(be, y), bz(be, nan_vec(n)), bw(be, nan_vec(n)), bf(be, nan_vec(n));
      be.axpy(n, -0.375f, bx.p(), by.p());
      be.affine(n, bx.p(), 1.75f, -0.5f, bz.p());
      be.copy(bw.p(), bz.p(), n);
      be.fill(bf.p(), n, n % 2 ? -0.0f : 2.5f);
      Vf back(n);
      be.download(back.data(), bx.p(), n);  // download alone (no synchronize first) must wait
      Outputs o = {by.host(), bz.host(), bw.host(), bf.host(), back};
      be.fill(bf.p(), n, 0.0f);
      o.push_back(bf.host());
      return o;
    }, c, d);
    const std::string what = "memory ops n=" + std::to_string(n);
    const char* names[] = {" axpy", " affine", " copy", " fill", " upload/download round trip", " fill 0"};
    for (size_t k = 0; k < c.size(); ++k) expect_same(d[k], c[k], what + names[k]);
    expect_same(d[4], x, what + " round trip equals the host data");
  }
}

// sum_into (a backward pass's leaf gradients in one launch) gives the bits of the axpy chain it
// replaces, on each backend; entries of 0 elements or 0 sources are skipped
C3_TEST(cuda_vs_cpu_sum_into_is_the_axpy_chain) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_sum_into_is_the_axpy_chain");
  if (!g) return;
  const size_t sizes[] = {300001, 1, 0, 4097, 513};
  const size_t counts[] = {3, 1, 2, 0, 5};
  Outputs c, d;
  on_both(*g, [&](const Backend& be) {
    std::vector<std::unique_ptr<Buf>> dsts, chain, srcs;
    std::vector<std::vector<const float*>> lists(5);
    std::vector<SumInto> ts;
    for (size_t k = 0; k < 5; ++k) {
      const Vf start = random_vec(sizes[k], 52000 + k);
      dsts.push_back(std::make_unique<Buf>(be, start));
      chain.push_back(std::make_unique<Buf>(be, start));
      for (size_t j = 0; j < counts[k]; ++j) {
        Vf s = random_vec(sizes[k], 52100 + 10 * k + j);
        for (size_t i = 0; i < s.size(); i += 7) s[i] *= 1e4f;  // sums that round
        srcs.push_back(std::make_unique<Buf>(be, s));
        lists[k].push_back(srcs.back()->p());
        be.axpy(sizes[k], 1.0f, srcs.back()->p(), chain.back()->p());
      }
      ts.push_back({dsts.back()->p(), lists[k].data(), counts[k], sizes[k]});
    }
    be.sum_into(ts.data(), ts.size());
    Outputs o;
    for (size_t k = 0; k < 5; ++k) o.push_back(dsts[k]->host()), o.push_back(chain[k]->host());
    return o;
  }, c, d);
  for (size_t k = 0; k < 5; ++k) {
    const std::string what = "sum_into entry " + std::to_string(k);
    expect_same(c[2 * k], c[2 * k + 1], what + " is the axpy chain on the cpu");
    expect_same(d[2 * k], d[2 * k + 1], what + " is the axpy chain on cuda");
    expect_same(d[2 * k], c[2 * k], what);
  }
}

C3_TEST(cuda_vs_cpu_uploads_through_the_small_slots_and_the_big_buffers) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_uploads_through_the_small_slots_and_the_big_buffers");
  if (!g) return;
  // more small uploads than the ring has slots (each slot reused while earlier copies may still be
  // queued), interleaved with big ones, each from a host buffer overwritten right after the call
  const size_t small[] = {1, 64, 16384, 16385, 777};  // 16384 floats fill a 64 KiB slot; 16385 do not fit
  const size_t big = (size_t(1) << 20) + 3;
  Outputs c, d;
  on_both(*g, [&](const Backend& be) {
    std::vector<std::unique_ptr<Buf>> bufs;
    Vf host;
    for (int k = 0; k < 80; ++k) {
      const size_t n = k % 9 == 8 ? big : small[k % 5];
      bufs.push_back(std::make_unique<Buf>(be, n));
      host = random_vec(n, 51000 + k);
      be.upload(bufs.back()->p(), host.data(), n);
      std::fill(host.begin(), host.end(), -1.0f);  // the upload took its own copy
    }
    Outputs o;
    for (auto& b : bufs) o.push_back(b->host());
    return o;
  }, c, d);
  for (size_t k = 0; k < c.size(); ++k) {
    expect_same(d[k], c[k], "upload " + std::to_string(k));
    expect_same(d[k], random_vec(d[k].size(), 51000 + k), "upload " + std::to_string(k) + " equals its host data");
  }
}

C3_TEST(cuda_vs_cpu_memory_alloc_cache_and_oom) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_memory_alloc_cache_and_oom");
  if (!g) return;
  if (selftest()) return;  // allocator statistics and messages are CUDA's own
#ifdef C3GAN_HAVE_CUDA
  const CudaMemoryStats s0 = cuda_memory_stats();
  void* p = g->alloc(12345 * 4);
  g->free(p);
  void* q = g->alloc(12345 * 4);  // same size class: served from the cache
  g->free(q);
  const CudaMemoryStats s1 = cuda_memory_stats();
  expect_true(q == p, "a freed block is handed out again for the same size class");
  expect_true(s1.cache_hits >= s0.cache_hits + 1, "the second allocation is a cache hit");
  expect_true(s1.in_use_bytes == s0.in_use_bytes, "in_use_bytes returns to its value after free");
  expect_true(s1.cached_bytes >= 12345 * 4, "the freed block is counted as cached");
  expect_true(g->held_bytes() == s1.in_use_bytes + s1.cached_bytes, "held_bytes is in use plus cached");
  expect_true(reinterpret_cast<uintptr_t>(p) % 256 == 0, "device blocks are 256-byte aligned");
#endif
  bool oom = false;
  std::string msg;
  try {
    void* big = g->alloc(size_t(1) << 52);
    g->free(big);
  } catch (const OutOfMemory& e) {
    oom = true;
    msg = e.what();
  }
  expect_true(oom, "a 4 PiB allocation throws c3::OutOfMemory");
  expect_true(msg.find("cuda alloc") != std::string::npos && msg.find(std::to_string(size_t(1) << 52)) != std::string::npos,
              "the out-of-memory message names cuda alloc and the bytes: " + msg);
  // a request the driver itself refuses (more than the device holds) goes through the retry path
  oom = false;
  try {
    void* big = g->alloc(size_t(1) << 46);  // 64 TiB
    g->free(big);
  } catch (const OutOfMemory& e) {
    oom = true;
    msg = e.what();
  }
  expect_true(oom && msg.find("after releasing the cache") != std::string::npos,
              "cudaMalloc failure is retried after releasing the cache, then reported: " + msg);
  // the device still works afterwards
  Vf x = random_vec(1000, 51000);
  Buf bx(*g, x);
  expect_same(bx.host(), x, "device usable after out-of-memory errors");
}

C3_TEST(cuda_vs_cpu_random_streams_identical) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_random_streams_identical");
  if (!g) return;
  const size_t n = 1000003;
  for (uint64_t key : {uint64_t(7), uint64_t(0x1234abcd5678ull), ~uint64_t(0)})
    for (uint64_t off : {uint64_t(0), uint64_t(977), (uint64_t(1) << 32) - 5}) {
      Outputs c, d;
      on_both(*g, [&](const Backend& be) {
        Buf a(be, nan_vec(n)), b(be, nan_vec(n));
        be.rand_normal(a.p(), n, key, off, 0.5f, 2.0f);
        be.rand_uniform(b.p(), n, key, off, -1.0f, 3.0f);
        return Outputs{a.host(), b.host()};
      }, c, d);
      const std::string what = "key " + std::to_string(key) + " offset " + std::to_string(off);
      expect_same(d[0], c[0], "rand_normal " + what);
      expect_same(d[1], c[1], "rand_uniform " + what);
    }
}

#ifdef C3GAN_HAVE_CUDA
void gemm_case(const Backend& g, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
               uint64_t seed) {
  Vf A = random_vec(M * K, seed), B = random_vec(K * N, seed + 1), C = random_vec(M * N, seed + 2);
  if (beta == 0.0f) C = nan_vec(M * N);  // beta 0 ignores C
  Vf want = C, scale = beta == 0.0f ? Vf(M * N, 0.0f) : absv(C);
  {
    const Backend& cpu = cpu_backend();
    cpu.gemm(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, want.data());
    const Vf aA = absv(A), aB = absv(B);
    cpu.gemm(ta, tb, M, N, K, std::fabs(alpha), aA.data(), aB.data(), std::fabs(beta), scale.data());
  }
  for (CudaMath m : kModes) {
    MathScope ms(m);
    Buf ba(g, A), bb(g, B), bc(g, C);
    g.gemm(ta, tb, M, N, K, alpha, ba.p(), bb.p(), beta, bc.p());
    char what[160];
    std::snprintf(what, sizeof what, "gemm %s ta=%d tb=%d %lldx%lldx%lld alpha=%g beta=%g", mode_name(m), ta, tb,
                  (long long)M, (long long)N, (long long)K, alpha, beta);
    expect_within(bc.host(), want, product_tolerance(scale, K, m), what);
  }
}
#endif

C3_TEST(cuda_vs_cpu_gemm_shapes_transposes_and_modes) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_gemm_shapes_transposes_and_modes");
  if (!g) return;
#ifdef C3GAN_HAVE_CUDA
  // ragged edges of both tile shapes, M <= 32 (narrow tiles), N <= 32 (computed transposed),
  // K = 0 / alpha = 0, and small grids with long K (split K)
  const int64_t shapes[][3] = {{1, 1, 1},     {7, 5, 3},     {33, 1, 17},   {1, 33, 7},    {13, 31, 257},
                               {31, 300, 70}, {300, 31, 70}, {97, 130, 70}, {129, 257, 33}, {200, 520, 147},
                               {64, 64, 5000}, {40, 300, 4100}, {256, 256, 256}};
  uint64_t seed = 60000;
  for (auto& s : shapes)
    for (int t = 0; t < 4; ++t) {
      gemm_case(*g, t & 1, t & 2, s[0], s[1], s[2], 1.0f, 0.0f, seed += 3);
      gemm_case(*g, t & 1, t & 2, s[0], s[1], s[2], -0.5f, 1.5f, seed += 3);
    }
  // K = 0 and alpha = 0 leave beta * C; beta = 0 writes zeros over NaN
  for (float beta : {0.0f, 1.0f, -2.0f}) {
    Vf C = beta == 0.0f ? nan_vec(12) : random_vec(12, 61000);
    Vf A = random_vec(12, 61001), B = random_vec(12, 61002);
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      Buf ba(be, A), bb(be, B), bc(be, C), bd(be, C);
      be.gemm(false, false, 3, 4, 0, 1.0f, ba.p(), bb.p(), beta, bc.p());
      be.gemm(false, false, 3, 4, 3, 0.0f, ba.p(), bb.p(), beta, bd.p());
      return Outputs{bc.host(), bd.host()};
    }, c, d);
    expect_same(d[0], c[0], "gemm K=0 beta=" + std::to_string(beta));
    expect_same(d[1], c[1], "gemm alpha=0 beta=" + std::to_string(beta));
  }
  // split K sums in a fixed order: two runs give the same bits
  Vf A = random_vec(64 * 20000, 62000), B = random_vec(20000 * 48, 62001);
  Buf ba(*g, A), bb(*g, B), c1(*g, 64 * 48), c2(*g, 64 * 48);
  g->gemm(false, false, 64, 48, 20000, 1.0f, ba.p(), bb.p(), 0.0f, c1.p());
  g->gemm(false, false, 64, 48, 20000, 1.0f, ba.p(), bb.p(), 0.0f, c2.p());
  expect_same(c2.host(), c1.host(), "gemm with split K is deterministic");
#endif
}

// The tile GEMM's operand pipelines (cuda.h CudaTile: register-staged, cp.async stages) give the
// same bits: the same TF32 rounding of each operand, the same products in the same order; wgmma
// (where built) the same bits on the emulator, the same values to rounding on a GPU.
// gemm in the four transposes with split K, every conv pass with the moments epilogue, the
// up-conv; both math modes.
C3_TEST(cuda_vs_cpu_tile_pipelines_agree_bitwise) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_tile_pipelines_agree_bitwise");
  if (!g) return;
#ifdef C3GAN_HAVE_CUDA
  if (selftest()) return;  // a CUDA knob: nothing to compare on the CPU
  const Restore<CudaTile> tile_scope{cuda_tile(), cuda_set_tile};
  const Conv2dParams convs[] = {{3, 20, 11, 13, 40, 3, 3, 11, 13, 1, 1}, {2, 16, 12, 12, 24, 4, 4, 6, 6, 2, 1},
                                {2, 64, 4, 4, 48, 3, 3, 4, 4, 1, 1}};
  const Conv2dParams up{3, 24, 6, 5, 20, 3, 3, 6, 5, 1, 1};
  std::vector<bool> is_moments;  // per output of run: a conv's moments
  const auto run = [&](CudaTile t) {
    cuda_set_tile(t);
    Outputs o;
    is_moments.clear();
    uint64_t seed = 63000;
    for (int tr = 0; tr < 4; ++tr)
      for (auto& s : {std::array<int64_t, 3>{97, 130, 70}, std::array<int64_t, 3>{40, 300, 1100}}) {
        Vf A = random_vec(s[0] * s[2], ++seed), B = random_vec(s[2] * s[1], ++seed);
        Buf ba(*g, A), bb(*g, B), bc(*g, nan_vec(s[0] * s[1]));
        g->gemm(tr & 1, tr & 2, s[0], s[1], s[2], 1.0f, ba.p(), bb.p(), 0.0f, bc.p());
        o.push_back(bc.host());
        is_moments.push_back(false);
      }
    for (const Conv2dParams& p : convs) {
      const size_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * p.R * p.S, ny = p.N * p.K * p.OH * p.OW;
      Buf bx(*g, random_vec(nx, ++seed)), bw(*g, random_vec(nw, ++seed)), bdy(*g, random_vec(ny, ++seed));
      Buf by(*g, nan_vec(ny)), bm(*g, nan_vec(2 * p.K)), bdx(*g, nan_vec(nx)), bdw(*g, nan_vec(nw));
      g->conv2d_forward(p, bx.p(), bw.p(), nullptr, by.p(), bm.p());
      g->conv2d_backward_data(p, bdy.p(), bw.p(), bdx.p());
      g->conv2d_backward_weight(p, bdy.p(), bx.p(), bdw.p());
      for (Buf* b : {&by, &bm, &bdx, &bdw}) o.push_back(b->host()), is_moments.push_back(b == &bm);
    }
    const size_t nx = up.N * up.C * up.H * up.W, nw = up.K * up.C * 9, ny = up.N * up.K * 4 * up.H * up.W;
    Buf bx(*g, random_vec(nx, ++seed)), bw(*g, random_vec(nw, ++seed)), bdy(*g, random_vec(ny, ++seed));
    Buf by(*g, nan_vec(ny)), bm(*g, nan_vec(2 * up.K)), bdx(*g, nan_vec(nx)), bdw(*g, nan_vec(nw));
    g->conv2d_up_forward(up, bx.p(), bw.p(), nullptr, by.p(), bm.p());
    g->conv2d_up_backward_data(up, bdy.p(), bw.p(), bdx.p());
    g->conv2d_up_backward_weight(up, bdy.p(), bx.p(), bdw.p());
    for (Buf* b : {&by, &bm, &bdx, &bdw}) o.push_back(b->host()), is_moments.push_back(b == &bm);
    return o;
  };
  for (CudaMath m : kModes) {
    MathScope ms(m);
    const Outputs regs = run(CudaTile::Registers), async = run(CudaTile::Async);
    for (size_t i = 0; i < regs.size(); ++i)
      expect_same(async[i], regs[i], std::string(mode_name(m)) + " output " + std::to_string(i) +
                                         " (cp.async pipeline against the register-staged one)");
    // wgmma: the same operand values (rounded to TF32 before the store to shared memory) and the
    // same sums of 8 products in the emulator; the hardware's tensor cores may add each k step's
    // products in another order than mma.sync's, so on a GPU the outputs agree to rounding.
    Outputs wg;
    try {
      wg = run(CudaTile::Wgmma);
    } catch (const c3::Error& e) {
      const std::string msg = e.what();
      if (msg.find("sm_90a") == std::string::npos) throw;
      std::printf("  (wgmma: not on this device or build: %s)\n", msg.c_str());
      continue;
    }
    for (size_t i = 0; i < regs.size(); ++i) {
      const std::string what = std::string(mode_name(m)) + " output " + std::to_string(i) +
                               " (wgmma pipeline against the register-staged one)";
      // the moments' partial sums follow the warps' rows, which differ between the tile shapes
      const bool moments = is_moments[i];
#ifdef C3GAN_CUDA_EMULATION
      if (!moments) expect_same(wg[i], regs[i], what);
      else expect_agree(wg[i], regs[i], 1e-5, what);
#else
      expect_agree(wg[i], regs[i], moments ? 1e-5 : 1e-4, what);
#endif
    }
  }
#endif
}

#ifdef C3GAN_HAVE_CUDA
void conv_case(const Backend& g, const ConvCase& cc, bool bias, uint64_t seed) {
  const Conv2dParams p = conv_params(cc);
  const Backend& cpu = cpu_backend();
  const size_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * p.R * p.S, ny = p.N * p.K * p.OH * p.OW;
  Vf x = random_vec(nx, seed), w = random_vec(nw, seed + 1), b = random_vec(p.K, seed + 2), dy = random_vec(ny, seed + 3);
  // CPU results and the magnitude scales |x| * |w| etc. that bound the rounding
  Vf y(ny), dx(nx), dw(nw), sy(ny), sdx(nx), sdw(nw);
  const Vf ax = absv(x), aw = absv(w), ab = absv(b), ady = absv(dy);
  cpu.conv2d_forward(p, x.data(), w.data(), bias ? b.data() : nullptr, y.data(), nullptr);
  cpu.conv2d_backward_data(p, dy.data(), w.data(), dx.data());
  cpu.conv2d_backward_weight(p, dy.data(), x.data(), dw.data());
  cpu.conv2d_forward(p, ax.data(), aw.data(), bias ? ab.data() : nullptr, sy.data(), nullptr);
  cpu.conv2d_backward_data(p, ady.data(), aw.data(), sdx.data());
  cpu.conv2d_backward_weight(p, ady.data(), ax.data(), sdw.data());
  for (CudaMath m : kModes) {
    MathScope ms(m);
    Buf bx(g, x), bw(g, w), bb(g, b), bdy(g, dy), by(g, nan_vec(ny)), bdx(g, nan_vec(nx)), bdw(g, nan_vec(nw));
    g.conv2d_forward(p, bx.p(), bw.p(), bias ? bb.p() : nullptr, by.p(), nullptr);
    g.conv2d_backward_data(p, bdy.p(), bw.p(), bdx.p());
    g.conv2d_backward_weight(p, bdy.p(), bx.p(), bdw.p());
    const std::string what = std::string(mode_name(m)) + " " + conv_name(p) + (bias ? " bias" : "");
    expect_within(by.host(), y, product_tolerance(sy, p.C * p.R * p.S, m), what + " forward");
    expect_within(bdx.host(), dx, product_tolerance(sdx, p.K * p.R * p.S, m), what + " backward_data");
    expect_within(bdw.host(), dw, product_tolerance(sdw, p.N * p.OH * p.OW, m), what + " backward_weight");
  }
}
#endif

C3_TEST(cuda_vs_cpu_conv2d_all_passes_and_modes) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_conv2d_all_passes_and_modes");
  if (!g) return;
#ifdef C3GAN_HAVE_CUDA
  uint64_t seed = 70000;
  for (const ConvCase& cc : kHostConvCases) conv_case(*g, cc, true, seed += 5);
  // the model's shapes at small batch: G's 3x3 convs, D's 4x4 s2 downsampling and its heads,
  // few output channels (narrow tiles) and many (wide tiles, split K in backward weight)
  const ConvCase model[] = {{4, 32, 16, 16, 64, 3, 3, 1, 1}, {4, 16, 32, 32, 3, 3, 3, 1, 1},
                            {4, 3, 32, 32, 64, 4, 4, 2, 1},  {4, 64, 16, 16, 128, 4, 4, 2, 1},
                            {8, 128, 4, 4, 1, 4, 4, 4, 0},   {8, 128, 4, 4, 96, 3, 3, 1, 1},
                            {2, 40, 12, 12, 130, 3, 3, 1, 1}, {3, 8, 20, 18, 16, 1, 1, 1, 0},
                            // kernels covering the whole input (backward data as one product), and
                            // one a row short of it (the stride phases)
                            {8, 64, 4, 4, 48, 4, 4, 4, 0},   {5, 6, 3, 5, 40, 3, 5, 1, 0},
                            {4, 24, 5, 4, 8, 4, 4, 4, 0}};
  for (const ConvCase& cc : model) conv_case(*g, cc, cc.K % 2 == 0, seed += 5);
  // backward weight splits N*OH*OW over blocks; the fixed-order sum is deterministic
  const Conv2dParams p = conv_params({16, 32, 32, 32, 32, 3, 3, 1, 1});
  Vf x = random_vec(p.N * p.C * p.H * p.W, 71000), dy = random_vec(p.N * p.K * p.OH * p.OW, 71001);
  Buf bx(*g, x), bdy(*g, dy), w1(*g, p.K * p.C * 9), w2(*g, p.K * p.C * 9);
  g->conv2d_backward_weight(p, bdy.p(), bx.p(), w1.p());
  g->conv2d_backward_weight(p, bdy.p(), bx.p(), w2.p());
  expect_same(w2.host(), w1.host(), "conv2d backward weight is deterministic");
#endif
}

// The convolution engine knob (cuda.h CudaConv): where cuDNN cannot be loaded, choosing it is an
// error that names why and leaves the tile kernels in charge; where it can (a GPU's libcudnn, or
// the emulator's stand-in: C3GAN_CUDNN), every pass through it agrees with the tile kernels and
// with the CPU, repeats bit for bit (deterministic algorithms only), and an accumulating backward
// data gives the bits of backward data then axpy. With C3GAN_CUDA_CONV=cudnn the conv cases above
// run through it as well.
C3_TEST(cuda_vs_cpu_conv2d_cudnn_engine) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_conv2d_cudnn_engine");
  if (!g) return;
#ifdef C3GAN_HAVE_CUDA
  if (selftest()) return;  // a CUDA knob: nothing to compare on the CPU
  const Restore<CudaConv> conv_scope{cuda_conv(), cuda_set_conv};
  const std::string status = cudnn_status();
  if (status.rfind("unavailable (", 0) == 0) {
    try {
      cuda_set_conv(CudaConv::Cudnn);
    } catch (const c3::Error& e) {
      const std::string msg = e.what();
      if (msg.find("need cuDNN, which is unavailable (") == std::string::npos)
        throw Failure("choosing cuDNN where it is " + status + " failed without saying why: " + msg);
      if (cuda_conv() != CudaConv::Native) throw Failure("a refused cuDNN choice changed the engine");
      // auto without cuDNN: the tile kernels, nothing timed
      cuda_set_conv(CudaConv::Auto);
      const Conv2dParams p = conv_params({2, 3, 5, 5, 4, 3, 3, 1, 1});
      Buf bx(*g, random_vec(2 * 3 * 25, 74600)), bw(*g, random_vec(4 * 3 * 9, 74601)), by(*g, 2 * 4 * 25);
      g->conv2d_forward(p, bx.p(), bw.p(), nullptr, by.p(), nullptr);
      if (!cuda_conv_choices().empty()) throw Failure("auto timed cuDNN, which is " + status);
      std::printf("     note: cudnn %s\n", status.c_str());
      return;
    }
    throw Failure("choosing cuDNN succeeded although cudnn_status() says " + status);
  }
  std::printf("     cudnn %s\n", status.c_str());
  if (status.find("libc3gan_cudnn_mock") != std::string::npos) {
    // the stand-in offering nothing usable: the error lists what was offered, and a later call
    // with a usable offer makes the plan (a failed plan is not kept)
    const Conv2dParams p = conv_params({2, 3, 5, 5, 4, 3, 3, 1, 1});
    Buf bx(*g, random_vec(2 * 3 * 25, 74500)), bw(*g, random_vec(4 * 3 * 9, 74501)), by(*g, 2 * 4 * 25);
    cuda_set_conv(CudaConv::Cudnn);
    setenv("C3GAN_CUDNN_MOCK_OFFER", "unusable", 1);
    std::string msg;
    try {
      g->conv2d_forward(p, bx.p(), bw.p(), nullptr, by.p(), nullptr);
    } catch (const c3::Error& e) {
      msg = e.what();
    }
    unsetenv("C3GAN_CUDNN_MOCK_OFFER");
    for (const char* part : {"cuda conv2d_forward (cudnn): cudnnGetConvolutionForwardAlgorithm_v7 offered no deterministic",
                             "x 2x3x5x5, w 4x3x3x3", "algo 0 nondeterministic, 0 bytes",
                             "algo 2 CUDNN_STATUS_NOT_SUPPORTED (3000)"})
      if (msg.find(part) == std::string::npos)
        throw Failure("no usable cuDNN algorithm: expected an error with '" + std::string(part) + "', got '" + msg + "'");
    g->conv2d_forward(p, bx.p(), bw.p(), nullptr, by.p(), nullptr);
    // auto, where cuDNN offers nothing usable for a shape: the tile kernels, and the choice says why
    cuda_set_conv(CudaConv::Auto);
    setenv("C3GAN_CUDNN_MOCK_OFFER", "unusable", 1);
    const Conv2dParams q = conv_params({2, 3, 6, 5, 4, 3, 3, 1, 1});
    Buf qx(*g, random_vec(2 * 3 * 30, 74502)), qy(*g, 2 * 4 * 30);
    try {
      g->conv2d_forward(q, qx.p(), bw.p(), nullptr, qy.p(), nullptr);
    } catch (...) {
      unsetenv("C3GAN_CUDNN_MOCK_OFFER");
      throw;
    }
    unsetenv("C3GAN_CUDNN_MOCK_OFFER");
    const std::vector<CudaConvChoice> cs = cuda_conv_choices();
    if (cs.empty() || cs.back().cudnn || cs.back().cudnn_ms >= 0 || cs.back().conv.rfind("2x3x6x5 -> 4x3x3", 0) != 0 ||
        cs.back().note.find("offered no deterministic") == std::string::npos)
      throw Failure("auto with no usable cuDNN algorithm: expected the tile kernels and the reason, got " +
                    (cs.empty() ? std::string("no choice") : cs.back().conv + " " + cs.back().note));
  }
  const ConvCase cases[] = {{4, 16, 16, 16, 32, 3, 3, 1, 1}, {4, 8, 16, 16, 16, 4, 4, 2, 1},
                            {8, 64, 4, 4, 48, 4, 4, 4, 0},   {2, 3, 9, 7, 5, 3, 2, 2, 1}};
  uint64_t seed = 74000;
  for (const ConvCase& cc : cases) {
    const Conv2dParams p = conv_params(cc);
    const size_t nx = p.N * p.C * p.H * p.W, nw = p.K * p.C * p.R * p.S, ny = p.N * p.K * p.OH * p.OW;
    const Vf x = random_vec(nx, seed += 4), w = random_vec(nw, seed + 1), b = random_vec(p.K, seed + 2),
             dy = random_vec(ny, seed + 3), held = random_vec(nx, seed + 4);
    const std::string what = "cudnn " + conv_name(p);
    // the magnitudes |x| * |w| etc. that bound each output's rounding (as conv_case)
    const Backend& cpu = cpu_backend();
    const Vf ax = absv(x), aw = absv(w), ab = absv(b), ady = absv(dy);
    Vf sy(ny), sdx(nx), sdw(nw);
    cpu.conv2d_forward(p, ax.data(), aw.data(), ab.data(), sy.data(), nullptr);
    cpu.conv2d_backward_data(p, ady.data(), aw.data(), sdx.data());
    cpu.conv2d_backward_weight(p, ady.data(), ax.data(), sdw.data());
    for (CudaMath m : kModes) {
      MathScope ms(m);
      Outputs out[3];
      for (CudaConv engine : {CudaConv::Native, CudaConv::Cudnn, CudaConv::Auto}) {
        cuda_set_conv(engine);
        Buf bx(*g, x), bw(*g, w), bb(*g, b), bdy(*g, dy), by(*g, nan_vec(ny)), bm(*g, nan_vec(2 * p.K)),
            bdx(*g, nan_vec(nx)), bdw(*g, nan_vec(nw)), acc(*g, held);
        g->conv2d_forward(p, bx.p(), bw.p(), bb.p(), by.p(), bm.p());
        g->conv2d_backward_data(p, bdy.p(), bw.p(), bdx.p());
        g->conv2d_backward_weight(p, bdy.p(), bx.p(), bdw.p());
        g->conv2d_backward_data_accumulate(p, bdy.p(), bw.p(), acc.p());
        out[static_cast<int>(engine)] = Outputs{by.host(), bm.host(), bdx.host(), bdw.host(), acc.host()};
        if (engine != CudaConv::Cudnn) continue;
        if (cuda_conv() != CudaConv::Cudnn) throw Failure(what + ": the engine did not stay cuDNN");
        // again: the same bits (deterministic algorithms), and accumulate = backward data + axpy
        Buf dw2(*g, nan_vec(nw)), apart(*g, held);
        g->conv2d_backward_weight(p, bdy.p(), bx.p(), dw2.p());
        expect_same(dw2.host(), bdw.host(), what + " backward weight repeats bit for bit");
        g->axpy(nx, 1.0f, bdx.p(), apart.p());
        expect_same(acc.host(), apart.host(), what + " backward data accumulate = backward data then axpy");
      }
      const Outputs& nat = out[0];
      const Outputs& dnn = out[1];
      const char* names[] = {"forward", "moments", "backward data", "backward weight", "backward data accumulate"};
      // auto: each pass the bits of the engine it chose, the faster of the two it timed, once
      const char* passes[] = {"forward+moments", "forward+moments", "backward data", "backward weight",
                              "backward data (accumulate)"};
      const std::vector<CudaConvChoice> choices = cuda_conv_choices();
      char conv[160];
      std::snprintf(conv, sizeof conv, "%lldx%lldx%lldx%lld -> %lldx%lldx%lld s%lld p%lld, %s", (long long)p.N,
                    (long long)p.C, (long long)p.H, (long long)p.W, (long long)p.K, (long long)p.R, (long long)p.S,
                    (long long)p.stride, (long long)p.pad, mode_name(m));
      for (size_t i = 0; i < nat.size(); ++i) {
        int found = 0;
        for (const CudaConvChoice& c : choices) {
          if (c.pass != passes[i] || c.conv != conv) continue;
          ++found;
          if (c.cudnn != (c.cudnn_ms >= 0 && c.cudnn_ms < c.native_ms))
            throw Failure(what + " " + passes[i] + ": auto kept the slower engine");
          expect_same(out[2][i], out[c.cudnn ? 1 : 0][i], what + " " + mode_name(m) + " " + names[i] + " (auto, " +
                                                              (c.cudnn ? "cuDNN" : "tile kernels") + ")");
        }
        if (found != 1) throw Failure(what + " " + passes[i] + " " + conv + ": " + std::to_string(found) + " auto choices");
      }
      // each engine within a product's rounding of the exact value, so within twice it of each
      // other; a channel's moments within what y's errors (e) move them: the mean by e, the
      // variance by 2 (max |y - mean|) e + e^2, plus float rounding
      const Vd ty = product_tolerance(sy, p.C * p.R * p.S, m);
      Vd tm(2 * p.K);
      const int64_t hw = p.OH * p.OW;
      for (int64_t k = 0; k < p.K; ++k) {
        double e = 0.0, dev = 0.0;
        for (int64_t n = 0; n < p.N; ++n)
          for (int64_t i = 0; i < hw; ++i) {
            const int64_t at = (n * p.K + k) * hw + i;
            e = std::max(e, 2.0 * ty[at]);
            dev = std::max(dev, std::fabs(double(nat[0][at]) - nat[1][2 * k]));
          }
        tm[2 * k] = e + 1e-6 * (1.0 + std::fabs(nat[1][2 * k]));
        tm[2 * k + 1] = 2.0 * (dev + e) * e + 1e-5 * (1.0 + std::fabs(nat[1][2 * k + 1]));
      }
      const Vd tols[] = {ty, tm, product_tolerance(sdx, p.K * p.R * p.S, m), product_tolerance(sdw, p.N * p.OH * p.OW, m),
                         product_tolerance(sdx, p.K * p.R * p.S, m)};
      for (size_t i = 0; i < nat.size(); ++i) {
        Vd tol = tols[i];
        if (i != 1)
          for (size_t j = 0; j < tol.size(); ++j) tol[j] = 2.0 * tol[j] + (i == 4 ? 1e-6 * (1.0 + std::fabs(held[j])) : 0.0);
        expect_within(dnn[i], nat[i], tol, what + " " + mode_name(m) + " " + names[i] + " (cuDNN against the tile kernels)");
      }
    }
  }
#endif
}

// conv2d_backward_data_accumulate (the tile epilogue adding into the gradient held) gives the bits
// of backward data then axpy on each backend, in both math modes: one product (a kernel over the
// whole input), the four-phase launch, single phases, pixels no phase covers (stride over the
// kernel: left as held), split K (few pixels, many channels)
C3_TEST(cuda_vs_cpu_conv2d_backward_data_accumulate) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_conv2d_backward_data_accumulate");
  if (!g) return;
  const ConvCase cases[] = {{4, 16, 16, 16, 16, 3, 3, 1, 1}, {4, 8, 16, 16, 32, 4, 4, 2, 1},
                            {8, 64, 4, 4, 48, 4, 4, 4, 0},   {2, 3, 9, 7, 5, 3, 2, 2, 1},
                            {1, 4, 9, 7, 3, 1, 1, 2, 0},     {2, 64, 4, 4, 64, 3, 3, 1, 1}};
  uint64_t seed = 72000;
  for (const ConvCase& cc : cases) {
    const Conv2dParams p = conv_params(cc);
    const Vf w = random_vec(p.K * p.C * p.R * p.S, seed += 3), dy = random_vec(p.N * p.K * p.OH * p.OW, seed + 1),
             held = random_vec(p.N * p.C * p.H * p.W, seed + 2);
    const size_t n = held.size();
    const std::string what = "conv2d backward data accumulate N" + std::to_string(cc.N) + " C" + std::to_string(cc.C) +
                             " " + std::to_string(cc.H) + "x" + std::to_string(cc.W) + " K" + std::to_string(cc.K) +
                             " R" + std::to_string(cc.R) + " s" + std::to_string(cc.stride);
    expect_fusion_bitwise(*g, what, "backward data then axpy", [&](const Backend& be) {
      Buf bw(be, w), bdy(be, dy), fused(be, held), apart(be, held), dx(be, n);
      be.conv2d_backward_data_accumulate(p, bdy.p(), bw.p(), fused.p());
      be.conv2d_backward_data(p, bdy.p(), bw.p(), dx.p());
      be.axpy(n, 1.0f, dx.p(), apart.p());
      return Outputs{fused.host(), apart.host()};
    });
  }
}

// conv2d_forward_leaky (the LeakyReLU in the tile epilogue, and in the split-K reduction) gives
// the bits of the conv then LeakyReLU on each backend, in both math modes, with and without a
// bias; outputs of exactly 0 (an all-zero input image) stay 0
C3_TEST(cuda_vs_cpu_conv2d_forward_leaky) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_conv2d_forward_leaky");
  if (!g) return;
  const ConvCase cases[] = {{4, 3, 32, 32, 64, 4, 4, 2, 1}, {2, 64, 4, 4, 64, 3, 3, 1, 1},
                            {2, 3, 9, 7, 5, 3, 2, 2, 1}, {3, 8, 20, 18, 16, 1, 1, 1, 0}};
  uint64_t seed = 73000;
  for (const ConvCase& cc : cases)
    for (bool with_bias : {false, true}) {
      const Conv2dParams p = conv_params(cc);
      Vf x = random_vec(p.N * p.C * p.H * p.W, seed += 3);
      std::fill(x.begin(), x.begin() + p.C * p.H * p.W, 0.0f);  // image 0: the bias alone
      const Vf w = random_vec(p.K * p.C * p.R * p.S, seed + 1), bias = random_vec(p.K, seed + 2);
      const size_t n = p.N * p.K * p.OH * p.OW;
      const std::string what = "conv2d forward leaky N" + std::to_string(cc.N) + " C" + std::to_string(cc.C) + " K" +
                               std::to_string(cc.K) + (with_bias ? " bias" : "");
      expect_fusion_bitwise(*g, what, "the conv then LeakyReLU", [&](const Backend& be) {
        Buf bx(be, x), bw(be, w), bb(be, bias), fused(be, nan_vec(n)), apart(be, nan_vec(n));
        const float* b = with_bias ? bb.p() : nullptr;
        be.conv2d_forward_leaky(p, bx.p(), bw.p(), b, 0.2f, fused.p());
        be.conv2d_forward(p, bx.p(), bw.p(), b, apart.p(), nullptr);
        be.unary_forward(UnaryOp::LeakyRelu, n, apart.p(), 0.2f, apart.p());
        return Outputs{fused.host(), apart.host()};
      });
    }
}

// The constant-channel kernel (conv2d_code_channels) against the CPU's: forward onto a random y,
// backward with both outputs, with each alone, dw's x part left alone, and bitwise repeatable.
C3_TEST(cuda_vs_cpu_conv2d_code_channels) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_conv2d_code_channels");
  if (!g) return;
  if (!g->conv2d_code_channels) throw Failure("the CUDA table has no conv2d_code_channels");
  std::vector<CodeChCase> cases(std::begin(kCodeChCases), std::end(kCodeChCases));
  // the model's shapes in small: 3x3 heads over 32x32 and 16x16 maps with many classes, a 1x1
  // conv on a 64x64 map (one class, no border), a 9x9 kernel
  cases.insert(cases.end(), {{16, 8, 50, 32, 32, 64, 3}, {8, 4, 200, 16, 16, 128, 3}, {4, 2, 10, 64, 64, 8, 1},
                             {2, 1, 12, 20, 20, 4, 9}, {64, 3, 5, 4, 4, 16, 3}});
  uint64_t seed = 75000;
  for (const CodeChCase& c : cases) {
    const CodeChData d = codech_data(c, seed += 4);
    const Conv2dParams p = codech_params(c);
    auto run = [&](const Backend& be) {
      CodeChRun r;
      Buf bc(be, d.code), bw(be, d.w), bdy(be, d.dy), by(be, d.y0), bdw(be, Vf(d.w.size(), kDwSentinel)),
          bdc(be, nan_vec(d.code.size())), bdw1(be, Vf(d.w.size(), kDwSentinel)), bdc1(be, nan_vec(d.code.size()));
      be.conv2d_code_channels(false, p, c.Kc, bc.p(), bw.p(), nullptr, by.p(), nullptr, nullptr);
      be.conv2d_code_channels(true, p, c.Kc, bc.p(), bw.p(), bdy.p(), nullptr, bdw.p(), bdc.p());
      be.conv2d_code_channels(true, p, c.Kc, bc.p(), bw.p(), bdy.p(), nullptr, bdw1.p(), nullptr);
      be.conv2d_code_channels(true, p, c.Kc, bc.p(), bw.p(), bdy.p(), nullptr, nullptr, bdc1.p());
      r.y = by.host(), r.dw = bdw.host(), r.dcode = bdc.host(), r.dw_only = bdw1.host(), r.dcode_only = bdc1.host();
      return r;
    };
    const CodeChRun want = run(cpu_backend()), got = run(*g), again = run(*g);
    const std::string what = codech_name(c);
    expect_codech(got, want, d, c, what);
    expect_same(again.y, got.y, what + " forward is deterministic");
    expect_same(again.dw, got.dw, what + " dw is deterministic");
    expect_same(again.dcode, got.dcode, what + " dcode is deterministic");
    expect_same(got.dw_only, got.dw, what + " dw does not depend on dcode being asked for");
    expect_same(got.dcode_only, got.dcode, what + " dcode does not depend on dw being asked for");
  }
}

C3_TEST(cuda_vs_cpu_batchnorm) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_batchnorm");
  if (!g) return;
  // narrow (HW < 32: a thread per channel slice) and wide (a block per channel slice) paths; the
  // backward in one launch (a block per channel: HW >= 8, N * HW <= 16384) and, past that, on the slices
  const int64_t shapes[][3] = {{8, 5, 1},    {64, 300, 1},   {64, 1000, 16}, {3, 4, 30}, {2, 3, 1000},
                               {16, 32, 256}, {1, 2, 2},     {40, 3, 1000},  {1100, 5, 16}};
  uint64_t seed = 80000;
  for (auto& s : shapes)
    for (float shift : {0.0f, 1000.0f}) {  // a large mean against unit spread tests the variance numerics
      const int64_t N = s[0], C = s[1], HW = s[2], n = N * C * HW;
      Vf x = random_vec(n, ++seed, -1.0f + shift, 1.0f + shift), gm = random_vec(C, ++seed, 0.5f, 1.5f);
      Vf bt = random_vec(C, ++seed), rm = random_vec(C, ++seed), rv = random_vec(C, ++seed, 0.5f, 2.0f);
      Vf dy = random_vec(n, ++seed), res = random_vec(n, ++seed);
      const std::string what = "batchnorm N" + std::to_string(N) + " C" + std::to_string(C) + " HW" +
                               std::to_string(HW) + " mean " + std::to_string(shift);
      Outputs c, d;
      on_both(*g, [&](const Backend& be) {
        Buf bx(be, x), bg(be, gm), bb(be, bt), brm(be, rm), brv(be, rv), by(be, nan_vec(n)), bm(be, nan_vec(C)),
            bi(be, nan_vec(C)), bye(be, nan_vec(n)), bres(be, res), byr(be, nan_vec(n)), byer(be, nan_vec(n)),
            brm2(be, rm), brv2(be, rv), bm2(be, nan_vec(C)), bi2(be, nan_vec(C));
        be.batchnorm_forward_eval(N, C, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 1e-5f, bye.p(), BnEpilogue{});
        be.batchnorm_forward_eval(N, C, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 1e-5f, byer.p(), BnEpilogue{bres.p()});
        be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm.p(), brv.p(), 0.1f, 1e-5f, by.p(), bm.p(),
                                   bi.p(), nullptr, BnEpilogue{});
        // with a residual: the same statistics, y plus the residual
        be.batchnorm_forward_train(N, C, HW, bx.p(), bg.p(), bb.p(), brm2.p(), brv2.p(), 0.1f, 1e-5f, byr.p(),
                                   bm2.p(), bi2.p(), nullptr, BnEpilogue{bres.p()});
        return Outputs{by.host(), bm.host(), bi.host(), brm.host(), brv.host(), bye.host(), byr.host(), byer.host(),
                       bm2.host()};
      }, c, d);
      // statistics in double on both sides, in different orders, rounded once to float. y is
      // x * scale + shift in float: with |x| ~ 1000 an ulp of scale or shift moves it by ~5e-4.
      const char* fnames[] = {" y", " save_mean", " save_invstd", " running_mean", " running_var", " eval y",
                              " y + residual", " eval y + residual"};
      const double frt[] = {1e-5, 1e-6, 1e-5, 1e-6, 1e-5, 1e-5, 1e-5, 1e-5};
      const double fat[] = {1e-5 + 1e-6 * shift, 1e-6 * (1 + shift), 1e-6, 1e-6 * (1 + shift), 1e-6, 1e-5,
                            1e-5 + 1e-6 * shift, 1e-5};
      for (size_t k = 0; k < 8; ++k) expect_close(d[k], c[k], frt[k], fat[k], what + fnames[k]);
      // each backend's sum is its own y plus the residual, rounded once
      for (const Outputs* o : {&c, &d}) {
        Vf want((*o)[0]), want_eval((*o)[5]);
        for (int64_t i = 0; i < n; ++i) want[i] += res[i], want_eval[i] += res[i];
        expect_same((*o)[6], want, what + " y + residual is y, then the sum");
        expect_same((*o)[7], want_eval, what + " eval y + residual is y, then the sum");
        expect_same((*o)[8], (*o)[1], what + " the residual leaves the statistics alone");
      }
      // backward from the same saved statistics (the CPU's), training and eval
      const Vf save_mean = c[1];  // copies: c is reassigned below
      const Vf save_invstd = c[2];
      Vf eval_mean = rm, eval_invstd(C);
      for (int64_t k = 0; k < C; ++k) eval_invstd[k] = static_cast<float>(1.0 / std::sqrt(rv[k] + 1e-5));
      on_both(*g, [&](const Backend& be) {
        Buf bx(be, x), bg(be, gm), bdy(be, dy), bm(be, save_mean), bi(be, save_invstd), bem(be, eval_mean),
            bei(be, eval_invstd), bdx(be, nan_vec(n)), bdg(be, nan_vec(C)), bdb(be, nan_vec(C)), bdxe(be, nan_vec(n)),
            bdx2(be, nan_vec(n));
        be.batchnorm_backward(N, C, HW, true, bdy.p(), bx.p(), bg.p(), bm.p(), bi.p(), bdx.p(), bdg.p(), bdb.p());
        be.batchnorm_backward(N, C, HW, false, bdy.p(), bx.p(), bg.p(), bem.p(), bei.p(), bdxe.p(), nullptr, nullptr);
        be.batchnorm_backward(N, C, HW, true, bdy.p(), bx.p(), bg.p(), bm.p(), bi.p(), bdx2.p(), nullptr, nullptr);
        return Outputs{bdx.host(), bdg.host(), bdb.host(), bdxe.host(), bdx2.host()};
      }, c, d);
      const double terms = static_cast<double>(N * HW);
      const char* bnames[] = {" dx", " dgamma", " dbeta", " eval dx", " dx without dgamma/dbeta"};
      const double brt[] = {1e-5, 1e-5, 1e-5, 1e-6, 1e-5};
      const double bat[] = {1e-6, 1e-7 * terms, 1e-7 * terms, 1e-7, 1e-6};
      for (size_t k = 0; k < c.size(); ++k) expect_close(d[k], c[k], brt[k], bat[k], what + bnames[k]);
    }
  // an empty batch: no sums to take (another kernel), zero dgamma and dbeta; then a full one, so a
  // block counter left behind by the empty path would show
  const int64_t C = 6;
  Vf gm = random_vec(C, 80900, 0.5f, 1.5f), mean = random_vec(C, 80901), invstd = random_vec(C, 80902, 0.5f, 2.0f);
  Vf x = random_vec(4 * C * 9, 80903), dy = random_vec(4 * C * 9, 80904);
  Outputs c, d;
  on_both(*g, [&](const Backend& be) {
    Buf bg(be, gm), bm(be, mean), bi(be, invstd), bdg(be, nan_vec(C)), bdb(be, nan_vec(C)), bx(be, x), bdy(be, dy),
        bdx(be, nan_vec(x.size())), bdg2(be, nan_vec(C));
    be.batchnorm_backward(0, C, 9, true, bdy.p(), bx.p(), bg.p(), bm.p(), bi.p(), nullptr, bdg.p(), bdb.p());
    be.batchnorm_backward(4, C, 9, true, bdy.p(), bx.p(), bg.p(), bm.p(), bi.p(), bdx.p(), bdg2.p(), nullptr);
    return Outputs{bdg.host(), bdb.host(), bdx.host(), bdg2.host()};
  }, c, d);
  expect_close(d[0], Vf(C, 0.0f), 0, 0, "batchnorm backward of an empty batch: dgamma");
  expect_close(d[1], Vf(C, 0.0f), 0, 0, "batchnorm backward of an empty batch: dbeta");
  expect_close(d[2], c[2], 1e-5, 1e-6, "batchnorm backward after an empty batch: dx");
  expect_close(d[3], c[3], 1e-5, 1e-6, "batchnorm backward after an empty batch: dgamma");
}

C3_TEST(cuda_vs_cpu_bn_glu) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_bn_glu");
  if (!g) return;
  // long rows and short ones (BatchNorm1d's HW = 1), one block or thread per channel pair or
  // several batch slices each, or the one-launch backward (a block per pair: HW >= 8, N * HW <= 16384);
  // expf may differ from the CPU's by an ulp or two
  const int64_t shapes[][3] = {{8, 5, 1},    {4, 16, 7},  {16, 32, 256},  {2, 3, 1000},
                               {64, 300, 1}, {40, 2, 64}, {20, 3, 1000}, {1200, 2, 16}};
  uint64_t seed = 81000;
  for (auto& s : shapes)
    for (bool training : {true, false}) {
      const int64_t N = s[0], half = s[1], HW = s[2], n = N * half * HW, C = 2 * half;
      Vf x = random_vec(2 * n, ++seed, -3, 3), gm = random_vec(C, ++seed, 0.5f, 1.5f);
      Vf bt = random_vec(C, ++seed), mean = random_vec(C, ++seed), invstd = random_vec(C, ++seed, 0.5f, 2.0f);
      Vf dy = random_vec(n, ++seed);
      const std::string what = "bn_glu N" + std::to_string(N) + " half" + std::to_string(half) + " HW" +
                               std::to_string(HW) + (training ? " training" : " eval");
      Outputs c, d;
      on_both(*g, [&](const Backend& be) {
        Buf bx(be, x), bg(be, gm), bb(be, bt), bm(be, mean), bi(be, invstd), bdy(be, dy), by(be, nan_vec(n)),
            bdx(be, nan_vec(2 * n)), bdg(be, nan_vec(C)), bdb(be, nan_vec(C)), bdg2(be, nan_vec(C)),
            bdx3(be, nan_vec(2 * n));
        be.bn_glu_forward(N, half, HW, bx.p(), bg.p(), bb.p(), bm.p(), bi.p(), by.p());
        be.bn_glu_batchnorm_backward(N, half, HW, training, bdy.p(), bx.p(), bg.p(), bb.p(), bm.p(), bi.p(), bdx.p(),
                                     bdg.p(), bdb.p());
        // without dx and dbeta: the same dgamma; without dgamma and dbeta: the same dx
        be.bn_glu_batchnorm_backward(N, half, HW, training, bdy.p(), bx.p(), bg.p(), bb.p(), bm.p(), bi.p(), nullptr,
                                     bdg2.p(), nullptr);
        be.bn_glu_batchnorm_backward(N, half, HW, training, bdy.p(), bx.p(), bg.p(), bb.p(), bm.p(), bi.p(), bdx3.p(),
                                     nullptr, nullptr);
        return Outputs{by.host(), bdx.host(), bdg.host(), bdb.host(), bdg2.host(), bdx3.host()};
      }, c, d);
      const double terms = static_cast<double>(N * HW);
      expect_close(d[0], c[0], 1e-5, 1e-6, what + " forward");
      expect_close(d[1], c[1], 1e-5, 1e-5, what + " dx");
      expect_close(d[2], c[2], 1e-5, 1e-6 * terms, what + " dgamma");
      expect_close(d[3], c[3], 1e-5, 1e-6 * terms, what + " dbeta");
      expect_same(d[4], d[2], what + " dgamma without dx");
      expect_same(d[5], d[1], what + " dx without dgamma and dbeta");
    }
}

C3_TEST(cuda_vs_cpu_pointwise) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_pointwise");
  if (!g) return;
  // GLU over a middle and the last dim (expf may differ from the CPU's by an ulp or two)
  for (auto& s : std::vector<std::array<int64_t, 3>>{{3, 4, 5}, {64, 512, 1}, {8, 16, 1024}}) {
    const int64_t outer = s[0], half = s[1], inner = s[2], n = outer * half * inner;
    Vf x = random_vec(2 * n, 90000 + n, -4, 4), dy = random_vec(n, 90001 + n);
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      Buf bx(be, x), by(be, nan_vec(n)), bdy(be, dy), bdx(be, nan_vec(2 * n));
      be.glu_forward(outer, half, inner, bx.p(), by.p());
      be.glu_backward(outer, half, inner, bdy.p(), bx.p(), bdx.p());
      return Outputs{by.host(), bdx.host()};
    }, c, d);
    expect_close(d[0], c[0], 1e-6, 1e-30, "glu forward");
    expect_close(d[1], c[1], 5e-5, 1e-30, "glu backward");  // (1 - s) for s near 1 amplifies an ulp of s
  }
  // unary maps: the library functions (exp, log, tanh) may differ by a few ulps; the gradients,
  // given the same saved y, are the same float expressions and must match exactly
  const size_t n = 100003;
  const UnaryOp ops[] = {UnaryOp::Relu, UnaryOp::LeakyRelu, UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Exp,
                         UnaryOp::Log,  UnaryOp::Neg,       UnaryOp::Square, UnaryOp::Sqrt,  UnaryOp::Abs};
  for (UnaryOp op : ops) {
    const bool pos = op == UnaryOp::Log || op == UnaryOp::Sqrt;
    Vf x = random_vec(n, 91000 + static_cast<int>(op), pos ? 0.1f : -3.0f, 3.0f), dy = random_vec(n, 91100);
    if (!pos) x[0] = 0.0f, x[1] = -0.0f;  // the kinks
    Vf y_cpu(n);
    cpu_backend().unary_forward(op, n, x.data(), 0.2f, y_cpu.data());
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      Buf bx(be, x), by(be, nan_vec(n)), bdy(be, dy), bys(be, y_cpu), bdx(be, nan_vec(n)), bin(be, x);
      be.unary_forward(op, n, bx.p(), 0.2f, by.p());
      be.unary_backward(op, n, bdy.p(), bx.p(), bys.p(), 0.2f, bdx.p());
      be.unary_forward(op, n, bin.p(), 0.2f, bin.p());  // in place
      return Outputs{by.host(), bdx.host(), bin.host()};
    }, c, d);
    const std::string what = "unary op " + std::to_string(static_cast<int>(op));
    expect_close(d[0], c[0], 1e-6, 1e-30, what + " forward");
    expect_same(d[1], c[1], what + " backward");
    expect_same(d[2], d[0], what + " in place");
  }
  // broadcast binary ops and expand (exact: one IEEE operation per element)
  struct Pair {
    Shape a, b;
  };
  const Pair pairs[] = {{{300007}, {300007}}, {{3, 4, 5}, {}},          {{16, 32, 16, 16}, {1, 32, 1, 1}},
                        {{512, 300}, {512, 1}}, {{1, 300}, {700, 300}}, {{2, 1, 3, 1, 2, 1}, {1, 2, 1, 3, 1, 2}},
                        {{4, 1}, {1, 5}}};
  for (const Pair& pr : pairs) {
    const size_t r = std::max(pr.a.size(), pr.b.size());
    Shape pa(r - pr.a.size(), 1), pb(r - pr.b.size(), 1), out(r);
    pa.insert(pa.end(), pr.a.begin(), pr.a.end());
    pb.insert(pb.end(), pr.b.begin(), pr.b.end());
    BroadcastIndex idx{};
    idx.ndim = static_cast<int>(r);
    int64_t na = 1, nb = 1, no = 1;
    for (size_t k = 0; k < r; ++k) out[k] = std::max(pa[k], pb[k]), idx.shape[k] = out[k];
    for (int64_t k = static_cast<int64_t>(r) - 1, sa = 1, sb = 1; k >= 0; --k) {
      idx.stride_a[k] = pa[k] == 1 ? 0 : sa, idx.stride_b[k] = pb[k] == 1 ? 0 : sb;
      sa *= pa[k], sb *= pb[k];
    }
    for (size_t k = 0; k < r; ++k) na *= pa[k], nb *= pb[k], no *= out[k];
    Vf a = random_vec(na, 92000 + na), b = random_vec(nb, 92001 + nb, 0.5f, 1.5f);
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
      Outputs c, d;
      on_both(*g, [&](const Backend& be) {
        Buf ba(be, a), bb(be, b), by(be, nan_vec(no)), be_(be, nan_vec(no));
        be.binary_forward(op, idx, ba.p(), bb.p(), by.p());
        be.expand(idx, ba.p(), be_.p());
        return Outputs{by.host(), be_.host()};
      }, c, d);
      const std::string what = shape_str(pr.a) + " op " + std::to_string(static_cast<int>(op)) + " " + shape_str(pr.b);
      expect_same(d[0], c[0], "binary " + what);
      expect_same(d[1], c[1], "expand of a in " + what);
    }
  }
}

C3_TEST(cuda_vs_cpu_sum_to_patterns_and_determinism) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_sum_to_patterns_and_determinism");
  if (!g) return;
  struct Case {
    Shape x, y;
  };
  // thread-per-output (kept innermost or short reductions) and block-per-output (long
  // contiguous reductions), with and without slices of a long reduction
  const Case cases[] = {{{6, 5}, {1, 5}},          {{6, 5}, {6, 1}},           {{2, 3, 4, 5}, {}},
                        {{2, 3, 4, 5}, {2, 1, 4, 1}}, {{64, 16, 32, 32}, {1, 16, 1, 1}}, {{4096, 300}, {1, 300}},
                        {{300, 4096}, {300, 1}},   {{1 << 22}, {1}},            {{8, 16, 64, 64}, {8, 16, 1, 1}},
                        {{2, 1, 3, 1, 2, 3}, {1, 1, 3, 1, 1, 3}}, {{1000, 5}, {1000, 1}}, {{3, 4}, {3, 4}},
                        {{64, 32768}, {1, 32768}}};
  uint64_t seed = 93000;
  for (const Case& cs : cases) {
    BroadcastIndex idx{};
    idx.ndim = static_cast<int>(cs.x.size());
    Shape py(cs.x.size() - cs.y.size(), 1);
    py.insert(py.end(), cs.y.begin(), cs.y.end());
    int64_t nx = 1, ny = 1;
    for (size_t k = 0; k < cs.x.size(); ++k) idx.shape[k] = cs.x[k], nx *= cs.x[k], ny *= py[k];
    for (int64_t k = idx.ndim - 1, st = 1; k >= 0; --k) idx.stride_a[k] = py[k] == 1 ? 0 : st, st *= py[k];
    Vf x = random_vec(nx, ++seed, 0.5f, 1.5f);
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      Buf bx(be, x), y1(be, nan_vec(ny)), y2(be, nan_vec(ny));
      be.sum_to(idx, bx.p(), y1.p(), ny);
      be.sum_to(idx, bx.p(), y2.p(), ny);
      return Outputs{y1.host(), y2.host()};
    }, c, d);
    const std::string what = "sum_to " + shape_str(cs.x) + " to " + shape_str(cs.y);
    // both sum in double: the results agree to float rounding
    expect_close(d[0], c[0], 2e-7, 1e-30, what);
    expect_same(d[1], d[0], what + " is deterministic");
  }
}

C3_TEST(cuda_vs_cpu_layout_rows_and_losses) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_layout_rows_and_losses");
  if (!g) return;
  {  // upsample (exact) and copy_block (exact)
    const int64_t P = 48, H = 17, W = 33;
    Vf x = random_vec(P * H * W, 94000), dy = random_vec(P * 4 * H * W, 94001);
    Vf src = random_vec(3 * 4 * 1000, 94002), dst = random_vec(3 * 7 * 1000, 94003);
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      Buf bx(be, x), by(be, nan_vec(dy.size())), bdy(be, dy), bdx(be, nan_vec(x.size())), bs(be, src), bd(be, dst),
          bsl(be, nan_vec(3 * 2 * 1000));
      be.upsample2x_forward(P, H, W, bx.p(), by.p());
      be.upsample2x_backward(P, H, W, bdy.p(), bdx.p());
      be.copy_block(3, 1000, 4, bs.p(), 4, 0, bd.p(), 7, 2);
      be.copy_block(3, 1000, 2, bs.p(), 4, 1, bsl.p(), 2, 0);
      return Outputs{by.host(), bdx.host(), bd.host(), bsl.host()};
    }, c, d);
    expect_same(d[0], c[0], "upsample2x forward");
    expect_same(d[1], c[1], "upsample2x backward");
    expect_same(d[2], c[2], "copy_block (concat)");
    expect_same(d[3], c[3], "copy_block (slice)");
  }
  for (auto& s : std::vector<std::array<int64_t, 2>>{{5, 7}, {300, 128}, {64, 200}, {3, 1}, {2, 5000}}) {
    const int64_t N = s[0], D = s[1];
    Vf x = random_vec(N * D, 95000 + N, -4, 4), dy = random_vec(N * D, 95001 + N);
    for (int64_t j = 0; j < D && N > 2; ++j) x[2 * D + j] = 0.0f;  // a zero row for l2norm
    std::vector<int32_t> t(N);
    for (int64_t i = 0; i < N; ++i) t[i] = static_cast<int32_t>((i * 7 + 3) % D);
    const std::string what = "rows (" + std::to_string(N) + ", " + std::to_string(D) + ")";
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      Buf bx(be, x), y(be, nan_vec(N * D)), nrm(be, nan_vec(N)), sm(be, nan_vec(N * D)), lsm(be, nan_vec(N * D)),
          loss(be, nan_vec(1)), probs(be, nan_vec(N * D));
      IntBuf bt(be, t);
      be.l2norm_forward(N, D, bx.p(), 1e-12f, y.p(), nrm.p());
      be.softmax_forward(N, D, bx.p(), false, sm.p());
      be.softmax_forward(N, D, bx.p(), true, lsm.p());
      be.cross_entropy_forward(N, D, bx.p(), bt.p(), loss.p(), probs.p());
      return Outputs{y.host(), nrm.host(), sm.host(), lsm.host(), loss.host(), probs.host()};
    }, c, d);
    // double reductions in different orders, one rounding to float: an ulp at most
    const char* fnames[] = {" l2norm", " norms", " softmax", " log_softmax", " cross_entropy loss",
                            " cross_entropy probs"};
    for (size_t k = 0; k < c.size(); ++k) expect_close(d[k], c[k], 3e-7, 1e-30, what + fnames[k]);
    // backward passes from the same saved forward values (the CPU's)
    const Outputs f = c;
    on_both(*g, [&](const Backend& be) {
      Buf bx(be, x), bdy(be, dy), nrm(be, f[1]), sm(be, f[2]), lsm(be, f[3]), probs(be, f[5]), dl(be, Vf{0.7f}),
          dx(be, nan_vec(N * D)), dsm(be, nan_vec(N * D)), dlsm(be, nan_vec(N * D)), dlog(be, nan_vec(N * D));
      IntBuf bt(be, t);
      be.l2norm_backward(N, D, bdy.p(), bx.p(), nrm.p(), 1e-12f, dx.p());
      be.softmax_backward(N, D, bdy.p(), sm.p(), false, dsm.p());
      be.softmax_backward(N, D, bdy.p(), lsm.p(), true, dlsm.p());
      be.cross_entropy_backward(N, D, probs.p(), bt.p(), dl.p(), dlog.p());
      return Outputs{dx.host(), dsm.host(), dlsm.host(), dlog.host()};
    }, c, d);
    const char* bnames[] = {" l2norm backward", " softmax backward", " log_softmax backward",
                            " cross_entropy backward"};
    for (size_t k = 0; k < c.size(); ++k) expect_close(d[k], c[k], 3e-7, 1e-12, what + bnames[k]);
    expect_same(d[3], c[3], what + " cross_entropy backward (float arithmetic)");
  }
}

C3_TEST(cuda_vs_cpu_ntxent) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_ntxent");
  if (!g) return;
  for (auto& s : std::vector<std::array<int64_t, 2>>{{4, 3}, {16, 16}, {128, 512}, {256, 64}})
    for (float T : {0.1f, 0.5f}) {
      const int64_t N2 = s[0], D = s[1];
      Vf x = random_vec(N2 * D, 96000 + N2 * D);
      const std::string what = "ntxent 2N=" + std::to_string(N2) + " D=" + std::to_string(D) + " T=" + std::to_string(T);
      Outputs c, d;
      on_both(*g, [&](const Backend& be) {
        Buf bx(be, x), loss(be, nan_vec(1)), z(be, nan_vec(N2 * D)), nrm(be, nan_vec(N2)), p(be, nan_vec(N2 * N2));
        be.ntxent_forward(N2, D, bx.p(), T, loss.p(), z.p(), nrm.p(), p.p());
        return Outputs{loss.host(), z.host(), nrm.host(), p.host()};
      }, c, d);
      const char* names[] = {" loss", " z", " norms", " p"};
      for (size_t k = 0; k < c.size(); ++k) expect_close(d[k], c[k], 3e-7, 1e-30, what + names[k]);
      const Outputs f = c;  // backward from the CPU's saved z, norms and p
      on_both(*g, [&](const Backend& be) {
        Buf bx(be, x), z(be, f[1]), nrm(be, f[2]), p(be, f[3]), dl(be, Vf{1.3f}), dx(be, nan_vec(N2 * D));
        be.ntxent_backward(N2, D, dl.p(), bx.p(), z.p(), nrm.p(), p.p(), T, dx.p());
        return Outputs{dx.host()};
      }, c, d);
      expect_close(d[0], c[0], 1e-6, 1e-9, what + " dx");
    }
}

C3_TEST(cuda_vs_cpu_grid_sample_and_affine_grid) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_grid_sample_and_affine_grid");
  if (!g) return;
  struct Dims {
    int64_t N, C, H, W, OH, OW;
    float reach;
  };
  const Dims dims[] = {{2, 3, 5, 6, 4, 7, 1.3f}, {1, 2, 1, 5, 3, 3, 1.2f}, {4, 16, 32, 32, 32, 32, 1.1f},
                       {2, 4, 64, 64, 64, 64, 0.7f}, {1, 1, 4, 4, 6, 3, 2.5f}};
  uint64_t seed = 97000;
  for (const Dims& dm : dims) {
    Vf x = random_vec(dm.N * dm.C * dm.H * dm.W, ++seed);
    Vf grid = random_vec(dm.N * dm.OH * dm.OW * 2, ++seed, -dm.reach, dm.reach);
    Vf dy = random_vec(dm.N * dm.C * dm.OH * dm.OW, ++seed);
    Vf theta = random_vec(dm.N * 6, ++seed, -1.2f, 1.2f), dgrid_in = random_vec(dm.N * dm.OH * dm.OW * 2, ++seed);
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      Buf bx(be, x), bg(be, grid), bdy(be, dy), y(be, nan_vec(dy.size())), dx(be, nan_vec(x.size())),
          dx2(be, nan_vec(x.size())), dg(be, nan_vec(grid.size())), bt(be, theta), ag(be, nan_vec(grid.size())),
          bdg(be, dgrid_in), dt(be, nan_vec(theta.size()));
      be.grid_sample_forward(dm.N, dm.C, dm.H, dm.W, dm.OH, dm.OW, bx.p(), bg.p(), y.p());
      be.grid_sample_backward(dm.N, dm.C, dm.H, dm.W, dm.OH, dm.OW, bdy.p(), bx.p(), bg.p(), dx.p(), dg.p());
      be.grid_sample_backward(dm.N, dm.C, dm.H, dm.W, dm.OH, dm.OW, bdy.p(), bx.p(), bg.p(), dx2.p(), nullptr);
      be.affine_grid_forward(dm.N, dm.OH, dm.OW, bt.p(), ag.p());
      be.affine_grid_backward(dm.N, dm.OH, dm.OW, bdg.p(), dt.p());
      return Outputs{y.host(), dx.host(), dg.host(), dx2.host(), ag.host(), dt.host()};
    }, c, d);
    const std::string what = "grid_sample (" + std::to_string(dm.N) + "," + std::to_string(dm.C) + "," +
                             std::to_string(dm.H) + "," + std::to_string(dm.W) + ")";
    expect_same(d[0], c[0], what + " forward (the CPU's float arithmetic)");
    // dx: fixed-point sums on the GPU (exact to ~2^-48 of max|dy|) against the CPU's float sums
    expect_close(d[1], c[1], 1e-5, 1e-6, what + " dx");
    expect_close(d[2], c[2], 1e-6, 1e-7, what + " dgrid");
    expect_same(d[3], d[1], what + " dx is deterministic (and independent of dgrid)");
    expect_same(d[4], c[4], "affine_grid forward " + what);
    expect_close(d[5], c[5], 1e-6, 1e-9, "affine_grid backward " + what);
  }
}

C3_TEST(cuda_vs_cpu_adam_bitwise) {
  const Backend* g = gpu_or_skip("cuda_vs_cpu_adam_bitwise");
  if (!g) return;
  // one big parameter and small ones with their own step counts, stepped together (one launch)
  const size_t sizes[] = {300001, 1, 33, 0, 4096};
  const int64_t first_step[] = {1, 5, 2, 1, 3};
  const size_t count = sizeof sizes / sizeof sizes[0];
  for (float wd : {0.0f, 0.01f}) {
    Outputs c, d;
    on_both(*g, [&](const Backend& be) {
      std::vector<std::unique_ptr<Buf>> bufs;  // param, m, v, grad per tensor
      for (size_t k = 0; k < count; ++k) {
        bufs.push_back(std::make_unique<Buf>(be, random_vec(sizes[k], 98000 + k)));
        bufs.push_back(std::make_unique<Buf>(be, Vf(sizes[k], 0.0f)));
        bufs.push_back(std::make_unique<Buf>(be, Vf(sizes[k], 0.0f)));
        bufs.push_back(std::make_unique<Buf>(be, sizes[k]));
      }
      for (int step = 0; step < 3; ++step) {
        std::vector<c3::AdamTensor> ts;
        for (size_t k = 0; k < count; ++k) {
          Vf grad = random_vec(sizes[k], 98100 + 10 * step + k);
          if (sizes[k]) be.upload(bufs[4 * k + 3]->p(), grad.data(), sizes[k]);
          ts.push_back({bufs[4 * k]->p(), bufs[4 * k + 3]->p(), bufs[4 * k + 1]->p(), bufs[4 * k + 2]->p(), sizes[k],
                        first_step[k] + step});
        }
        be.adam_step(ts.data(), ts.size(), 2e-4, 0.5, 0.999, 1e-8, wd);
      }
      Outputs out;
      for (size_t k = 0; k < count; ++k)
        for (int j = 0; j < 3; ++j) out.push_back(bufs[4 * k + j]->host());
      return out;
    }, c, d);
    for (size_t k = 0; k < count; ++k) {
      const std::string what = "adam wd=" + std::to_string(wd) + " tensor " + std::to_string(k);
      expect_same(d[3 * k], c[3 * k], what + " param");
      expect_same(d[3 * k + 1], c[3 * k + 1], what + " exp_avg");
      expect_same(d[3 * k + 2], c[3 * k + 2], what + " exp_avg_sq");
    }
  }
}

}  // namespace
