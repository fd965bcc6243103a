// The tensor-core layouts every product of the backend rests on, asked of the device itself:
// mma.sync m16n8k8 (the register and cp.async pipelines) and wgmma m64n128k8 from shared-memory
// descriptors (the wgmma pipeline) each run once on small integer operands, whose products are
// exact whatever the summation order, and are compared with the layouts the kernels assume and
// the emulator implements (emu/mma_fragment.h, emu/wgmma_layout.h). Those were read from the PTX
// ISA; only a GPU says whether the reading is right. Where it is not, the probe says what the
// hardware did instead, from a product that encodes its own row and column (D = row + R col),
// and whether the wgmma product comes out right with the descriptor's two strides swapped, so
// one GPU run is enough to mend the layout.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cuda.h"
#include "emu/wgmma_layout.h"
#include "memory.cuh"
#include "runtime.cuh"
#include "tile_gemm.cuh"

namespace c3::cuda {

namespace {

using tile::SmemCore;

constexpr int kMmaM = 16, kMmaN = 8, kK = 8;  // mma.sync m16n8k8; both instructions take k 8
constexpr int kWgM = 64, kWgN = 128, kWgThreads = 128;
// The wgmma operands' places in dynamic shared memory: spaced so that whichever way round the
// hardware takes the descriptor's two strides, every address it reads lies inside the block's
// shared memory (a read past it would be a sticky fault, not a diagnosis). Taken the other way
// round, B's 16 row groups lie SmemCore<128>::LBO = 2 KiB apart: 31 KiB from its start.
constexpr int kWgOffsetB = 2048;                    // floats (A's 64 x 8 take 512)
constexpr size_t kWgSmemBytes = (2048 + 8192) * 4;  // 40 KiB: B's reach either way, under 48 KiB

// One warp: D (16 x 8) = A (16 x 8, row-major) B (8 x 8, B[k][n]), A and B posted in the PTX ISA's
// fragment layout as emu/mma_fragment.h states it; lane l writes its four accumulators at 4 l.
__global__ void mma_layout_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ d) {
  const int lane = static_cast<int>(threadIdx.x), g = lane >> 2, t = lane & 3;
  const uint32_t fa[4] = {tile::f2u(a[g * kK + t]), tile::f2u(a[(g + 8) * kK + t]), tile::f2u(a[g * kK + t + 4]),
                          tile::f2u(a[(g + 8) * kK + t + 4])};
  const uint32_t fb[2] = {tile::f2u(b[t * kMmaN + g]), tile::f2u(b[(t + 4) * kMmaN + g])};
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  tile::DeviceCtx ctx;
  ctx.mma(acc, fa, fb);
  for (int q = 0; q < 4; ++q) d[lane * 4 + q] = acc[q];
}

// One warpgroup: D (64 x 128) = A (64 x 8) B^T (B: 128 x 8), both row-major in global memory and
// stored into shared memory as the wgmma pipeline stores its slices (SmemCore), then one
// wgmma with the given strides in the descriptors; thread t writes its 64 accumulators at 64 t.
__global__ void __launch_bounds__(kWgThreads)
    wgmma_layout_kernel(const float* __restrict__ a, const float* __restrict__ b, uint32_t lbo_a, uint32_t sbo_a,
                        uint32_t lbo_b, uint32_t sbo_b, float* __restrict__ d) {
#if C3_WGMMA_BUILT
  C3_DYNAMIC_SHARED(float4, raw);
  float* sa = reinterpret_cast<float*>(raw);
  float* sb = sa + kWgOffsetB;
  const int t = static_cast<int>(threadIdx.x);
  for (int i = t; i < kWgM * kK; i += kWgThreads) sa[SmemCore<kWgM>::idx(i / kK, i % kK)] = a[i];
  for (int i = t; i < kWgN * kK; i += kWgThreads) sb[SmemCore<kWgN>::idx(i / kK, i % kK)] = b[i];
  tile::DeviceCtx ctx;
  ctx.fence_async_smem();
  ctx.sync();
  float acc[kWgN / 2];
C3_UNROLL
  for (int v = 0; v < kWgN / 2; ++v) acc[v] = 0.0f;
  ctx.wgmma_fence(acc, kWgN / 2);
  ctx.wgmma_m64n128k8(acc, c3emu::encode_desc(ctx.smem_addr(sa), lbo_a, sbo_a),
                      c3emu::encode_desc(ctx.smem_addr(sb), lbo_b, sbo_b));
  ctx.wgmma_commit();
  ctx.wgmma_wait<0>(acc, kWgN / 2);
C3_UNROLL
  for (int v = 0; v < kWgN / 2; ++v) d[t * (kWgN / 2) + v] = acc[v];
#else
  (void)a, (void)b, (void)lbo_a, (void)sbo_a, (void)lbo_b, (void)sbo_b, (void)d;
#endif
}

// the last byte either reading of an operand's descriptor reaches, from the operand's start
template <int BR>
constexpr uint32_t reach(bool swapped) {
  const uint32_t row_stride = swapped ? SmemCore<BR>::LBO : SmemCore<BR>::SBO,
                 k_stride = swapped ? SmemCore<BR>::SBO : SmemCore<BR>::LBO;
  return (BR / 8 - 1) * row_stride + 7 * 16 + (kK / 4 - 1) * k_stride + 16;
}
static_assert(reach<kWgM>(false) <= kWgOffsetB * 4 && reach<kWgM>(true) <= kWgOffsetB * 4, "A's reach meets B");
static_assert(kWgOffsetB * 4 + reach<kWgN>(false) <= kWgSmemBytes && kWgOffsetB * 4 + reach<kWgN>(true) <= kWgSmemBytes,
              "B's reach passes the shared memory");

using Vf = std::vector<float>;

// Operands whose products are exact: integers in [-4, 4] (kK terms of at most 16 each)
Vf small_integers(size_t n, uint32_t seed) {
  Vf v(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = static_cast<float>(static_cast<int>((seed >> 24) % 9u) - 4);
  }
  return v;
}

// The decodable product: A's k 0 holds the row, its k 1 a one; B's k 0 a one, its k 1 the column
// times `rows`, so D[row][col] = row + rows col, exact for these sizes.
void decodable(int rows, int cols, Vf& a, Vf& b, bool b_by_k) {
  a.assign(static_cast<size_t>(rows) * kK, 0.0f);
  b.assign(static_cast<size_t>(cols) * kK, 0.0f);
  for (int i = 0; i < rows; ++i) a[i * kK] = static_cast<float>(i), a[i * kK + 1] = 1.0f;
  for (int j = 0; j < cols; ++j) {
    const float hi = static_cast<float>(rows * j);
    if (b_by_k) b[j] = 1.0f, b[kMmaN + j] = hi;  // B[k][n]
    else b[j * kK] = 1.0f, b[j * kK + 1] = hi;   // B[n][k]
  }
}

// a and b uploaded, launcher(a, b, d) run, d (outputs floats) read back
using Launcher = std::function<void(const float*, const float*, float*)>;
Vf run_on_device(const Launcher& launcher, const Vf& a, const Vf& b, size_t outputs) {
  Scratch da(a.size() * sizeof(float)), db(b.size() * sizeof(float)), dd(outputs * sizeof(float));
  upload(da.as<float>(), a.data(), a.size());
  upload(db.as<float>(), b.data(), b.size());
  launcher(da.as<float>(), db.as<float>(), dd.as<float>());
  Vf d(outputs);
  download(d.data(), dd.as<float>(), outputs);
  return d;
}

// An output register: its thread and index, and the row and column the assumed layout puts there
struct Slot {
  int thread, reg, row, col;
};

template <class Expect>
int mismatches(const std::vector<Slot>& slots, const Vf& got, Expect expect) {
  int bad = 0;
  for (size_t i = 0; i < slots.size(); ++i) bad += got[i] != expect(slots[i].row, slots[i].col);
  return bad;
}

// "thread t register r: (row, col) expected, the hardware's value is (row', col')" for the first
// few slots of the decodable run that disagree
std::string decoded_mismatches(const std::vector<Slot>& slots, const Vf& got, int rows, const char* thread_word) {
  std::ostringstream os;
  int shown = 0, bad = 0;
  for (size_t i = 0; i < slots.size(); ++i) {
    const Slot& s = slots[i];
    const float want = static_cast<float>(s.row + rows * s.col);
    if (got[i] == want) continue;
    ++bad;
    if (shown == 4) continue;
    ++shown;
    os << "; " << thread_word << " " << s.thread << " register " << s.reg << " should hold (row " << s.row
       << ", col " << s.col << ")";
    const float v = got[i];
    if (v >= 0 && v == std::floor(v) && v < static_cast<float>(rows) * 1024)
      os << ", holds (row " << static_cast<int>(v) % rows << ", col " << static_cast<int>(v) / rows << ")";
    else
      os << ", holds " << v << " (no row and column)";
  }
  os << " [" << bad << " of " << slots.size() << " registers differ in the decodable product]";
  return os.str();
}

}  // namespace

std::string probe_mma() {
  std::vector<Slot> slots;
  for (int lane = 0; lane < 32; ++lane)
    for (int q = 0; q < 4; ++q) slots.push_back({lane, q, (lane >> 2) + 8 * (q >> 1), 2 * (lane & 3) + (q & 1)});
  const auto launcher = [](const float* a, const float* b, float* d) {
    launch("layout probe (mma.sync)", mma_layout_kernel, 1, 32, 0, a, b, d);
  };
  const Vf a = small_integers(kMmaM * kK, 1), b = small_integers(kK * kMmaN, 2);
  const Vf d = run_on_device(launcher, a, b, slots.size());
  const int bad = mismatches(slots, d, [&](int r, int c) {
    float s = 0.0f;
    for (int k = 0; k < kK; ++k) s += a[r * kK + k] * b[k * kMmaN + c];
    return s;
  });
  if (bad == 0) return "";
  Vf da, db;
  decodable(kMmaM, kMmaN, da, db, true);
  const Vf dd = run_on_device(launcher, da, db, slots.size());
  return "mma.sync m16n8k8 (tf32): " + std::to_string(bad) + " of 128 outputs differ from the product of the" +
         " fragment layout in emu/mma_fragment.h" + decoded_mismatches(slots, dd, kMmaM, "lane");
}

std::string probe_wgmma() {
  std::vector<Slot> slots;
  for (int t = 0; t < kWgThreads; ++t)
    for (int v = 0; v < kWgN / 2; ++v)
      slots.push_back({t, v, c3emu::wgmma_row(t / 32, t % 32, v), c3emu::wgmma_col(t % 32, v)});
  // the strides as tile_wgmma.cuh encodes them (LBO between k quads, SBO between row groups), or
  // the other way round
  const auto run = [&](const Vf& a, const Vf& b, bool swapped) {
    const uint32_t la = SmemCore<kWgM>::LBO, sa = SmemCore<kWgM>::SBO, lb = SmemCore<kWgN>::LBO,
                   sb = SmemCore<kWgN>::SBO;
    const auto launcher = [&](const float* da, const float* db, float* dd) {
      launch("layout probe (wgmma)", wgmma_layout_kernel, 1, kWgThreads, kWgSmemBytes, da, db, swapped ? sa : la,
             swapped ? la : sa, swapped ? sb : lb, swapped ? lb : sb, dd);
    };
    return run_on_device(launcher, a, b, slots.size());
  };
  const Vf a = small_integers(kWgM * kK, 3), b = small_integers(kWgN * kK, 4);
  const auto product = [&](int r, int c) {
    float s = 0.0f;
    for (int k = 0; k < kK; ++k) s += a[r * kK + k] * b[c * kK + k];
    return s;
  };
  const int bad = mismatches(slots, run(a, b, false), product);
  if (bad == 0) return "";
  std::string msg = "wgmma m64n128k8 (tf32, K-major, no swizzle): " + std::to_string(bad) + " of " +
                    std::to_string(slots.size()) +
                    " accumulators differ from the product of the layouts in emu/wgmma_layout.h";
  if (mismatches(slots, run(a, b, true), product) == 0)
    return msg + "; with the descriptors' LBO and SBO swapped the product is right: the hardware takes LBO as " +
           "the stride between 8-row groups and SBO as the one between k quads, so swap them in SmemCore " +
           "(tile_wgmma.cuh) and in kmajor_at (emu/wgmma_layout.h)";
  Vf da, db;
  decodable(kWgM, kWgN, da, db, false);
  return msg + "; swapping LBO and SBO does not mend it" + decoded_mismatches(slots, run(da, db, false), kWgM, "thread");
}

}  // namespace c3::cuda

namespace c3 {

CudaLayoutProbe cuda_probe_tensor_core_layouts() {
  cuda::stream();  // a usable device, or the reason why not
  CudaLayoutProbe r;
  r.mma = cuda::probe_mma();
  r.wgmma_ran = cuda::tile::wgmma_built();
  if (r.wgmma_ran) r.wgmma = cuda::probe_wgmma();
  return r;
}

}  // namespace c3
