// The CPU caching allocator (see host_alloc.h). One mutex guards everything: allocations come
// almost only from the JS thread, and a lock is far cheaper than the kernels between them.
#include "host_alloc.h"

#include <cctype>
#include <cstdlib>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define C3GAN_HOST_MMAP 1
#endif

#include "../core/error.h"

namespace c3::cpu {

namespace {

constexpr size_t kAlign = 64;              // a cache line, and enough for any SIMD width
constexpr size_t kLarge = size_t(1) << 20;  // from here blocks are mapped directly (page aligned)
constexpr size_t kMaxRequest = size_t(1) << 48;

size_t round_up(size_t x, size_t step) { return (x + step - 1) / step * step; }

// System memory for one block of a size class; null on failure.
void* system_alloc(size_t cls) {
#ifdef C3GAN_HOST_MMAP
  if (cls >= kLarge) {
    void* p = mmap(nullptr, cls, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
#endif
  return std::aligned_alloc(kAlign, cls);
}

void system_free(void* p, size_t cls) {
#ifdef C3GAN_HOST_MMAP
  if (cls >= kLarge) {
    munmap(p, cls);
    return;
  }
#endif
  std::free(p);
}

struct Block {
  void* p;
  size_t cls;
};

struct Cache {
  std::mutex mu;
  bool enabled = host_cache_env_enabled(std::getenv("C3GAN_CPU_CACHE"));
  std::unordered_map<void*, size_t> live;  // pointer -> size class, for blocks handed out
  std::list<Block> lru;                     // cached blocks, least recently freed first
  // size class -> its cached blocks in lru, oldest first (reuse takes the newest: warm in cache);
  // ordered, so a request with no block of its own class can take the next class up
  std::map<size_t, std::vector<std::list<Block>::iterator>> by_class;
  int64_t high_water = 0;  // of in_use since the last empty_cache
  HostMemoryStats stats;

  // in_use + cached stays at or below this. The slack over the high-water mark lets the blocks of
  // phases with different shape mixes (a D step, a G step) all stay cached. A training
  // iteration's blocks need 1.13x-1.31x its in-use peak (replayed allocation traces of the 32,
  // 64 and 128 px configs at batch 2-64); below that the cache evicts blocks each iteration
  // that it needs again (with 1/4, 32 px at batch 8 and 16 took 30-90 fresh blocks every
  // iteration). 1/2 leaves a margin, and a workload that needs less never fills it.
  int64_t limit() const { return high_water + high_water / 2; }

  void release(std::list<Block>::iterator it) {
    system_free(it->p, it->cls);
    stats.cached_bytes -= static_cast<int64_t>(it->cls);
    ++stats.system_frees;
    lru.erase(it);
  }

  // the oldest cached block goes back to the system
  void evict_oldest() {
    auto it = lru.begin();
    auto& v = by_class[it->cls];
    v.erase(v.begin());  // the oldest of its class is first
    if (v.empty()) by_class.erase(it->cls);
    release(it);
  }

  void release_all() {
    while (!lru.empty()) release(lru.begin());
    by_class.clear();
  }

  // A cached block of class cls, or failing that of the smallest class up to a quarter larger
  // (a GAN iteration asks for many nearby sizes: without this every shape that changed class
  // was a fresh mmap and its page faults); *got is the block's own class.
  void* take(size_t cls, size_t* got) {
    auto f = by_class.lower_bound(cls);
    if (f == by_class.end() || f->first > cls + cls / 4) return nullptr;
    auto it = f->second.back();
    f->second.pop_back();
    *got = f->first;
    if (f->second.empty()) by_class.erase(f);
    void* p = it->p;
    stats.cached_bytes -= static_cast<int64_t>(*got);
    lru.erase(it);
    return p;
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: storages may be freed during exit
  return *c;
}

}  // namespace

bool host_cache_env_enabled(const char* value) {
  if (!value) return true;
  std::string s(value);
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return !(s == "0" || s == "off" || s == "false" || s == "no");
}

size_t host_size_class(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= kLarge) return round_up(bytes, kAlign);
  int k = 63;  // 2^k < bytes <= 2^(k+1)
  while (!((bytes - 1) >> k)) --k;
  return round_up(bytes, size_t(1) << (k - 3));
}

void* host_alloc(size_t bytes) {
  if (bytes > kMaxRequest) throw OutOfMemory("alloc", "could not allocate " + std::to_string(bytes) + " bytes");
  size_t cls = host_size_class(bytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  size_t got = cls;
  void* p = c.take(cls, &got);
  cls = got;
  const int64_t after = c.stats.in_use_bytes + static_cast<int64_t>(cls);
  if (p) {
    ++c.stats.cache_hits;
  } else {
    // a miss: make room under the bound (which grows only when in-use bytes reach a new peak),
    // least recently freed blocks first
    if (after > c.high_water) c.high_water = after;
    while (!c.lru.empty() && after + c.stats.cached_bytes > c.limit()) c.evict_oldest();
    p = system_alloc(cls);
    if (!p && !c.lru.empty()) {
      c.release_all();
      p = system_alloc(cls);
    }
    if (!p)
      throw OutOfMemory("alloc", "could not allocate " + std::to_string(bytes) + " bytes (" +
                                     std::to_string(c.stats.in_use_bytes) + " bytes in use by c3gan)");
    ++c.stats.system_allocs;
  }
  try {
    c.live.emplace(p, cls);
  } catch (...) {
    system_free(p, cls);
    throw OutOfMemory("alloc", "could not record a block of " + std::to_string(bytes) + " bytes");
  }
  c.stats.in_use_bytes = after;
  if (after > c.stats.peak_in_use_bytes) c.stats.peak_in_use_bytes = after;
  return p;
}

void host_free(void* p) {
  if (!p) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  auto it = c.live.find(p);
  if (it == c.live.end()) return;  // not ours: never throw on a destructor path
  const size_t cls = it->second;
  c.live.erase(it);
  c.stats.in_use_bytes -= static_cast<int64_t>(cls);
  if (!c.enabled) {
    system_free(p, cls);
    ++c.stats.system_frees;
    return;
  }
  try {
    auto& v = c.by_class[cls];
    v.reserve(v.size() + 1);
    c.lru.push_back({p, cls});
    v.push_back(std::prev(c.lru.end()));
    c.stats.cached_bytes += static_cast<int64_t>(cls);
  } catch (...) {
    system_free(p, cls);  // no room to remember it (nothing was recorded): give it back instead
    ++c.stats.system_frees;
  }
}

HostMemoryStats host_memory_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  HostMemoryStats s = c.stats;
  s.limit_bytes = c.limit();
  s.cache_enabled = c.enabled;
  return s;
}

int64_t host_held_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  return c.stats.in_use_bytes + c.stats.cached_bytes;
}

void host_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  c.release_all();
  c.high_water = c.stats.in_use_bytes;
}

void host_reset_peak() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  c.stats.peak_in_use_bytes = c.stats.in_use_bytes;
}

void host_set_cache_enabled(bool on) {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  c.enabled = on;
  if (!on) {
    c.release_all();
    c.high_water = c.stats.in_use_bytes;
  }
}

}  // namespace c3::cpu
