// The part of the CUDA runtime API and of the device built-ins that c3gan's kernels use, run on
// the host. A build with C3GAN_CUDA=EMULATE compiles native/cuda/*.cu as plain C++ with this
// directory first on the include path, so every kernel and the whole CUDA backend (runtime,
// allocator, staging, errors) run on a machine without a GPU: each CUDA thread is a fiber,
// the blocks of a launch run one after another (emu.cc).
//
// What it checks, beyond the results: __syncthreads reached by part of a block or after some
// threads returned, warp shuffles and mma with lanes missing, deadlocks, launch configurations
// the hardware refuses, copies whose pointers are not of the kind the copy names, device memory
// exhaustion (C3GAN_CUDA_EMU_MEMORY), host memory passed to a kernel (kernel_pointers_ok). A
// failure inside a kernel becomes a sticky cudaErrorLaunchFailure whose text says what and
// where, as a device fault would.
// What it cannot see: timing, memory ordering, races between threads (fibers switch only at
// barriers), host pointers inside device data, static shared memory limits.
// C3GAN_CUDA_EMU_KERNELS=skip checks launches without running them (emu.cc skip_kernels): the
// host's own time of a GPU-sized iteration (benchmarks/host-cost.sh).
#pragma once
#ifndef C3GAN_CUDA_EMULATION
#error "native/cuda/emu is for builds with C3GAN_CUDA=EMULATE only"
#endif
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// One block runs at a time, so a function-local static is exactly the block's shared copy.
#define __shared__ static

// ---- vector and launch types ----

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

// ---- runtime API ----

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorECCUncorrectable = 214,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchTimeout = 702,
  cudaErrorContextIsDestroyed = 709,
  cudaErrorAssert = 710,
  cudaErrorHardwareStackError = 714,
  cudaErrorIllegalInstruction = 715,
  cudaErrorMisalignedAddress = 716,
  cudaErrorInvalidAddressSpace = 717,
  cudaErrorInvalidPc = 718,
  cudaErrorLaunchFailure = 719,
  cudaErrorUnknown = 999,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
constexpr unsigned cudaStreamNonBlocking = 0x01;
constexpr unsigned cudaEventDefault = 0x00;
constexpr unsigned cudaEventDisableTiming = 0x02;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int major, minor;
  int multiProcessorCount;
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};
// The opt-in to more than 48 KiB of dynamic shared memory for one kernel (up to the H200's
// 227 KiB per block); launch() then allows it for that kernel.
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
template <class... A>
cudaError_t cudaFuncSetAttribute(void (*func)(A...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t e);

cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s = nullptr);

// ---- the emulator's device side (emu.cc) ----

namespace c3emu {

const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void syncthreads();
// The lanes named in mask meet; each gets the 8 bytes that lane src posted.
uint64_t warp_exchange(unsigned mask, uint64_t mine, int src);
int lane_id();
// The block's dynamic shared memory (filled with 0xff at each block start, so reads of
// unwritten entries show as NaN).
void* dynamic_shared();
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 for the calling lane: d += A B, with the
// fragments posted by the whole warp (PTX ISA fragment layout, mma_fragment.h).
void mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]);

// The address of p (in the block's dynamic shared memory) in the shared window, as
// __cvta_generic_to_shared.
uint32_t shared_address(const void* p);
// wgmma.mma_async.sync.aligned.m64nNk8.f32.tf32.tf32 for the calling thread, both operands in
// shared memory (descriptors: wgmma_layout.h, non-swizzled K-major only): its N/2 accumulators
// d (+)= A B^T, summed in k order like mma_m16n8k8_tf32.
void wgmma_tf32(float* d, int n, uint64_t desc_a, uint64_t desc_b, bool accumulate);

// For the layout probe's own test (layout_probe.cu): the emulated tensor cores as if the hardware
// read a layout otherwise than the PTX ISA says, which the probe must then name. Default: as the
// ISA says (both false), or as C3GAN_CUDA_EMU_TENSOR_CORES lists (mma-rows-swapped,
// wgmma-strides-swapped: a whole program on such a device).
struct TensorCoreReading {
  bool wgmma_strides_swapped = false;  // LBO taken as the row-group stride, SBO as the k-quad one
  bool mma_row_halves_swapped = false;  // mma.sync's rows g and g + 8 exchanged in the accumulators
};
void set_tensor_core_reading(const TensorCoreReading& r);
// C3GAN_CUDA_EMU_KERNELS=skip: launches are checked but no kernel runs (emu.cc)
bool skip_kernels();

// Runs body() as every thread of the grid; a configuration the hardware refuses sets the last
// error (cudaGetLastError) and runs nothing.
// func identifies the kernel (its dynamic shared memory opt-in; null: none).
void launch(const void* func, dim3 grid, dim3 block, size_t smem, void (*run)(const void*), const void* body);
template <class F>
void launch(const void* func, dim3 grid, dim3 block, size_t smem, const F& body) {
  launch(func, grid, block, smem, [](const void* f) { (*static_cast<const F*>(f))(); }, &body);
}
template <class F>
void launch(dim3 grid, dim3 block, size_t smem, const F& body) {
  launch(nullptr, grid, block, smem, body);
}

// For the emulator's own tests: forgets a sticky error, which a real context never does.
void clear_sticky_error();

// The pointers a kernel argument carries: the argument itself when it is a pointer; the members
// p and bias of an operand or output descriptor (gemmop's Linear, ConvFwdX, DenseOut, ...).
template <class T, class = void>
struct has_pointer_p : std::false_type {};
template <class T>
struct has_pointer_p<T, std::void_t<decltype(std::declval<const T&>().p)>>
    : std::is_pointer<std::decay_t<decltype(std::declval<const T&>().p)>> {};
template <class T, class = void>
struct has_pointer_bias : std::false_type {};
template <class T>
struct has_pointer_bias<T, std::void_t<decltype(std::declval<const T&>().bias)>>
    : std::is_pointer<std::decay_t<decltype(std::declval<const T&>().bias)>> {};
struct ArgumentPointers {
  const void* p;
  const void* bias;
};
template <class T>
ArgumentPointers argument_pointers(const T& a) {
  ArgumentPointers out{nullptr, nullptr};
  if constexpr (std::is_pointer<T>::value) out.p = reinterpret_cast<const void*>(a);
  if constexpr (has_pointer_p<T>::value) out.p = reinterpret_cast<const void*>(a.p);
  if constexpr (has_pointer_bias<T>::value) out.bias = reinterpret_cast<const void*>(a.bias);
  return out;
}

// Checks a launch's pointer arguments before it runs: each must be null or inside (or at the
// end of) a cudaMalloc or cudaMallocHost block, what the device can address. Host and device
// share one address space here, so a kernel handed host memory would run; on a GPU it faults.
// A bad one becomes the sticky illegal-address error a GPU gives, naming the argument, and
// false is returned (the launch does not run). Not checked with C3GAN_CUDA_EMU_KERNELS=skip.
bool kernel_pointers_ok(const ArgumentPointers* args, int n);

template <class T>
T shuffle(unsigned mask, T v, int src) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(mask, bits, src);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace c3emu

#define threadIdx (::c3emu::thread_idx())
#define blockIdx (::c3emu::block_idx())
#define blockDim (::c3emu::block_dim())
#define gridDim (::c3emu::grid_dim())
constexpr int warpSize = 32;

inline void __syncthreads() { c3emu::syncthreads(); }

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = c3emu::lane_id(), base = lane & ~(width - 1);
  int src = lane ^ lane_mask;
  if (src >= base + width) src = lane;
  return c3emu::shuffle(mask, v, src);
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  const int lane = c3emu::lane_id(), base = lane & ~(width - 1);
  return c3emu::shuffle(mask, v, base + (src_lane & (width - 1)));
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = c3emu::lane_id(), base = lane & ~(width - 1);
  const int src = lane + static_cast<int>(delta);
  return c3emu::shuffle(mask, v, src < base + width ? src : lane);
}

// Fibers switch only at barriers, so a read-modify-write is already indivisible.
template <class T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}

// One block runs at a time and every write lands at once, so a fence orders nothing more and a
// load that skips L1 is a plain load.
inline void __threadfence() {}
template <class T>
T __ldcg(const T* p) {
  return *p;
}

// Correctly rounded arithmetic (the build turns off floating-point contraction for these files).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline long long __double2ll_rn(double x) { return std::llrint(x); }
inline uint32_t __float_as_uint(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float __uint_as_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline uint32_t __umulhi(uint32_t a, uint32_t b) { return static_cast<uint32_t>((uint64_t(a) * b) >> 32); }
template <class T>
T __ldg(const T* p) {
  return *p;
}

// Device code calls the math library unqualified.
using std::isfinite;
using std::isinf;
using std::isnan;

// The device's integer min/max overloads.
#define C3EMU_MINMAX(T)                                \
  inline T min(T a, T b) { return b < a ? b : a; } \
  inline T max(T a, T b) { return a < b ? b : a; }
C3EMU_MINMAX(int)
C3EMU_MINMAX(unsigned)
C3EMU_MINMAX(long)
C3EMU_MINMAX(unsigned long)
C3EMU_MINMAX(long long)
C3EMU_MINMAX(unsigned long long)
#undef C3EMU_MINMAX
