// FMA throughput loops for the peak measurement. Independent accumulators hide the FMA latency
// (4-5 cycles on 2 pipes). The vector loop accumulates, a = m * c + a (one instruction on both
// AVX2 and Advanced SIMD, whose FMA adds into its destination), a few 1e-7 per step from ~0.5;
// the portable one's a = a*m + c converges to c/(1-m) = 0.1. Either way values stay normal (no
// denormal slowdowns) and the result is live, which keeps the loop from being removed.
#include "peak.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "../core/error.h"
#include "vec8.h"

#if defined(__x86_64__) || defined(__i386__)
#define C3_PEAK_X86 1
#endif

namespace c3::cpu {
namespace {

using Clock = std::chrono::steady_clock;

// Each block is short (well under a millisecond) so the clock is read often enough to stop on time.
constexpr int64_t kItersPerBlock = 20000;

#ifdef C3_VEC8
// Twelve eight-float accumulators (AVX2: 12 registers; Advanced SIMD: 24, enough for 4 FMA pipes
// of latency 4). Returns flops done; adds the accumulators into *sink so the work is observable.
C3_VEC8_TARGET double fma_block_vec8(int64_t iters, float seed, float* sink) {
  using namespace vec8;
  const V8 m = splat(0.999999f), c = splat(1e-7f);
  V8 a0 = splat(seed), a1 = splat(seed + 0.01f), a2 = splat(seed + 0.02f), a3 = splat(seed + 0.03f),
     a4 = splat(seed + 0.04f), a5 = splat(seed + 0.05f), a6 = splat(seed + 0.06f), a7 = splat(seed + 0.07f),
     a8 = splat(seed + 0.08f), a9 = splat(seed + 0.09f), a10 = splat(seed + 0.10f), a11 = splat(seed + 0.11f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = fma(m, c, a0);
    a1 = fma(m, c, a1);
    a2 = fma(m, c, a2);
    a3 = fma(m, c, a3);
    a4 = fma(m, c, a4);
    a5 = fma(m, c, a5);
    a6 = fma(m, c, a6);
    a7 = fma(m, c, a7);
    a8 = fma(m, c, a8);
    a9 = fma(m, c, a9);
    a10 = fma(m, c, a10);
    a11 = fma(m, c, a11);
  }
  V8 t = add(add(add(a0, a1), add(a2, a3)), add(add(a4, a5), add(a6, a7)));
  t = add(t, add(add(a8, a9), add(a10, a11)));
  alignas(32) float lanes[8];
  store(lanes, t);
  for (float v : lanes) *sink += v;
  return double(iters) * 12 * 8 * 2;
}
#endif

// Portable: 16 independent multiply-add chains (the compiler may vectorise them with whatever SIMD
// the baseline target has; counted as 2 flops each either way).
double fma_block_portable(int64_t iters, float seed, float* sink) {
  constexpr int kAcc = 16;
  const float m = 0.999999f, c = 1e-7f;
  float a[kAcc];
  for (int k = 0; k < kAcc; ++k) a[k] = seed + 0.01f * float(k);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kAcc; ++k) a[k] = a[k] * m + c;
  for (int k = 0; k < kAcc; ++k) *sink += a[k];
  return double(iters) * kAcc * 2;
}

using BlockFn = double (*)(int64_t, float, float*);

BlockFn pick_block() {
#ifdef C3_VEC8
  if (vec8::available()) return fma_block_vec8;
#endif
  return fma_block_portable;
}

struct ThreadResult {
  double flops = 0;
  double secs = 0;
  float sink = 0;
};

// One worker: waits until all are ready (so they overlap), then runs blocks for `seconds`.
void worker(BlockFn block, double seconds, int index, int threads, std::atomic<int>& ready,
            const std::atomic<bool>& cancel, ThreadResult& out) {
  ready.fetch_add(1);
  while (ready.load() < threads && !cancel.load()) std::this_thread::yield();
  if (cancel.load()) return;
  const float seed = 0.5f + 0.001f * float(index);
  block(kItersPerBlock / 10, seed, &out.sink);  // warm-up: wakes the SIMD units and the clock
  const auto t0 = Clock::now();
  double flops = 0, secs = 0;
  do {
    flops += block(kItersPerBlock, seed, &out.sink);
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (secs < seconds);
  out.flops = flops;
  out.secs = secs;
}

}  // namespace

double measure_peak_gflops(double seconds, int threads) {
  check(std::isfinite(seconds) && seconds > 0 && seconds <= 60, "peakGflops",
        "seconds must be in (0, 60], got ", seconds);
  check(threads >= 1 && threads <= 1024, "peakGflops", "threads must be in [1, 1024], got ", threads);
  const BlockFn block = pick_block();
  std::vector<ThreadResult> results(threads);
  std::atomic<int> ready{0};
  std::atomic<bool> cancel{false};
  std::vector<std::thread> pool;
  pool.reserve(threads);
  try {
    for (int i = 0; i < threads; ++i)
      pool.emplace_back(worker, block, seconds, i, threads, std::ref(ready), std::cref(cancel), std::ref(results[i]));
  } catch (...) {
    // a thread could not start: release the ones waiting at the start line, join them, report
    cancel.store(true);
    for (auto& t : pool) t.join();
    throw Error("peakGflops", "could not start " + std::to_string(threads) + " threads");
  }
  for (auto& t : pool) t.join();
  // The threads ran at the same time: their rates add up.
  double gflops = 0, sink = 0;
  for (const ThreadResult& r : results) {
    gflops += r.flops / r.secs * 1e-9;
    sink += r.sink;
  }
  // sink is ~0.1 per lane by construction; a non-finite value means the loop did not run as written
  check(std::isfinite(sink), "peakGflops", "the FMA loop produced a non-finite result");
  return gflops;
}

const char* cpu_features() {
#ifdef C3_PEAK_X86
  static const std::string features = [] {
    __builtin_cpu_init();
    std::string s;
    auto add = [&s](bool has, const char* name) {
      if (has) s += (s.empty() ? "" : " ") + std::string(name);
    };
    add(__builtin_cpu_supports("sse4.2"), "sse4.2");
    add(__builtin_cpu_supports("avx"), "avx");
    add(__builtin_cpu_supports("avx2"), "avx2");
    add(__builtin_cpu_supports("fma"), "fma");
    add(__builtin_cpu_supports("avx512f"), "avx512f");
    add(__builtin_cpu_supports("avx512vl"), "avx512vl");  // the direct convs' 32-register blocks
    return s;
  }();
  return features.c_str();
#elif defined(__aarch64__)
  return "asimd";  // Advanced SIMD (NEON): architectural on AArch64
#else
  return "";
#endif
}

}  // namespace c3::cpu
