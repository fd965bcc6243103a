// The tile GEMM on the device: the CUDA context (thread indices, __syncthreads, mma.sync) for
// the block algorithm of tile_core.cuh, its kernels and the host dispatch (tile shape, TF32 or
// FP32, K split).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "runtime.cuh"
#include "tile_core.cuh"
#include "tile_wgmma.cuh"

namespace c3::cuda::tile {

// wgmma's calls where no wgmma code is built (device code for other than sm_90a, the host pass):
// the wgmma kernel has no body there (C3_WGMMA_BUILT), but its block code still names them.
struct NoWgmma {
  C3_HD void fence_async_smem() const {}
  C3_HD void wgmma_fence(float*, int) const {}
  C3_HD void wgmma_m64n128k8(float*, uint64_t, uint64_t) const {}
  C3_HD void wgmma_commit() const {}
  template <int N>
  C3_HD void wgmma_wait(float*, int) const {}
};
#if (defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)) || \
    (!defined(__CUDA_ARCH__) && !defined(C3GAN_CUDA_EMULATION))
using WgmmaStubs = NoWgmma;
#else
struct WgmmaStubs {};
#endif

// Host-device only so the host/device template machinery of tile_core.cuh accepts it; the
// bodies exist in device code and in the emulated build (native/cuda/emu) alone.
struct DeviceCtx : WgmmaStubs {
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
  // wgmma (sm_90a only; elsewhere the wgmma kernel has no body and is never launched)
  C3_HD uint32_t smem_addr(const void* p) const { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // generic-proxy stores to shared memory made visible to wgmma's reads (the async proxy)
  C3_HD void fence_async_smem() const { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
  // the accumulators stay in their registers, in order with the asynchronous wgmma around them
  C3_HD static void pin(float* acc, int n) {
    for (int i = 0; i < n; ++i) asm volatile("" : "+f"(acc[i])::"memory");
  }
  C3_HD void wgmma_fence(float* acc, int n) const {
    pin(acc, n);
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  }
  // d += A B^T for the warpgroup's 64 x 128 x 8 product, A and B from shared memory (K-major)
  C3_HD void wgmma_m64n128k8(float* d, uint64_t desc_a, uint64_t desc_b) const {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b));
  }
  C3_HD void wgmma_commit() const { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
  template <int N>
  C3_HD void wgmma_wait(float* acc, int n) const {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
    pin(acc, n);
  }
#endif
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
  // wgmma as the hardware may order it at the latest: the product is formed when a wait retires
  // its group, from shared memory as it is then (an overwrite before the wait, or a read of the
  // accumulators before it, shows as wrong results)
  struct PendingMma {
    float* d;
    uint64_t desc_a, desc_b;
    int group;
  };
  std::vector<PendingMma> mmas;
  int open_mma_group = 0;
  uint32_t smem_addr(const void* p) const { return c3emu::shared_address(p); }
  void fence_async_smem() const {}
  void wgmma_fence(float*, int) const {}
  void wgmma_m64n128k8(float* d, uint64_t desc_a, uint64_t desc_b) {
    mmas.push_back({d, desc_a, desc_b, open_mma_group});
  }
  void wgmma_commit() { ++open_mma_group; }
  template <int N>
  void wgmma_wait(float*, int) {
    const int done = open_mma_group - N;
    size_t keep = 0;
    for (const PendingMma& m : mmas) {
      if (m.group < done) c3emu::wgmma_tf32(m.d, 128, m.desc_a, m.desc_b, true);
      else mmas[keep++] = m;
    }
    mmas.resize(keep);
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
  C3_HD uint32_t smem_addr(const void*) const { return 0; }
  C3_HD int tid() const { return 0; }
  C3_HD int bx() const { return 0; }
  C3_HD int by() const { return 0; }
  C3_HD int bz() const { return 0; }
  C3_HD void sync() const {}
  C3_HD void mma(float*, const uint32_t*, const uint32_t*) const {}
#endif
};

// P products of the same sizes in one launch (conv backward data's stride phases): blockIdx.z =
// phase * splits + split; the descriptors given are phase 0's, the others differ only in their
// PhaseAt. Each phase's K-split partials and moments follow the previous phase's.
template <int P>
struct Phases {
  gemmop::PhaseAt at[P];
  int splits;
  int64_t ws_stride, moments_stride;  // floats per phase
  // at[phase] read with constant indices only: no local copy of the parameter array
  C3_HD gemmop::PhaseAt of(int phase) const {
    gemmop::PhaseAt q = at[0];
C3_UNROLL
    for (int i = 1; i < P; ++i)
      if (phase == i) q = at[i];
    return q;
  }
};

// A block's context with its K split taken from blockIdx.z (the phase is the rest)
struct PhasedCtx : DeviceCtx {
  int split = 0;
  C3_HD int bz() const { return split; }
};

// Block (blockIdx) of a P-phase launch: its split in ctx, its phase's descriptors, partials and
// moments; then run(a, b, out, ws, row_moments).
template <int P, class OpA, class OpB, class Out, class Run>
__device__ __forceinline__ void for_block_phase(PhasedCtx& ctx, const Phases<P>& ps, OpA a, OpB b, Out out, float* ws,
                                                float* row_moments, Run run) {
  const int phase = P == 1 ? 0 : static_cast<int>(blockIdx.z) / ps.splits;
  ctx.split = static_cast<int>(blockIdx.z) - phase * ps.splits;
  if constexpr (P > 1) {
    const gemmop::PhaseAt q = ps.of(phase);
    a.set_phase(q);
    b.set_phase(q);
    out.set_phase(q);
    if (ws) ws += phase * ps.ws_stride;
    if (row_moments) row_moments += phase * ps.moments_stride;
  }
  run(a, b, out, ws, row_moments);
}

template <class CFG, bool TF32, int P, class OpA, class OpB, class Out>
__global__ void __launch_bounds__(CFG::THREADS)
    tile_gemm_kernel(const OpA a, const OpB b, const Out out, const Phases<P> ps, const int K, const int kchunk,
                     float* ws, float* row_moments) {
  __shared__ Shared<CFG, OpA, OpB> sh;
  PhasedCtx ctx;
  for_block_phase(ctx, ps, a, b, out, ws, row_moments, [&](const OpA& pa, const OpB& pb, const Out& po, float* pws,
                                                          float* pm) {
    tile_block<CFG, TF32>(ctx, sh, pa, pb, po, K, kchunk, pws, pm);
  });
}

// The cp.async pipeline (tile_block_async) in dynamic shared memory: kStages stages are over
// the 48 KiB of static shared memory for the big tile, so its kernels opt in to more.
constexpr int kStages = 3;

template <class CFG, bool TF32, int P, class OpA, class OpB, class Out>
__global__ void __launch_bounds__(CFG::THREADS)
    tile_gemm_async_kernel(const OpA a, const OpB b, const Out out, const Phases<P> ps, const int K,
                           const int kchunk, float* ws, float* row_moments) {
  C3_DYNAMIC_SHARED(float4, raw);
  auto& sh = *reinterpret_cast<SharedAsync<CFG, OpA, OpB, kStages>*>(raw);
  PhasedCtx ctx;
  for_block_phase(ctx, ps, a, b, out, ws, row_moments, [&](const OpA& pa, const OpB& pb, const Out& po, float* pws,
                                                          float* pm) {
    tile_block_async<CFG, TF32, kStages>(ctx, sh, pa, pb, po, K, kchunk, pws, pm);
  });
}

// The wgmma pipeline (tile_wgmma.cuh), TF32 on the big tile: Hopper code (sm_90a) only. Built
// for another architecture the kernel has no body, so wgmma_built() asks the device which code
// it runs before the first launch.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(C3GAN_CUDA_EMULATION)
#define C3_WGMMA_BUILT 1
#else
#define C3_WGMMA_BUILT 0
#endif

template <int P, class OpA, class OpB, class Out>
__global__ void __launch_bounds__(Wg::THREADS)
    tile_gemm_wgmma_kernel(const OpA a, const OpB b, const Out out, const Phases<P> ps, const int K,
                           const int kchunk, float* ws, float* row_moments) {
#if C3_WGMMA_BUILT
  C3_DYNAMIC_SHARED(float4, raw);
  auto& sh = *reinterpret_cast<SharedWg<OpA, OpB>*>(raw);
  PhasedCtx ctx;
  for_block_phase(ctx, ps, a, b, out, ws, row_moments, [&](const OpA& pa, const OpB& pb, const Out& po, float* pws,
                                                          float* pm) {
    tile_block_wgmma(ctx, sh, pa, pb, po, K, kchunk, pws, pm);
  });
#endif
}

// Whether the device runs wgmma code of this build (an sm_90a device and an sm_90a build;
// gemm.cu). Asked once; its launch is checked like any other.
bool wgmma_built();

// A kernel's dynamic shared memory, Bytes; over 48 KiB the kernel opts in (once per kernel).
template <auto Kernel, size_t Bytes>
size_t opted_in_bytes(const char* op) {
  static const cudaError_t opted =
      Bytes > (size_t(48) << 10)
          ? cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Bytes))
          : cudaSuccess;
  check_cuda(opted, op);
  return Bytes;
}

template <int P, class Out>
__global__ void splitk_reduce_kernel(const float* __restrict__ ws, int splits, int M, int N, const Out out,
                                     const Phases<P> ps) {
  const int64_t MN = static_cast<int64_t>(M) * N;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < P * MN;
       idx += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (P == 1) {
      splitk_reduce_at(ws, splits, M, N, out, idx);
    } else {
      const int phase = static_cast<int>(idx / MN);
      Out o = out;
      o.set_phase(ps.of(phase));
      splitk_reduce_at(ws + phase * ps.ws_stride, splits, M, N, o, idx - phase * MN);
    }
  }
}

// The products of P phases (P = 1: one product) on tile shape CFG: one launch, and one for the
// K split's reduction when there is a split. Returns whether the moments were written.
template <class CFG, bool TF32, int P, class OpA, class OpB, class Out>
bool run_tiles(const char* op, const OpA& a, const OpB& b, const Out& out, Phases<P> ps, int K, float* row_moments) {
  const int M = a.rows, N = b.rows;
  if (M <= 0 || N <= 0) return false;
  const Plan p = plan_tiles<CFG>(M, N, K, sm_count());
  c3::check(p.tiles_m <= 65535, op, "product has ", M, " rows; the CUDA tile grid allows at most ", 65535 * CFG::BM);
  ps.splits = p.splits;
  ps.ws_stride = static_cast<int64_t>(p.splits) * M * N;
  const dim3 grid(static_cast<unsigned>(p.tiles_n), static_cast<unsigned>(p.tiles_m),
                  static_cast<unsigned>(p.splits * P));
  // the operand pipeline (cuda_tile(), C3GAN_CUDA_TILE): the register-staged double buffer is the
  // default until a GPU has timed the three side by side; wgmma takes only TF32 on the big tile
  const CudaTile pipeline = tile_pipeline();
  const auto run = [&](float* ws, float* moments) {
    if (TF32 && std::is_same<CFG, Big>::value && pipeline == CudaTile::Wgmma) {
      c3::check(wgmma_built(), op,
                "C3GAN_CUDA_TILE=wgmma needs a compute capability 9.0 GPU and the addon built for sm_90a "
                "(CMAKE_CUDA_ARCHITECTURES with 90a-real)");
      launch(op, tile_gemm_wgmma_kernel<P, OpA, OpB, Out>, grid, Wg::THREADS,
             opted_in_bytes<tile_gemm_wgmma_kernel<P, OpA, OpB, Out>, sizeof(SharedWg<OpA, OpB>)>(op), a, b, out, ps,
             K, p.kchunk, ws, moments);
    } else if (pipeline == CudaTile::Async)
      launch(op, tile_gemm_async_kernel<CFG, TF32, P, OpA, OpB, Out>, grid, CFG::THREADS,
             opted_in_bytes<tile_gemm_async_kernel<CFG, TF32, P, OpA, OpB, Out>,
                            sizeof(SharedAsync<CFG, OpA, OpB, kStages>)>(op),
             a, b, out, ps, K, p.kchunk, ws, moments);
    else
      launch(op, tile_gemm_kernel<CFG, TF32, P, OpA, OpB, Out>, grid, CFG::THREADS, 0, a, b, out, ps, K, p.kchunk, ws,
             moments);
  };
  if (p.splits == 1) {
    run(nullptr, row_moments);
    return row_moments != nullptr;
  }
  Scratch ws(static_cast<size_t>(P) * ps.ws_stride * sizeof(float));
  run(ws.as<float>(), nullptr);
  const int64_t MN = static_cast<int64_t>(M) * N;
  launch(op, splitk_reduce_kernel<P, Out>, grid_for(P * MN, 256), 256, 0, static_cast<const float*>(ws.as<float>()),
         p.splits, M, N, out, ps);
  return false;
}

// Columns per tile in both tile shapes: row_moments holds 2 floats per (row, column tile).
constexpr int kTileCols = Big::BN;
static_assert(SmallM::BN == kTileCols, "both tile shapes cut the columns alike");

// out = alpha * A B^T for the P phases of ps.at (a, b, out: phase 0's descriptors, of the same
// sizes as the others'; tile_gemm below for the rest), in one launch; row_moments then holds
// each phase's after the previous one's (ps.moments_stride floats apart).
template <int P, class OpA, class OpB, class Out>
bool tile_gemm_phases(const char* op, const OpA& a, const OpB& b, const Out& out, const Phases<P>& ps, int K,
                      float* row_moments = nullptr) {
  const bool tf32 = math() == CudaMath::TF32;
  if (a.rows <= 32)
    return tf32 ? run_tiles<SmallM, true>(op, a, b, out, ps, K, row_moments)
                : run_tiles<SmallM, false>(op, a, b, out, ps, K, row_moments);
  return tf32 ? run_tiles<Big, true>(op, a, b, out, ps, K, row_moments)
              : run_tiles<Big, false>(op, a, b, out, ps, K, row_moments);
}

// out = alpha * A B^T (+ bias, + beta out) for A (M x K), B (N x K) descriptors. With
// row_moments (2 * ceil(N / kTileCols) * M floats), also each tile row's sum and sum of squared
// deviations (tile_row_moments); returns whether it wrote them (not when K is split: the values
// exist only after the split's reduction).
template <class OpA, class OpB, class Out>
bool tile_gemm(const char* op, const OpA& a, const OpB& b, const Out& out, int K, float* row_moments = nullptr) {
  return tile_gemm_phases(op, a, b, out, Phases<1>{}, K, row_moments);
}

}  // namespace c3::cuda::tile
