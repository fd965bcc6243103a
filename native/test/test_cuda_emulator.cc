// The CUDA emulator's own checks (builds with C3GAN_CUDA=EMULATE only): kernels that use the
// device built-ins correctly give the right answers, and the mistakes it claims to catch
// (barriers reached by part of a block, shuffles with lanes missing, deadlocks, launch
// configurations the hardware refuses, copies to the wrong kind of memory, exhausted device
// memory) become c3::Errors that say what happened and where.
#ifdef C3GAN_CUDA_EMULATION
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "../cuda/cuda.h"
#include "../cuda/memory.cuh"
#include "../cuda/reduce.cuh"
#include "../cuda/runtime.cuh"
#include "harness.h"

namespace {

using namespace c3;
using namespace c3::test;

// f must throw a c3::Error whose message holds every part; a sticky error is cleared after.
template <class F>
void expect_error(F f, std::initializer_list<const char*> parts, const std::string& what) {
  std::string msg;
  try {
    f();
    cuda::synchronize();
  } catch (const Error& e) {
    msg = e.what();
  }
  c3emu::clear_sticky_error();
  if (msg.empty()) throw Failure(what + ": no error");
  for (const char* p : parts)
    if (msg.find(p) == std::string::npos) throw Failure(what + ": the error does not say '" + p + "': " + msg);
}

// Device buffer of n values of T for these tests.
template <class T>
struct Dev {
  explicit Dev(size_t n) : p(static_cast<T*>(cuda::device_alloc(n * sizeof(T)))), n(n) {}
  ~Dev() { cuda::device_free(p); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    cuda::check_cuda(cudaMemcpyAsync(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost, cuda::stream()), "test");
    cuda::synchronize();
    return h;
  }
  T* p;
  size_t n;
};

bool have_cuda() {
  if (!cuda_available()) std::printf("     note: CUDA emulator unavailable: %s\n", cuda_status());
  return cuda_available();
}

__global__ void block_sums_kernel(int n, double* out) {
  __shared__ double scratch[32];
  double v = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v += i + blockIdx.x;
  v = cuda::block_sum(v, scratch);
  const double m = cuda::block_max(static_cast<double>(threadIdx.x), scratch);
  if (threadIdx.x == 0) out[2 * blockIdx.x] = v, out[2 * blockIdx.x + 1] = m;
}

__global__ void shuffle_kernel(int* out) {
  const int lane = threadIdx.x & 31;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, lane * 10, 3) + 1000 * __shfl_sync(0xffffffffu, lane, 5);
}

__global__ void dynamic_shared_kernel(int* out) {
  C3_DYNAMIC_SHARED(int, s);
  s[blockDim.x - 1 - threadIdx.x] = static_cast<int>(threadIdx.x + 100 * blockIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

// writes the far end of 64 KiB of dynamic shared memory and reads it back
__global__ void opted_shared_kernel(int* out) {
  C3_DYNAMIC_SHARED(int, s);
  s[64 * 1024 / 4 + threadIdx.x] = 64 * 1024 / 4 + static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[64 * 1024 / 4 + threadIdx.x];
}

__global__ void early_return_then_sync(int* out) {
  if (threadIdx.x < 16) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void half_warp_shuffle(int* out) {
  if (threadIdx.x & 1) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 2);
}

__global__ void split_warp(int* out) {
  if (threadIdx.x < 16) __syncthreads();
  else out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}

__global__ void partial_warp_shuffle(int* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1); }

C3_TEST(cuda_emulator_builtins_give_the_device_results) {
  if (!have_cuda()) return;
  {  // block reductions over 3 blocks of 256 threads
    Dev<double> out(6);
    cuda::launch("test", block_sums_kernel, 3, 256, 0, 1000, out.p);
    const std::vector<double> h = out.host();
    for (int b = 0; b < 3; ++b) {
      const double want = 999.0 * 1000.0 / 2 + 1000.0 * b;
      if (h[2 * b] != want || h[2 * b + 1] != 255.0)
        throw Failure("block " + std::to_string(b) + ": sum " + std::to_string(h[2 * b]) + " max " +
                      std::to_string(h[2 * b + 1]));
    }
  }
  {  // shuffles: xor and indexed, two warps
    Dev<int> out(64);
    cuda::launch("test", shuffle_kernel, 1, 64, 0, out.p);
    const std::vector<int> h = out.host();
    for (int t = 0; t < 64; ++t)
      if (h[t] != ((t & 31) ^ 3) * 10 + 5000) throw Failure("shuffle at thread " + std::to_string(t));
  }
  {  // dynamic shared memory, each block its own
    Dev<int> out(2 * 96);
    cuda::launch("test", dynamic_shared_kernel, 2, 96, 96 * sizeof(int), out.p);
    const std::vector<int> h = out.host();
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < 96; ++t)
        if (h[b * 96 + t] != 95 - t + 100 * b) throw Failure("dynamic shared memory at " + std::to_string(t));
  }
}

// an operand descriptor as the gemm kernels take them: a struct whose member p points at data
struct HostOperand {
  const int* p;
  const int* bias = nullptr;
};

__global__ void operand_kernel(int v, const HostOperand a, int* out) {
  if (threadIdx.x == 0) out[0] = v + (a.p != nullptr);
}

C3_TEST(cuda_emulator_reports_device_faults) {
  if (!have_cuda()) return;
  Dev<int> out(64);
  expect_error([&] { cuda::launch("test_barrier", early_return_then_sync, 1, 64, 0, out.p); },
               {"cuda test_barrier", "__syncthreads", "block (0,0,0)", "sticky"}, "partial barrier");
  expect_error([&] { cuda::launch("test_shuffle", half_warp_shuffle, 1, 32, 0, out.p); },
               {"shuffle", "returned"}, "shuffle with lanes gone");
  expect_error([&] { cuda::launch("test_deadlock", split_warp, 1, 32, 0, out.p); }, {"deadlock"}, "deadlock");
  expect_error([&] { cuda::launch("test_partial_warp", partial_warp_shuffle, 1, 40, 0, out.p); },
               {"past the block's last thread"}, "shuffle in a partial warp");
  // a kernel handed host memory, directly or inside an operand descriptor: what a GPU faults on
  std::vector<int> host(64);
  expect_error([&] { cuda::launch("test_host_pointer", shuffle_kernel, 1, 64, 0, host.data()); },
               {"cuda test_host_pointer", "illegal memory access", "kernel argument 0", "not device or pinned memory",
                "sticky"},
               "a host pointer");
  expect_error([&] { cuda::launch("test_host_operand", operand_kernel, 1, 32, 0, 7, HostOperand{host.data()}, out.p); },
               {"cuda test_host_operand", "kernel argument 1"}, "a descriptor holding a host pointer");
  expect_error(
      [&] { cuda::launch("test_host_bias", operand_kernel, 1, 32, 0, 7, HostOperand{out.p, host.data()}, out.p); },
      {"cuda test_host_bias", "kernel argument 1 (its bias)"}, "a descriptor's bias in host memory");
  // a device pointer anywhere in its block or at its end, and null, pass
  cuda::launch("test", operand_kernel, 1, 32, 0, 7, HostOperand{out.p + 64}, out.p + 63);
  cuda::launch("test", operand_kernel, 1, 32, 0, 7, HostOperand{nullptr}, out.p + 1);
  const std::vector<int> got = out.host();
  if (got[63] != 8 || got[1] != 7) throw Failure("kernels with device and null pointer arguments");
  // after the sticky errors were cleared, the device works again
  cuda::launch("test", shuffle_kernel, 1, 64, 0, out.p);
  if (out.host()[0] != 3 * 10 + 5000) throw Failure("kernel after cleared faults");
}

C3_TEST(cuda_emulator_refuses_what_the_runtime_refuses) {
  if (!have_cuda()) return;
  Dev<int> out(64);
  expect_error([&] { cuda::launch("test_config", shuffle_kernel, 1, 2048, 0, out.p); },
               {"cuda test_config", "cudaErrorInvalidConfiguration"}, "2048 threads per block");
  expect_error([&] { cuda::launch("test_smem", dynamic_shared_kernel, 1, 64, 64 * 1024, out.p); },
               {"cuda test_smem", "48 KiB"}, "64 KiB of dynamic shared memory");
  // more than 48 KiB only after the kernel's opt-in, and at most 227 KiB with it
  if (cudaFuncSetAttribute(opted_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024) == cudaSuccess)
    throw Failure("cudaFuncSetAttribute accepted 300 KiB");
  cudaGetLastError();
  if (cudaFuncSetAttribute(opted_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024) != cudaSuccess)
    throw Failure("cudaFuncSetAttribute refused 96 KiB");
  cuda::launch("test_optin", opted_shared_kernel, 1, 64, 96 * 1024, out.p);
  if (out.host()[5] != 64 * 1024 / 4 + 5) throw Failure("a kernel with 96 KiB of opted-in shared memory");
  expect_error([&] { cuda::launch("test_optin", opted_shared_kernel, 1, 64, 100 * 1024, out.p); },
               {"cuda test_optin", "96 KiB this kernel may use"}, "past the opted-in size");
  expect_error([&] { cuda::launch("test_smem", dynamic_shared_kernel, 1, 64, 64 * 1024, out.p); },
               {"cuda test_smem", "48 KiB"}, "another kernel keeps the 48 KiB limit");
  std::vector<float> host(16);
  expect_error([&] { cuda::upload(host.data(), host.data(), 16); }, {"cuda upload", "destination is not inside"},
               "upload to host memory");
  // the allocator hands out 512-byte size classes: reach past the block under out's 256 bytes
  float* f = reinterpret_cast<float*>(out.p);
  expect_error([&] { cuda::copy(f + 120, f, 16); },
               {"cuda copy", "not inside one device allocation"}, "copy past an allocation's end");
  bool oom = false;
  try {
    cuda::device_alloc(size_t(1) << 45);
  } catch (const OutOfMemory& e) {
    oom = std::string(e.what()).find("could not allocate 35184372088832 bytes") != std::string::npos;
  }
  if (!oom) throw Failure("a 32 TiB allocation did not raise OutOfMemory");
  // none of these is sticky: the device still works
  cuda::launch("test", shuffle_kernel, 1, 64, 0, out.p);
  if (out.host()[33] != (1 ^ 3) * 10 + 5000) throw Failure("kernel after refused calls");
}

__global__ void write_one_past(int* out, int n) {
  if (threadIdx.x == 0) out[n] = 1;
}

// Armed only by C3GAN_EMU_EXPECT_ASAN=1 in an AddressSanitizer build (scripts/check-cuda-emulated.sh
// --asan runs it alone and expects the sanitizer's report and exit): a kernel writing one int past
// a 64-int tensor, inside the allocator's 512-byte block, must be caught.
C3_TEST(cuda_emulator_asan_sees_a_kernel_overrun) {
  const char* armed = std::getenv("C3GAN_EMU_EXPECT_ASAN");
  if (!armed || std::strcmp(armed, "1") || !have_cuda()) return;
  Dev<int> out(64);
  cuda::launch("test_overrun", write_one_past, 1, 32, 0, out.p, 64);
  cuda::synchronize();
  throw Failure("the overrun went unreported: is this an AddressSanitizer build?");
}

}  // namespace

#endif  // C3GAN_CUDA_EMULATION
