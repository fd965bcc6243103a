// Host memory for the CPU backend (cached: host_alloc.cc) and the simple streaming kernels (fill,
// axpy, sum_into, affine).
#include <cstring>

#include "../core/threadpool.h"
#include "host_alloc.h"
#include "kernels.h"

namespace c3::cpu {

namespace {
constexpr int64_t kGrain = 1 << 15;  // elements per chunk: below this a thread wake-up costs more
}  // namespace

// through the caching allocator (host_alloc.cc): 64-byte aligned, zero bytes still valid
void* alloc(size_t bytes) { return host_alloc(bytes); }

void free(void* p) { host_free(p); }

int64_t held_bytes() { return host_held_bytes(); }

void upload(float* dst, const float* host, size_t n) {
  if (n) std::memcpy(dst, host, n * sizeof(float));
}

void download(float* host, const float* src, size_t n) {
  if (n) std::memcpy(host, src, n * sizeof(float));
}

void copy(float* dst, const float* src, size_t n) {
  if (n && dst != src) std::memmove(dst, src, n * sizeof(float));
}

void fill(float* x, size_t n, float v) {
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = v;
  });
}

void synchronize() {}

void axpy(size_t n, float alpha, const float* x, float* y) {
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] += alpha * x[i];
  });
}

// each dst read and written once; v + s equals axpy's y + 1 * x
void sum_into(const SumInto* ts, size_t count) {
  for (size_t k = 0; k < count; ++k) {
    const SumInto& t = ts[k];
    parallel_for(static_cast<int64_t>(t.n), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float v = t.dst[i];
        for (size_t j = 0; j < t.count; ++j) v += t.srcs[j][i];
        t.dst[i] = v;
      }
    });
  }
}

void affine(size_t n, const float* x, float scale, float shift, float* y) {
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = scale * x[i] + shift;
  });
}

}  // namespace c3::cpu
