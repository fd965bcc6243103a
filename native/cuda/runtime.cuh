// The CUDA runtime layer shared by every kernel file: the one stream of the process, error
// checks that turn CUDA failures into c3::Error (never exit or abort), launch helpers and
// stream-ordered scratch memory from the caching allocator.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "../core/error.h"
#include "cuda.h"

namespace c3::cuda {

// Device 0, initialised on first use; throws c3::Error when no usable device is present.
cudaStream_t stream();
int sm_count();
// One device counter, 0 between kernels: a kernel whose last block finishes the work of all
// (arrives_last, reduce.cuh) counts its blocks in it and resets it. One stream runs one kernel
// at a time, so one counter serves every such kernel.
unsigned* block_arrivals();
// The math mode of the backend's own products: the chosen one (cuda.h cuda_math), but exact fp32
// where the device's mma.sync disagrees with the fragment layout the kernels assume (asked once,
// before the first TF32 product; cuda_tensor_core_fallback says so).
CudaMath math();
// the mode as chosen, for cuDNN's convolutions (their tensor-core layouts are cuDNN's own)
CudaMath chosen_math();
// the tile GEMM's operand staging (cuda.h cuda_tile); the register pipeline where wgmma was
// chosen and the device's wgmma disagrees with the layouts the pipeline assumes (asked likewise)
CudaTile tile_pipeline();
CudaTile chosen_tile();
// layout_probe.cu: "" where the device's instruction agrees with the kernels' layout, else what
// it did instead
std::string probe_mma();
std::string probe_wgmma();
// who runs the plain convolutions (cuda.h cuda_conv); cuDNN only when it is loaded
CudaConv conv_engine();

// Throws c3::Error("cuda <op>", "<name>: <message>") unless e is cudaSuccess. Errors that leave
// the context unusable (illegal address, launch failure, ...) are named sticky in the message
// and every later call reports the first of them.
void check_cuda(cudaError_t e, const char* op);
// Call after each kernel launch: configuration errors surface here, execution errors at the
// next synchronising call.
void check_launch(const char* op);

// Grid size for a grid-stride loop over n items with `threads` per block.
unsigned grid_for(int64_t n, int threads);

// Caching allocator (allocator.cu): device memory that is reused in stream order; free never
// throws and never synchronises.
void* device_alloc(size_t bytes);
void device_free(void* p);

// Stream-ordered scratch: freed on destruction back into the cache. Safe because every kernel
// runs on the one stream, so later users of the block run after the kernels that used it.
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(size_t bytes) : p_(bytes ? device_alloc(bytes) : nullptr) {}
  ~Scratch() { device_free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

// cuda_kernel_launches()'s count (runtime.cu)
extern std::atomic<int64_t> g_kernel_launches;

// kernel<<<grid, block, smem, s>>>(args...), unchecked. The emulated build (C3GAN_CUDA=EMULATE,
// native/cuda/emu) runs the kernel on the host instead, every thread a fiber.
template <class... KArgs, class... Args>
void enqueue(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
  g_kernel_launches.fetch_add(1, std::memory_order_relaxed);
#ifdef C3GAN_CUDA_EMULATION
  (void)s;
  // what a GPU could not dereference (host memory) fails here as it would there
  const c3emu::ArgumentPointers ptrs[] = {{nullptr, nullptr},
                                          c3emu::argument_pointers<std::decay_t<KArgs>>(static_cast<KArgs>(args))...};
  if (!c3emu::kernel_pointers_ok(ptrs + 1, static_cast<int>(sizeof...(KArgs)))) return;
  c3emu::launch(reinterpret_cast<const void*>(kernel), grid, block, smem,
                [&] { kernel(static_cast<KArgs>(args)...); });
#else
  kernel<<<grid, block, smem, s>>>(static_cast<KArgs>(args)...);
#endif
}

// Launches kernel<<<grid, block, smem, stream()>>>(args...) and checks the launch; an empty
// grid is skipped.
template <class... KArgs, class... Args>
void launch(const char* op, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  enqueue(kernel, grid, block, smem, stream(), std::forward<Args>(args)...);
  check_launch(op);
}

// Declares the block's dynamic shared memory as T name[] (the emulator hands out a buffer).
#ifdef C3GAN_CUDA_EMULATION
#define C3_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::c3emu::dynamic_shared())
#else
#define C3_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// Sizes the CUDA kernels index with 32-bit arithmetic; larger tensors are refused clearly.
constexpr int64_t kMaxIndex = (int64_t(1) << 31) - 1;
inline void need_int32(int64_t n, const char* op, const char* what) {
  c3::check(n >= 0 && n <= kMaxIndex, op, what, " has ", n,
        " elements; the CUDA kernels support at most 2^31 - 1 (split the batch)");
}

}  // namespace c3::cuda
