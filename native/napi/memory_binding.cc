// Memory statistics, cache control and device synchronisation exported to JS: live tensor bytes and their high-water
// mark, and the device allocators' caches (CPU: cpu/host_alloc.cc;
// CUDA: cuda/allocator.cu when the addon has the CUDA backend).
#include <napi.h>

#include "../core/tensor.h"
#include "../cpu/host_alloc.h"
#include "../cpu/thread_scratch.h"
#include "../cpu/winograd_cache.h"
#include "args.h"
#ifdef C3GAN_HAVE_CUDA
#include "../cuda/cuda.h"
#endif
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define C3GAN_MALLINFO2 1
#endif

namespace c3::napi {

namespace {

void set(Napi::Object o, const char* k, int64_t v) { o.Set(k, Napi::Number::New(o.Env(), double(v))); }

// memoryStats(device): { liveBytes, peakLiveBytes, inUseBytes, cachedBytes, peakInUseBytes,
// systemAllocs, cacheHits, cacheEnabled, weightCacheBytes, scratchBytes, ... } (the allocator's figures are rounded to its size classes;
// mallocBytes, where glibc tells, is the C heap in use outside the cache)
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "memoryStats");
    const c3::Device d = a.device(0, "device");
    report_memory(info.Env());
    Napi::Object o = Napi::Object::New(info.Env());
    set(o, "liveBytes", c3::live_bytes(d));
    set(o, "peakLiveBytes", c3::peak_live_bytes(d));
    if (d == c3::Device::CPU) {
      const c3::cpu::HostMemoryStats s = c3::cpu::host_memory_stats();
      set(o, "inUseBytes", s.in_use_bytes);
      set(o, "cachedBytes", s.cached_bytes);
      set(o, "peakInUseBytes", s.peak_in_use_bytes);
      set(o, "limitBytes", s.limit_bytes);
      set(o, "systemAllocs", s.system_allocs);
      set(o, "systemFrees", s.system_frees);
      set(o, "cacheHits", s.cache_hits);
      o.Set("cacheEnabled", Napi::Boolean::New(info.Env(), s.cache_enabled));
      // the Winograd transformed weights kept between calls (outside the tensor allocator)
      set(o, "weightCacheBytes", c3::cpu::wino::weight_cache_stats().bytes);
      // the kernels' per-thread scratch (kept for each thread's life; also outside the allocator)
      set(o, "scratchBytes", c3::cpu::thread_scratch_bytes());
#ifdef C3GAN_MALLINFO2
      // the C heap outside the cache (kernel scratch, V8 and Node's own), for telling them apart
      const struct mallinfo2 mi = mallinfo2();
      set(o, "mallocBytes", static_cast<int64_t>(mi.uordblks + mi.hblkhd));
#endif
      return o;
    }
#ifdef C3GAN_HAVE_CUDA
    if (c3::cuda_available()) {
      const c3::CudaMemoryStats s = c3::cuda_memory_stats();
      set(o, "inUseBytes", s.in_use_bytes);
      set(o, "cachedBytes", s.cached_bytes);
      set(o, "peakInUseBytes", s.peak_in_use_bytes);
      set(o, "systemAllocs", s.device_allocs);
      set(o, "cacheHits", s.cache_hits);
      set(o, "deviceFreeBytes", s.device_free_bytes);
      set(o, "deviceTotalBytes", s.device_total_bytes);
      o.Set("cacheEnabled", Napi::Boolean::New(info.Env(), true));
    }
#endif
    return o;
  });
}

// resetPeakMemory(device): the high-water marks restart from what is live now (CUDA's
// allocator keeps its own peak since the start)
Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "resetPeakMemory");
    const c3::Device d = a.device(0, "device");
    c3::reset_peak_live_bytes(d);
    if (d == c3::Device::CPU) c3::cpu::host_reset_peak();
    return info.Env().Undefined();
  });
}

// emptyCache(device): cached blocks go back to the system (live tensors are untouched)
Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "emptyCache");
    const c3::Device d = a.device(0, "device");
    if (d == c3::Device::CPU) {
      c3::cpu::host_empty_cache();
      c3::cpu::wino::clear_weight_cache();
    }
#ifdef C3GAN_HAVE_CUDA
    if (d == c3::Device::CUDA && c3::cuda_available()) c3::cuda_empty_cache();
#endif
    return info.Env().Undefined();
  });
}

// synchronize(device): waits until the device has finished the work queued so far (CUDA's
// launches are asynchronous; the CPU's ops return finished). A CUDA error raised by that work
// surfaces here, naming it.
Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "synchronize");
    c3::backend_for(a.device(0, "device")).synchronize();
    return info.Env().Undefined();
  });
}

}  // namespace

void register_memory(Napi::Env env, Napi::Object exports) {
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, ResetPeakMemory, "resetPeakMemory"));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache, "emptyCache"));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
}

}  // namespace c3::napi
