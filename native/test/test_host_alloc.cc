// The CPU caching allocator (cpu/host_alloc.cc): size classes, reuse, the bound on cached bytes,
// the off switch, thread safety, and that tensor accounting (live bytes, their peak) stays exact.
// The cache is process-wide, so every check is on differences from the state at its start.
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../core/tensor.h"
#include "../cpu/host_alloc.h"
#include "harness.h"

namespace {

using c3::cpu::host_alloc;
using c3::cpu::host_free;
using c3::cpu::host_memory_stats;
using c3::cpu::host_size_class;
using c3::cpu::HostMemoryStats;
using c3::test::expect_true;

constexpr size_t MiB = size_t(1) << 20;

bool aligned64(const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; }

void expect_bounded(const std::string& where) {
  const HostMemoryStats s = host_memory_stats();
  expect_true(s.in_use_bytes + s.cached_bytes <= s.limit_bytes,
              where + ": in use " + std::to_string(s.in_use_bytes) + " + cached " + std::to_string(s.cached_bytes) +
                  " exceeds the limit " + std::to_string(s.limit_bytes));
}

}  // namespace

C3_TEST(host_alloc_size_classes) {
  expect_true(host_size_class(0) == 64 && host_size_class(1) == 64 && host_size_class(64) == 64, "small classes");
  expect_true(host_size_class(65) == 128 && host_size_class(MiB) == MiB, "64-byte steps up to 1 MiB");
  expect_true(host_size_class(MiB + 1) == MiB + MiB / 8, "1/8 steps above 1 MiB");
  expect_true(host_size_class(2 * MiB) == 2 * MiB && host_size_class(2 * MiB + 1) == 2 * MiB + MiB / 4,
              "steps double with the power of two");
  size_t prev = 0;
  for (size_t b = 1; b < (size_t(1) << 34); b = b * 5 / 4 + 7) {
    const size_t c = host_size_class(b);
    expect_true(c >= b && c >= prev, "class of " + std::to_string(b) + " covers it and is monotone");
    expect_true(c <= b + b / 8 + 64, "class of " + std::to_string(b) + " wastes at most 1/8");
    expect_true(c % 64 == 0, "classes keep 64-byte alignment");
    prev = c;
  }
}

C3_TEST(host_alloc_reuses_freed_blocks) {
  if (std::string(be.name) != "cpu") return;
  c3::cpu::host_set_cache_enabled(true);
  c3::cpu::host_empty_cache();  // earlier cases' blocks could be evicted on the way
  const HostMemoryStats s0 = host_memory_stats();
  void* big = host_alloc(3 * MiB);
  void* small = host_alloc(1000);
  expect_true(aligned64(big) && aligned64(small), "blocks are 64-byte aligned");
  std::memset(big, 1, 3 * MiB);
  std::memset(small, 2, 1000);
  host_free(big);
  host_free(small);
  const HostMemoryStats s1 = host_memory_stats();
  expect_true(s1.cached_bytes == int64_t(3 * MiB + 1024), "freed blocks are cached");
  expect_true(s1.in_use_bytes == s0.in_use_bytes, "in-use bytes return to the start");
  // what V8 is told (napi/handles.cc): the holdings, cached blocks included
  expect_true(be.held_bytes() == s1.in_use_bytes + s1.cached_bytes, "held_bytes is in use plus cached");
  // a request of the same size class gets the same block back, without the system
  void* big2 = host_alloc(3 * MiB - 100000);
  void* small2 = host_alloc(1020);
  const HostMemoryStats s2 = host_memory_stats();
  expect_true(big2 == big && small2 == small, "the cached blocks are handed out again");
  expect_true(s2.system_allocs == s1.system_allocs, "no system allocation for a cached size class");
  expect_true(s2.cache_hits == s1.cache_hits + 2, "two cache hits");
  expect_true(s2.in_use_bytes == s0.in_use_bytes + int64_t(3 * MiB + 1024), "in use counts whole classes");
  host_free(big2);
  host_free(small2);
  host_free(nullptr);               // ignored
  host_free(reinterpret_cast<void*>(64));  // not ours: ignored
  expect_bounded("after reuse");
}

C3_TEST(host_alloc_bounds_cached_bytes) {
  if (std::string(be.name) != "cpu") return;
  c3::cpu::host_set_cache_enabled(true);
  c3::cpu::host_empty_cache();
  const HostMemoryStats s0 = host_memory_stats();
  expect_true(s0.cached_bytes == 0 && s0.limit_bytes == s0.in_use_bytes + s0.in_use_bytes / 2,
              "empty_cache drops every block and restarts the bound");
  void* a = host_alloc(8 * MiB);
  expect_bounded("after the first block");
  host_free(a);
  expect_true(host_memory_stats().cached_bytes == int64_t(8 * MiB), "the 8 MiB block is cached");
  // a new size class would take the footprint past 3/2 of the high-water mark: the old block goes
  void* b = host_alloc(5 * MiB);
  const HostMemoryStats s1 = host_memory_stats();
  expect_true(s1.cached_bytes == 0, "the cached block was evicted to stay under the bound");
  expect_true(s1.system_frees == s0.system_frees + 1, "one block went back to the system");
  expect_bounded("after the eviction");
  // blocks of 5 and 3 MiB fit under the 8 MiB mark: freeing both keeps both
  void* c = host_alloc(3 * MiB);
  host_free(b);
  host_free(c);
  expect_true(host_memory_stats().cached_bytes == int64_t(8 * MiB), "both blocks are kept");
  void* d = host_alloc(5 * MiB);
  void* e = host_alloc(3 * MiB);
  expect_true((d == b || d == c) && (e == b || e == c) && d != e, "both are reused");
  host_free(d);
  host_free(e);
  expect_bounded("at the end");
  c3::cpu::host_empty_cache();
  expect_true(host_memory_stats().cached_bytes == 0, "empty_cache releases everything");
}

C3_TEST(host_alloc_takes_the_next_class_up) {
  if (std::string(be.name) != "cpu") return;
  c3::cpu::host_set_cache_enabled(true);
  c3::cpu::host_empty_cache();
  const size_t big = host_size_class(9 * MiB);
  void* a = host_alloc(9 * MiB);
  host_free(a);
  // 8 MiB has its own class, 1/8 below 9 MiB's: the cached 9 MiB block serves it
  const HostMemoryStats s0 = host_memory_stats();
  void* b = host_alloc(8 * MiB);
  const HostMemoryStats s1 = host_memory_stats();
  expect_true(b == a && s1.cache_hits == s0.cache_hits + 1 && s1.system_allocs == s0.system_allocs,
              "a block of the next class up is reused");
  expect_true(s1.in_use_bytes == s0.in_use_bytes + int64_t(big) && s1.cached_bytes == 0,
              "and counted at its own size");
  host_free(b);
  expect_true(host_memory_stats().cached_bytes == int64_t(big), "it goes back to the cache at its own size");
  // 4 MiB would waste more than a quarter of it: a new block
  void* c = host_alloc(4 * MiB);
  expect_true(c != a && host_memory_stats().system_allocs == s1.system_allocs + 1, "a much larger block is not taken");
  host_free(c);
  expect_bounded("at the end");
  c3::cpu::host_empty_cache();
}

C3_TEST(host_alloc_off_switch) {
  if (std::string(be.name) != "cpu") return;
  expect_true(c3::cpu::host_cache_env_enabled(nullptr) && c3::cpu::host_cache_env_enabled("1") &&
                  c3::cpu::host_cache_env_enabled(""),
              "unset or other values leave the cache on");
  expect_true(!c3::cpu::host_cache_env_enabled("0") && !c3::cpu::host_cache_env_enabled("OFF") &&
                  !c3::cpu::host_cache_env_enabled("false") && !c3::cpu::host_cache_env_enabled("No"),
              "0/off/false/no turn it off");
  const bool was = host_memory_stats().cache_enabled;
  c3::cpu::host_set_cache_enabled(false);
  const HostMemoryStats s0 = host_memory_stats();
  expect_true(!s0.cache_enabled && s0.cached_bytes == 0, "off empties the cache");
  for (int i = 0; i < 3; ++i) host_free(host_alloc(2 * MiB));
  const HostMemoryStats s1 = host_memory_stats();
  expect_true(s1.cached_bytes == 0, "nothing is cached while off");
  expect_true(s1.system_allocs == s0.system_allocs + 3 && s1.system_frees == s0.system_frees + 3,
              "every allocation and free goes to the system");
  expect_true(s1.cache_hits == s0.cache_hits, "no hits while off");
  c3::cpu::host_set_cache_enabled(was);
}

C3_TEST(host_alloc_tensor_accounting) {
  if (std::string(be.name) != "cpu") return;
  c3::cpu::host_set_cache_enabled(true);
  const c3::Device cpu = c3::Device::CPU;
  const int64_t live0 = c3::live_bytes(cpu);
  const HostMemoryStats s0 = host_memory_stats();
  c3::reset_peak_live_bytes(cpu);
  {
    c3::Tensor a(cpu, {1000, 1001});  // 4,004,000 bytes: the 4 MiB class
    {
      c3::Tensor b(cpu, {7});
      expect_true(c3::live_bytes(cpu) == live0 + 4004000 + 28, "live bytes count exact tensor sizes");
    }
    expect_true(c3::live_bytes(cpu) == live0 + 4004000, "a freed tensor leaves live bytes at once");
    expect_true(host_memory_stats().in_use_bytes == s0.in_use_bytes + int64_t(host_size_class(4004000)),
                "the allocator counts the size class");
  }
  expect_true(c3::live_bytes(cpu) == live0, "live bytes return to the start (cached blocks are not live)");
  expect_true(c3::peak_live_bytes(cpu) == live0 + 4004000 + 28, "the peak is the high-water mark");
  c3::reset_peak_live_bytes(cpu);
  expect_true(c3::peak_live_bytes(cpu) == live0, "reset starts the peak from what is live");
  // the same shape again comes from the cache
  const int64_t misses = host_memory_stats().system_allocs;
  { c3::Tensor a(cpu, {1000, 1001}); }
  expect_true(host_memory_stats().system_allocs == misses, "a repeated shape allocates nothing new");
}

C3_TEST(host_alloc_threads) {
  if (std::string(be.name) != "cpu") return;
  c3::cpu::host_set_cache_enabled(true);
  const int64_t in_use0 = host_memory_stats().in_use_bytes;
  std::vector<std::thread> ts;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([t, &bad] {
      std::vector<std::pair<unsigned char*, size_t>> held;
      for (int i = 0; i < 400; ++i) {
        const size_t n = size_t(64) << ((i * 7 + t) % 16);  // 64 B .. 2 MiB
        auto* p = static_cast<unsigned char*>(host_alloc(n));
        std::memset(p, t + 1, n);
        held.push_back({p, n});
        if (held.size() > 5) {
          auto [q, m] = held.front();
          for (size_t k = 0; k < m; k += 61) bad[t] += q[k] != t + 1;
          host_free(q);
          held.erase(held.begin());
        }
      }
      for (auto [q, m] : held) host_free(q);
    });
  }
  for (auto& th : ts) th.join();
  for (int t = 0; t < 4; ++t) expect_true(bad[t] == 0, "a block was shared between threads");
  expect_true(host_memory_stats().in_use_bytes == in_use0, "in-use bytes return to the start");
  expect_bounded("after the threads");
}
