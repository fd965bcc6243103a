// The tile GEMM on the device: the CUDA context (thread indices, __syncthreads, mma.sync) for
// the block algorithm of tile_core.cuh, its kernels and the host dispatch (tile shape, TF32 or
// FP32, K split).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "runtime.cuh"
#include "tile_core.cuh"

namespace c3::cuda::tile {

// Host-device only so the host/device template machinery of tile_core.cuh accepts it; the
// bodies exist in device code and in the emulated build (native/cuda/emu) alone.
struct DeviceCtx {
#ifdef __CUDA_ARCH__
  // cp.async (sm_80): 4 bytes global -> shared, zero-filled when !valid (nothing is read then);
  // groups committed in order, wait<N> until at most the N newest groups are in flight
  C3_HD void cp_async4(float* smem, const float* gmem, bool valid) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 4 : 0));
  }
  C3_HD void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
  template <int N>
  C3_HD void cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
  }
  C3_HD int tid() const { return threadIdx.x; }
  C3_HD int bx() const { return blockIdx.x; }
  C3_HD int by() const { return blockIdx.y; }
  C3_HD int bz() const { return blockIdx.z; }
  C3_HD void sync() const { __syncthreads(); }
  // D += A B for one m16n8k8 TF32 tile, fp32 accumulation
  C3_HD void mma(float d[4], const uint32_t a[4], const uint32_t b[2]) const {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#elif defined(C3GAN_CUDA_EMULATION)
  // cp.async as the hardware may order it at the latest: a copy lands when a wait retires its
  // group, so a read of shared memory before the wait sees the stage's old contents (a missing
  // wait or barrier shows as wrong results, as it could on the GPU)
  struct Pending {
    float* dst;
    const float* src;
    bool valid;
    int group;
  };
  std::vector<Pending> pending;
  int open_group = 0;
  void cp_async4(float* smem, const float* gmem, bool valid) { pending.push_back({smem, gmem, valid, open_group}); }
  void cp_commit() { ++open_group; }
  template <int N>
  void cp_wait() {
    const int done = open_group - N;  // groups [0, done) complete
    size_t keep = 0;
    for (const Pending& p : pending) {
      if (p.group < done) *p.dst = p.valid ? *p.src : 0.0f;
      else pending[keep++] = p;
    }
    pending.resize(keep);
  }
  int tid() const { return threadIdx.x; }
  int bx() const { return blockIdx.x; }
  int by() const { return blockIdx.y; }
  int bz() const { return blockIdx.z; }
  void sync() const { __syncthreads(); }
  void mma(float d[4], const uint32_t a[4], const uint32_t b[2]) const { c3emu::mma_m16n8k8_tf32(d, a, b); }
#else
  C3_HD void cp_async4(float*, const float*, bool) {}
  C3_HD void cp_commit() {}
  template <int N>
  C3_HD void cp_wait() {}
  C3_HD int tid() const { return 0; }
  C3_HD int bx() const { return 0; }
  C3_HD int by() const { return 0; }
  C3_HD int bz() const { return 0; }
  C3_HD void sync() const {}
  C3_HD void mma(float*, const uint32_t*, const uint32_t*) const {}
#endif
};

template <class CFG, bool TF32, class OpA, class OpB, class Out>
__global__ void __launch_bounds__(CFG::THREADS)
    tile_gemm_kernel(const OpA a, const OpB b, const Out out, const int K, const int kchunk, float* ws,
                     float* row_moments) {
  __shared__ Shared<CFG, OpA, OpB> sh;
  DeviceCtx ctx;
  tile_block<CFG, TF32>(ctx, sh, a, b, out, K, kchunk, ws, row_moments);
}

// The cp.async pipeline (tile_block_async) in dynamic shared memory: kStages stages are over
// the 48 KiB of static shared memory for the big tile, so its kernels opt in to more.
constexpr int kStages = 3;

template <class CFG, bool TF32, class OpA, class OpB, class Out>
__global__ void __launch_bounds__(CFG::THREADS)
    tile_gemm_async_kernel(const OpA a, const OpB b, const Out out, const int K, const int kchunk, float* ws,
                           float* row_moments) {
  C3_DYNAMIC_SHARED(float4, raw);
  auto& sh = *reinterpret_cast<SharedAsync<CFG, OpA, OpB, kStages>*>(raw);
  DeviceCtx ctx;
  tile_block_async<CFG, TF32, kStages>(ctx, sh, a, b, out, K, kchunk, ws, row_moments);
}

// Whether the tile GEMM runs the cp.async pipeline (cuda_tile(), C3GAN_CUDA_TILE=async; the
// default is the register-staged double buffer until a GPU has timed the two side by side).
inline bool async_tiles() { return tile_pipeline() == CudaTile::Async; }

// The kernel to launch for these operands and its dynamic shared memory (opted into once).
template <class CFG, bool TF32, class OpA, class OpB, class Out>
size_t async_kernel_bytes(const char* op) {
  constexpr size_t bytes = sizeof(SharedAsync<CFG, OpA, OpB, kStages>);
  static const cudaError_t opted =
      bytes > (size_t(48) << 10)
          ? cudaFuncSetAttribute(tile_gemm_async_kernel<CFG, TF32, OpA, OpB, Out>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes))
          : cudaSuccess;
  check_cuda(opted, op);
  return bytes;
}

template <class Out>
__global__ void splitk_reduce_kernel(const float* __restrict__ ws, int splits, int M, int N, const Out out) {
  const int64_t MN = static_cast<int64_t>(M) * N;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < MN; idx += int64_t(gridDim.x) * blockDim.x)
    splitk_reduce_at(ws, splits, M, N, out, idx);
}

template <class CFG, bool TF32, class OpA, class OpB, class Out>
bool run_tiles(const char* op, const OpA& a, const OpB& b, const Out& out, int K, float* row_moments) {
  const int M = a.rows, N = b.rows;
  if (M <= 0 || N <= 0) return false;
  const Plan p = plan_tiles<CFG>(M, N, K, sm_count());
  c3::check(p.tiles_m <= 65535, op, "product has ", M, " rows; the CUDA tile grid allows at most ", 65535 * CFG::BM);
  const dim3 grid(static_cast<unsigned>(p.tiles_n), static_cast<unsigned>(p.tiles_m), static_cast<unsigned>(p.splits));
  const auto run = [&](float* ws, float* moments) {
    if (async_tiles())
      launch(op, tile_gemm_async_kernel<CFG, TF32, OpA, OpB, Out>, grid, CFG::THREADS,
             async_kernel_bytes<CFG, TF32, OpA, OpB, Out>(op), a, b, out, K, p.kchunk, ws, moments);
    else
      launch(op, tile_gemm_kernel<CFG, TF32, OpA, OpB, Out>, grid, CFG::THREADS, 0, a, b, out, K, p.kchunk, ws,
             moments);
  };
  if (p.splits == 1) {
    run(nullptr, row_moments);
    return row_moments != nullptr;
  }
  Scratch ws(static_cast<size_t>(p.splits) * M * N * sizeof(float));
  run(ws.as<float>(), nullptr);
  const int64_t MN = static_cast<int64_t>(M) * N;
  launch(op, splitk_reduce_kernel<Out>, grid_for(MN, 256), 256, 0, static_cast<const float*>(ws.as<float>()),
         p.splits, M, N, out);
  return false;
}

// Columns per tile in both tile shapes: row_moments holds 2 floats per (row, column tile).
constexpr int kTileCols = Big::BN;
static_assert(SmallM::BN == kTileCols, "both tile shapes cut the columns alike");

// out = alpha * A B^T (+ bias, + beta out) for A (M x K), B (N x K) descriptors. With
// row_moments (2 * ceil(N / kTileCols) * M floats), also each tile row's sum and sum of squared
// deviations (tile_row_moments); returns whether it wrote them (not when K is split: the values
// exist only after the split's reduction).
template <class OpA, class OpB, class Out>
bool tile_gemm(const char* op, const OpA& a, const OpB& b, const Out& out, int K, float* row_moments = nullptr) {
  const bool tf32 = math() == CudaMath::TF32;
  if (a.rows <= 32)
    return tf32 ? run_tiles<SmallM, true>(op, a, b, out, K, row_moments)
                : run_tiles<SmallM, false>(op, a, b, out, K, row_moments);
  return tf32 ? run_tiles<Big, true>(op, a, b, out, K, row_moments)
              : run_tiles<Big, false>(op, a, b, out, K, row_moments);
}

}  // namespace c3::cuda::tile
