// Random fills: element i is a pure function of (key, offset + i), so the split over threads
// cannot change the numbers.
#include "../core/rng.h"
#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

namespace {
constexpr int64_t kGrain = 4096;
}

void rand_normal(float* y, size_t n, uint64_t key, uint64_t offset, float mean, float std) {
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = mean + std * Philox::normal_at(key, offset + static_cast<uint64_t>(i));
  });
}

void rand_uniform(float* y, size_t n, uint64_t key, uint64_t offset, float lo, float hi) {
  const float span = hi - lo;
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = lo + span * Philox::uniform_at(key, offset + static_cast<uint64_t>(i));
  });
}

}  // namespace c3::cpu
