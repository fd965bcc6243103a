// The GEMM micro-kernels one by one (gemm_kernels.h): every kernel this CPU runs (portable,
// AVX2+FMA, AVX-512, NEON) called directly on packed panels against a float64 sum, across the
// unrolled-by-4 loop's remainders, and the blocked engine with each kernel at the edges of its
// own tile (mr x nr), which the sweeps in test_speed_paths.cc reach only for the x86 shapes.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../core/threadpool.h"
#include "../cpu/gemm_kernels.h"
#include "../cpu/kernels.h"
#include "harness.h"

namespace {

using c3::test::expect_close;
using c3::test::expect_true;
using c3::test::random_vec;
using Vec = std::vector<float>;
using Kernel = c3::cpu::MicroKernel;

std::vector<const Kernel*> all_kernels() {
  std::vector<const Kernel*> ks{&c3::cpu::portable_micro_kernel()};
  for (const Kernel* k : {c3::cpu::avx2_micro_kernel(), c3::cpu::avx512_micro_kernel(), c3::cpu::neon_micro_kernel()})
    if (k) ks.push_back(k);
  return ks;
}

bool cpu_only(const c3::Backend& be, const char* test) {
  if (std::string(be.name) == "cpu") return true;
  std::printf("     note: %s tests CPU kernels only, skipped on %s\n", test, be.name);
  return false;
}

C3_TEST(gemm_micro_kernels_on_packed_panels) {
  if (!cpu_only(be, "gemm_micro_kernels_on_packed_panels")) return;
  uint64_t seed = 90000;
  for (const Kernel* k : all_kernels()) {
    const int mr = k->mr, nr = k->nr;
    // the engine's acc buffers hold 16 x 32 floats; the Winograd transforms need nr % 8 == 0
    expect_true(mr > 0 && nr > 0 && mr * nr <= 16 * 32, std::string(k->name) + ": tile fits the engine's acc buffer");
    expect_true(nr % 8 == 0, std::string(k->name) + ": nr is a multiple of 8 (winograd_core.h PanelRow)");
    for (int64_t kc : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 64, 255, 256}) {
      const Vec a = random_vec(kc * mr, ++seed), b = random_vec(kc * nr, ++seed);
      Vec acc(mr * nr, std::numeric_limits<float>::quiet_NaN());  // overwritten, never read
      std::vector<double> want(mr * nr, 0.0);
      for (int64_t kk = 0; kk < kc; ++kk)
        for (int r = 0; r < mr; ++r)
          for (int c = 0; c < nr; ++c) want[r * nr + c] += double(a[kk * mr + r]) * b[kk * nr + c];
      k->run(kc, a.data(), b.data(), acc.data());
      expect_close(acc, want, 1e-5, 1e-6 * double(kc + 1), std::string(k->name) + " kc=" + std::to_string(kc));
    }
  }
}

// Each kernel through cpu::gemm on shapes at and around multiples of its own mr and nr (and
// across KC = 256), on one and two threads.
C3_TEST(gemm_engine_each_kernel_at_its_tile_edges) {
  if (!cpu_only(be, "gemm_engine_each_kernel_at_its_tile_edges")) return;
  const Kernel& saved = c3::cpu::gemm_micro_kernel();
  const int saved_threads = c3::num_threads();
  struct Restore {
    const Kernel& k;
    int threads;
    ~Restore() {
      c3::cpu::set_gemm_micro_kernel(k);
      c3::set_num_threads(threads);
    }
  } restore{saved, saved_threads};
  uint64_t seed = 91000;
  for (const Kernel* k : all_kernels()) {
    c3::cpu::set_gemm_micro_kernel(*k);
    const int64_t mr = k->mr, nr = k->nr;
    const int64_t shapes[][3] = {{mr, nr, 4},          {mr - 1, nr + 1, 5},     {mr + 1, nr - 1, 257},
                                 {2 * mr, 3 * nr, 31}, {3 * mr + 5, 2 * nr + 3, 64}, {97, 70, 300}};
    for (int threads : {1, 2}) {
      c3::set_num_threads(threads);
      for (auto& s : shapes)
        for (int t = 0; t < 4; ++t) {
          const int64_t M = s[0], N = s[1], K = s[2];
          const bool ta = t & 1, tb = t & 2;
          Vec A = random_vec(M * K, ++seed), B = random_vec(K * N, ++seed);
          Vec C(M * N, std::numeric_limits<float>::quiet_NaN()), R(M * N, 0.0f);  // beta 0 never reads C
          c3::cpu::gemm(ta, tb, M, N, K, 1.0f, A.data(), B.data(), 0.0f, C.data());
          c3::cpu::gemm_reference(ta, tb, M, N, K, 1.0f, A.data(), B.data(), 0.0f, R.data());
          expect_close(C, R, 1e-4, 2e-6 * double(K + 1),
                       std::string("gemm ") + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                           " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " [" + k->name + ", " +
                           std::to_string(threads) + " threads]");
        }
    }
  }
}

}  // namespace
