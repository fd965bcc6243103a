// The CUDA backend's own C++ surface beyond the backend table (plain C++, no CUDA headers):
// memory statistics of the caching allocator and the matrix-math mode. Defined only in builds
// with the CUDA backend (C3GAN_HAVE_CUDA); calling them when no device is usable throws c3::Error.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace c3 {

struct CudaMemoryStats {
  int64_t in_use_bytes = 0;       // handed out by alloc and not yet freed (rounded to size classes)
  int64_t cached_bytes = 0;       // freed blocks kept for reuse
  int64_t peak_in_use_bytes = 0;  // high-water mark of in_use_bytes
  int64_t device_allocs = 0;      // cudaMalloc calls (cache misses)
  int64_t cache_hits = 0;         // allocations served from the cache
  int64_t cache_releases = 0;     // times the whole cache went back to the driver (OOM retry, empty_cache)
  int64_t device_free_bytes = 0;  // cudaMemGetInfo at the time of the call
  int64_t device_total_bytes = 0;
};

CudaMemoryStats cuda_memory_stats();

// Kernels launched since the process started (every launch, checked or not): with the host
// profile, what an iteration asks of the driver's launch path.
int64_t cuda_kernel_launches();
// Returns every cached block to the driver (waits for the stream first).
void cuda_empty_cache();

// Matrix products (gemm, conv2d) run on TF32 tensor cores by default; FP32 is the exact-float
// path (FFMA). The initial mode comes from the environment: C3GAN_CUDA_MATH=tf32|fp32. cuda_math()
// is the mode chosen; where the device's tensor cores disagree with the kernels' layouts the
// products run otherwise (cuda_tensor_core_fallback).
enum class CudaMath : int { TF32 = 0, FP32 = 1 };
CudaMath cuda_math();
void cuda_set_math(CudaMath m);

// How the tile GEMM stages and multiplies its operands: through registers into a double buffer
// for mma.sync (the default), by cp.async into three stages for mma.sync (the same bits), or
// through registers for Hopper's wgmma (TF32 products on the 128-row tile; sm_90a builds on
// compute capability 9.0 only, the other products as with registers). The initial choice comes
// from the environment: C3GAN_CUDA_TILE=registers|async|wgmma.
enum class CudaTile : int { Registers = 0, Async = 1, Wgmma = 2 };
CudaTile cuda_tile();
void cuda_set_tile(CudaTile t);

// Who runs the plain convolutions (conv2d forward, backward data, backward weight): c3gan's tile
// kernels (the default) or cuDNN, loaded at run time where a library is found (cudnn_api.h), in
// the math mode above; the up-convs and the constant code channels stay on c3gan's kernels. Auto
// times both engines once per pass, shape and math mode (on scratch outputs, at the first call)
// and keeps the faster for the process, as PyTorch's cudnn.benchmark does for its algorithms; it
// is the tile kernels alone where cuDNN does not load, and for a shape cuDNN cannot run. Its
// choices follow timings, so two processes may choose, and round, differently. The initial
// choice comes from the environment: C3GAN_CUDA_CONV=native|cudnn|auto. Choosing cuDNN where it
// cannot be loaded is an error that says why.
enum class CudaConv : int { Native = 0, Cudnn = 1, Auto = 2 };
CudaConv cuda_conv();
void cuda_set_conv(CudaConv c);
// Auto's choices so far, in the order made: the pass ("forward", "forward+moments", "forward+leaky",
// "backward data", "backward data (accumulate)", "backward weight"), the conv ("64x16x128x128 ->
// 32x3x3 s1 p1, tf32"), the engine chosen and both engines' best time of two runs (cudnn_ms < 0:
// cuDNN could not run it, note says why).
struct CudaConvChoice {
  std::string pass, conv;
  bool cudnn = false;
  double native_ms = 0, cudnn_ms = 0;
  std::string note;
};
std::vector<CudaConvChoice> cuda_conv_choices();
// "9.6.0 (/path/libcudnn.so.9)", or "unavailable (<why>)"
std::string cudnn_status();

// The tensor-core layouts the tile kernels assume (read from the PTX ISA; the emulator implements
// the same reading), asked of the device: mma.sync m16n8k8 and, where the device runs sm_90a
// code, wgmma m64n128k8 from shared-memory descriptors, each on exact integer products
// (layout_probe.cu). Empty strings where the device agrees; otherwise what it did instead.
struct CudaLayoutProbe {
  std::string mma;
  bool wgmma_ran = false;  // false: no sm_90a code on this device (wgmma is never used there)
  std::string wgmma;
};
CudaLayoutProbe cuda_probe_tensor_core_layouts();
// The products ask the device the same before the first use of each instruction (once a process)
// and go another way where it disagrees: exact fp32 for mma.sync, the register pipeline for wgmma.
// "" while nothing gave way; else what did and why.
std::string cuda_tensor_core_fallback();
// Forgets those answers, so the next product asks again (tests that change what the emulated
// tensor cores do).
void cuda_recheck_tensor_cores();

}  // namespace c3
