// The CPU backend's caching allocator. Freed blocks are kept per size class and handed out again,
// so a training loop that repeats the same shapes stops asking the system for memory (large
// blocks otherwise come from mmap on every call and page-fault on first touch). The cache never
// lets cached + in-use bytes exceed the high-water mark of in-use bytes by more than 1/2 (a
// training iteration's blocks need up to ~1.3x its in-use peak). A request with no cached block of its own class takes one of
// the smallest cached class up to 1/4 larger. C3GAN_CPU_CACHE=0 (or off/false/no) turns it off: every free
// goes to the system.
#pragma once
#include <cstddef>
#include <cstdint>

namespace c3::cpu {

struct HostMemoryStats {
  int64_t in_use_bytes = 0;       // handed out by alloc and not yet freed (rounded to size classes)
  int64_t cached_bytes = 0;       // freed blocks kept for reuse
  int64_t peak_in_use_bytes = 0;  // high-water mark of in_use_bytes since the last reset_peak
  int64_t limit_bytes = 0;        // in use + cached stays at or below this: 3/2 of the in-use
                                  // high-water mark since empty_cache
  int64_t system_allocs = 0;      // blocks taken from the system (cache misses)
  int64_t system_frees = 0;       // blocks given back (cache off, evictions, empty_cache)
  int64_t cache_hits = 0;         // allocations served from the cache
  bool cache_enabled = true;
};

void* host_alloc(size_t bytes);  // 64-byte aligned; throws OutOfMemory
void host_free(void* p);         // null and unknown pointers are ignored (never throws)

// A kernel's scratch of n floats from the cache, returned when it goes out of scope (where a CPU
// entry composes two kernels through an intermediate the other backend never writes)
class HostFloats {
 public:
  explicit HostFloats(size_t n) : p_(static_cast<float*>(host_alloc(n * sizeof(float)))) {}
  ~HostFloats() { host_free(p_); }
  HostFloats(const HostFloats&) = delete;
  HostFloats& operator=(const HostFloats&) = delete;
  float* get() const { return p_; }

 private:
  float* p_;
};

HostMemoryStats host_memory_stats();
// in_use_bytes + cached_bytes: what the cache holds from the system (cheap; the backend's held_bytes)
int64_t host_held_bytes();
// Returns every cached block to the system; the bound restarts from the bytes in use now.
void host_empty_cache();
// peak_in_use_bytes = in_use_bytes
void host_reset_peak();
// Off empties the cache and sends every later free to the system. The initial state comes
// from C3GAN_CPU_CACHE.
void host_set_cache_enabled(bool on);

// The block size a request gets: multiples of 64 B up to 1 MiB, then 8 classes per power of
// two (at most 12.5% over). Blocks from 1 MiB up are mapped directly from the OS.
size_t host_size_class(size_t bytes);
// How C3GAN_CPU_CACHE reads: unset or anything but 0/off/false/no (any case) means on.
bool host_cache_env_enabled(const char* value);

}  // namespace c3::cpu
