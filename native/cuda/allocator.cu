// Caching device allocator. Requests are rounded up to size classes (512-byte steps up to 1 MiB,
// then eighths of a power of two, so at most 12.5% is lost), freed blocks go back into a per-class
// cache and cudaMalloc runs only on a miss. All kernels run on one stream, so a block freed by
// the host can be handed out again at once: its next user is ordered after its last one. When
// cudaMalloc runs out of memory the cache is returned to the driver and the call retried once.
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "memory.cuh"
#include "runtime.cuh"
#if defined(C3GAN_CUDA_EMULATION) && defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace c3 {
namespace cuda {

namespace {

constexpr size_t kSmallStep = 512;
constexpr size_t kSmallLimit = size_t(1) << 20;
constexpr size_t kMaxRequest = size_t(1) << 50;  // beyond any device; also keeps rounding from overflowing

size_t size_class(size_t bytes) {
  if (bytes <= kSmallLimit) return bytes == 0 ? kSmallStep : (bytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  int top = 63;
  while (!((bytes >> top) & 1)) --top;
  const size_t step = size_t(1) << (top - 3);
  return (bytes + step - 1) / step * step;
}

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // size class -> cached blocks
  std::unordered_map<void*, size_t> live;             // handed-out block -> its size class
  CudaMemoryStats stats;

  // Caller holds mu.
  void release_all() {
    // cached blocks may still be read by queued kernels; wait for them (errors are reported by
    // whichever call fails next, so they are not thrown from here)
    if (cudaStreamSynchronize(stream()) != cudaSuccess) cudaGetLastError();
    for (auto& kv : free_blocks)
      for (void* p : kv.second) cudaFree(p);
    free_blocks.clear();
    stats.cached_bytes = 0;
    ++stats.cache_releases;
  }
};

Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

std::string device_memory_text() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    return "device memory unknown";
  }
  return std::to_string(free_b) + " of " + std::to_string(total_b) + " bytes free on the device";
}

// The emulated device's memory is host memory: under AddressSanitizer the part of a cached block
// past the request (all of it while the block is free) is poisoned, so a kernel that reads or
// writes past a tensor's end, or into a freed one, is reported where it happens.
void poison_slack(void* p, size_t bytes, size_t cls) {
#if defined(C3GAN_CUDA_EMULATION) && defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(p, bytes);
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + bytes, cls - bytes);
#else
  (void)p, (void)bytes, (void)cls;
#endif
}

}  // namespace

void* device_alloc(size_t bytes) {
  stream();  // throws when no device is usable
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  if (bytes > kMaxRequest)
    throw OutOfMemory("cuda alloc", "could not allocate " + std::to_string(bytes) + " bytes: larger than any device");
  const size_t cls = size_class(bytes);
  auto it = c.free_blocks.find(cls);
  void* p = nullptr;
  if (it != c.free_blocks.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    c.stats.cached_bytes -= static_cast<int64_t>(cls);
    ++c.stats.cache_hits;
  } else {
    cudaError_t e = cudaMalloc(&p, cls);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      c.release_all();
      e = cudaMalloc(&p, cls);
    }
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw OutOfMemory("cuda alloc", "could not allocate " + std::to_string(bytes) + " bytes (size class " +
                                          std::to_string(cls) + ") after releasing the cache: " +
                                          std::to_string(c.stats.in_use_bytes) + " bytes in use by c3gan, " +
                                          device_memory_text());
    }
    check_cuda(e, "alloc");
    ++c.stats.device_allocs;
  }
  poison_slack(p, bytes, cls);
  c.live[p] = cls;
  c.stats.in_use_bytes += static_cast<int64_t>(cls);
  if (c.stats.in_use_bytes > c.stats.peak_in_use_bytes) c.stats.peak_in_use_bytes = c.stats.in_use_bytes;
  return p;
}

void device_free(void* p) {
  if (!p) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  auto it = c.live.find(p);
  if (it == c.live.end()) return;  // not ours: never throw from a destructor path
  const size_t cls = it->second;
  c.live.erase(it);
  poison_slack(p, 0, cls);
  c.free_blocks[cls].push_back(p);
  c.stats.in_use_bytes -= static_cast<int64_t>(cls);
  c.stats.cached_bytes += static_cast<int64_t>(cls);
}

void* alloc(size_t bytes) { return device_alloc(bytes); }
void free(void* p) { device_free(p); }

// asked after every op (napi/handles.cc), so it takes only the lock: no stream, no driver call
int64_t held_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  return c.stats.in_use_bytes + c.stats.cached_bytes;
}

}  // namespace cuda

CudaMemoryStats cuda_memory_stats() {
  cuda::stream();
  cuda::Cache& c = cuda::cache();
  CudaMemoryStats s;
  {
    std::lock_guard<std::mutex> g(c.mu);
    s = c.stats;
  }
  size_t free_b = 0, total_b = 0;
  cuda::check_cuda(cudaMemGetInfo(&free_b, &total_b), "memory_stats");
  s.device_free_bytes = static_cast<int64_t>(free_b);
  s.device_total_bytes = static_cast<int64_t>(total_b);
  return s;
}

void cuda_empty_cache() {
  cuda::stream();
  cuda::Cache& c = cuda::cache();
  std::lock_guard<std::mutex> g(c.mu);
  c.release_all();
}

}  // namespace c3
