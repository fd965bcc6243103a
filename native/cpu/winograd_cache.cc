// The transformed-weight cache (winograd_cache.h).
#include "winograd_cache.h"

#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>

namespace c3::cpu::wino {
namespace {

struct Entry {
  uint64_t key;
  std::vector<float> weights;  // the copy the packed panels were made from
  Packed packed;
  size_t bytes() const { return (weights.size() + packed->size()) * sizeof(float); }
};

struct Cache {
  std::mutex mu;
  std::list<Entry> lru;  // most recently used last
  size_t budget, bytes = 0;
  WeightCacheStats stats;

  Cache() {
    const char* e = std::getenv("C3GAN_WINOGRAD_CACHE_MB");
    const long mb = e ? std::strtol(e, nullptr, 10) : 512;
    budget = size_t(mb < 0 ? 0 : mb) << 20;
  }

  void trim() {
    while (bytes > budget && !lru.empty()) {
      bytes -= lru.front().bytes();
      lru.pop_front();
    }
    stats.entries = static_cast<int64_t>(lru.size());
    stats.bytes = static_cast<int64_t>(bytes);
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: convolutions may run during exit
  return *c;
}

}  // namespace

Packed packed_weights(uint64_t key, const float* w, size_t n, size_t floats, const std::function<void(float*)>& fill) {
  Cache& c = cache();
  std::unique_lock<std::mutex> g(c.mu);
  const size_t need = (n + floats) * sizeof(float);
  if (c.budget < need) {  // off, or too big to keep: this thread's spare, refilled for this call
    ++c.stats.misses;
    g.unlock();
    thread_local Packed spare;
    if (!spare || spare.use_count() != 1 || spare->size() < floats) spare = std::make_shared<Panels>(floats);
    fill(spare->data());
    return spare;
  }
  // a miss refills the entry of this key when there is one (the same weights' place after an
  // optimiser step), reusing its buffers unless a running call still holds the old panels
  Entry e{key, {}, nullptr};
  for (auto it = c.lru.begin(); it != c.lru.end(); ++it) {
    if (it->key != key) continue;
    if (it->weights.size() == n && it->packed->size() == floats &&
        std::memcmp(it->weights.data(), w, n * sizeof(float)) == 0) {
      ++c.stats.hits;
      c.lru.splice(c.lru.end(), c.lru, it);
      return it->packed;
    }
    e = std::move(*it);
    c.bytes -= e.bytes();
    c.lru.erase(it);
    break;
  }
  ++c.stats.misses;
  g.unlock();
  if (!e.packed || e.packed.use_count() != 1 || e.packed->size() != floats)
    e.packed = std::make_shared<Panels>(floats);
  e.weights.assign(w, w + n);
  fill(e.packed->data());
  Packed out = e.packed;
  g.lock();
  c.bytes += e.bytes();
  c.lru.push_back(std::move(e));
  c.trim();
  return out;
}

void set_weight_cache_bytes(size_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  c.budget = bytes;
  c.trim();
}

size_t weight_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  return c.budget;
}

WeightCacheStats weight_cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  return c.stats;
}

void clear_weight_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  c.lru.clear();
  c.bytes = 0;
  c.trim();
}

}  // namespace c3::cpu::wino
