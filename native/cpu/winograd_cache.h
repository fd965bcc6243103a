// Transformed weights kept between calls. A D step runs D four times on the same weights (real,
// fake, masked fake, augmented) and a G step twice, so the Winograd weight transform (a^2
// products per kernel, scattered into the GEMMs' A panels) would repeat: on D's 3x3 convs over 4x4
// maps at batch 64 it took ~7% of a 32 px iteration. An entry holds a copy of the weights it was
// made from and is used only while they compare equal (memcmp), so no caller has to say when
// weights change; the pointer and shape only find the entry. Bounded by C3GAN_WINOGRAD_CACHE_MB
// (default 512; 0 turns it off), least recently used first out: the 64 px model's D and G need
// about 300 MB of panels and copies, and a budget below the working set evicts entries every
// step (a fresh transform, and fresh pages, each time).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace c3::cpu::wino {

// One entry's panels: uninitialised floats (the transform writes every one), no zero-fill pass.
struct Panels {
  explicit Panels(size_t n) : v(new float[n]), n(n) {}
  float* data() { return v.get(); }
  const float* data() const { return v.get(); }
  size_t size() const { return n; }
  std::unique_ptr<float[]> v;
  size_t n;
};
using Packed = std::shared_ptr<Panels>;

// The packed weights (`floats` of them) for `key` made from w[0, n): from the cache when an
// entry for key holds a copy equal to w, else made by fill(out) and remembered.
Packed packed_weights(uint64_t key, const float* w, size_t n, size_t floats, const std::function<void(float*)>& fill);

// Mixes the parts of a cache key.
inline uint64_t cache_key(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t p : parts) {
    h ^= p + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ull;
  }
  return h;
}

// For tests: the budget in bytes (0: off), and counters.
void set_weight_cache_bytes(size_t bytes);
size_t weight_cache_bytes();
struct WeightCacheStats {
  int64_t hits = 0, misses = 0, entries = 0, bytes = 0;
};
WeightCacheStats weight_cache_stats();
void clear_weight_cache();

}  // namespace c3::cpu::wino
