// Streaming kernels: fill, axpy, sum_into, affine. Grid-stride loops over 64-bit indices.
// Products and sums use the _rn intrinsics, so no fused multiply-add changes the rounding and the
// results equal the CPU backend's bit for bit.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "memory.cuh"
#include "runtime.cuh"
#include "table_grid.cuh"

namespace c3::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void fill_kernel(float* x, int64_t n, float v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = v;
}

// x and y may alias (y += alpha * y)
__global__ void axpy_kernel(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i]));
}

// One sum of the table: dst += srcs[first], ..., srcs[first + count - 1] (the source pointers
// follow the entries in the uploaded table).
struct SumEntry {
  float* dst;
  int64_t n;
  int32_t first, count;
};
static_assert(sizeof(SumEntry) % sizeof(float) == 0, "the table uploads as floats");

// starts[k]: entry k's first block, starts[entries]: the grid's block count (as adam_kernel)
__global__ void sum_into_kernel(const SumEntry* __restrict__ table, const float* const* __restrict__ srcs,
                                const int32_t* __restrict__ starts, int entries) {
  const int32_t block = static_cast<int32_t>(blockIdx.x);
  const int lo = table_entry(starts, entries);
  const SumEntry e = table[lo];
  const int64_t first = starts[lo], blocks = starts[lo + 1] - first;
  for (int64_t i = (block - first) * kThreads + threadIdx.x; i < e.n; i += blocks * kThreads) {
    float v = e.dst[i];
    for (int j = 0; j < e.count; ++j) v = __fadd_rn(v, srcs[e.first + j][i]);
    e.dst[i] = v;
  }
}

// x and y may be the same buffer (in-place affine), so no __restrict__
__global__ void affine_kernel(int64_t n, const float* x, float scale, float shift, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fadd_rn(__fmul_rn(scale, x[i]), shift);
}

}  // namespace

void fill(float* x, size_t n, float v) {
  if (!n) return;
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if (bits == 0) {  // +0.0f: every byte zero
    check_cuda(cudaMemsetAsync(x, 0, n * sizeof(float), stream()), "fill");
    return;
  }
  const int64_t m = static_cast<int64_t>(n);
  launch("fill", fill_kernel, grid_for(m, kThreads), kThreads, 0, x, m, v);
}

void axpy(size_t n, float alpha, const float* x, float* y) {
  const int64_t m = static_cast<int64_t>(n);
  launch("axpy", axpy_kernel, grid_for(m, kThreads), kThreads, 0, m, alpha, x, y);
}

void sum_into(const SumInto* ts, size_t count) {
  std::vector<SumEntry> table;
  std::vector<const float*> srcs;
  std::vector<int32_t> starts;
  const int64_t cap = int64_t(sm_count()) * 8;  // blocks per entry; grid-stride beyond
  int64_t blocks = 0;
  for (size_t k = 0; k < count; ++k) {
    const int64_t n = static_cast<int64_t>(ts[k].n);
    if (n == 0 || ts[k].count == 0) continue;
    c3::check(srcs.size() + ts[k].count <= size_t(kMaxIndex), "sum_into", "too many sources");
    table.push_back({ts[k].dst, n, static_cast<int32_t>(srcs.size()), static_cast<int32_t>(ts[k].count)});
    srcs.insert(srcs.end(), ts[k].srcs, ts[k].srcs + ts[k].count);
    starts.push_back(static_cast<int32_t>(blocks));
    blocks += std::min<int64_t>((n + kThreads - 1) / kThreads, cap);
  }
  if (table.empty()) return;
  c3::check(blocks <= kMaxIndex, "sum_into", "a sum over ", blocks, " blocks (split the tensor list)");
  starts.push_back(static_cast<int32_t>(blocks));
  // one upload: the entries, the source pointers, then the starts (each part 8-byte aligned)
  const size_t entry_bytes = table.size() * sizeof(SumEntry), src_bytes = srcs.size() * sizeof(const float*),
               start_bytes = starts.size() * sizeof(int32_t);
  std::vector<float> packed((entry_bytes + src_bytes + start_bytes + sizeof(float) - 1) / sizeof(float));
  char* raw = reinterpret_cast<char*>(packed.data());
  std::memcpy(raw, table.data(), entry_bytes);
  std::memcpy(raw + entry_bytes, srcs.data(), src_bytes);
  std::memcpy(raw + entry_bytes + src_bytes, starts.data(), start_bytes);
  Scratch dev(packed.size() * sizeof(float));
  upload(dev.as<float>(), packed.data(), packed.size());
  const char* base = dev.as<const char>();
  launch("sum_into", sum_into_kernel, static_cast<unsigned>(blocks), kThreads, 0,
         reinterpret_cast<const SumEntry*>(base), reinterpret_cast<const float* const*>(base + entry_bytes),
         reinterpret_cast<const int32_t*>(base + entry_bytes + src_bytes), static_cast<int>(table.size()));
}

void affine(size_t n, const float* x, float scale, float shift, float* y) {
  const int64_t m = static_cast<int64_t>(n);
  launch("affine", affine_kernel, grid_for(m, kThreads), kThreads, 0, m, x, scale, shift, y);
}

}  // namespace c3::cuda
