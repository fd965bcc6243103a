// torch.optim.Adam (amsgrad off, L2 weight decay added to the gradient) over many parameters in
// one launch. The host lays out a table (each parameter's pointers, size and scalars, then every
// parameter's first block as one compact array) in device memory, uploaded through the pinned
// staging like any upload; each block finds its parameter by binary search over the compact
// array (a few cache lines) and grid-strides over that parameter's elements. The scalars
// come from core/adam.h, as on the CPU, and the element math uses _rn intrinsics in the CPU's
// order (sqrt and division are IEEE on both), so the CUDA step equals the CPU step bit for bit.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/adam.h"
#include "adam.cuh"
#include "memory.cuh"
#include "runtime.cuh"
#include "table_grid.cuh"

namespace c3::cuda {

namespace {

struct AdamEntry {
  float* param;
  const float* grad;
  float* m;
  float* v;
  int64_t n;
  AdamScalars s;
};
static_assert(sizeof(AdamEntry) % sizeof(float) == 0, "the table uploads as floats");
static_assert(alignof(AdamEntry) >= alignof(int32_t), "the block starts follow the entries");

constexpr int kThreads = 256;

// starts[k]: parameter k's first block; starts[count]: the grid's block count
__global__ void adam_kernel(const AdamEntry* __restrict__ table, const int32_t* __restrict__ starts, int count) {
  const int32_t block = static_cast<int32_t>(blockIdx.x);
  const int lo = table_entry(starts, count);
  float* __restrict__ param = table[lo].param;
  const float* __restrict__ grad = table[lo].grad;
  float* __restrict__ m = table[lo].m;
  float* __restrict__ v = table[lo].v;
  const int64_t n = table[lo].n;
  const AdamScalars s = table[lo].s;
  const int64_t first = starts[lo], blocks = starts[lo + 1] - first;
  for (int64_t i = (block - first) * kThreads + threadIdx.x; i < n; i += blocks * kThreads) {
    const float p = param[i];
    const float g = s.weight_decay != 0.0f ? __fadd_rn(grad[i], __fmul_rn(s.weight_decay, p)) : grad[i];
    const float mi = __fadd_rn(__fmul_rn(s.beta1, m[i]), __fmul_rn(s.one_m_b1, g));
    const float vi = __fadd_rn(__fmul_rn(s.beta2, v[i]), __fmul_rn(__fmul_rn(s.one_m_b2, g), g));
    m[i] = mi;
    v[i] = vi;
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
    param[i] = __fsub_rn(p, __fmul_rn(s.step_size, __fdiv_rn(mi, denom)));
  }
}

}  // namespace

void adam_step(const AdamTensor* ts, size_t count, double lr, double beta1, double beta2, double eps,
               double weight_decay) {
  std::vector<AdamEntry> table;
  std::vector<int32_t> starts;
  table.reserve(count);
  starts.reserve(count + 1);
  // blocks per parameter: one per kThreads elements, at most a few per SM (grid-stride beyond)
  const int64_t cap = int64_t(sm_count()) * 8;
  int64_t blocks = 0;
  for (size_t k = 0; k < count; ++k) {
    const int64_t n = static_cast<int64_t>(ts[k].n);
    if (n == 0) continue;
    table.push_back({ts[k].param, ts[k].grad, ts[k].m, ts[k].v, n,
                     adam_scalars(lr, beta1, beta2, eps, weight_decay, ts[k].step)});
    starts.push_back(static_cast<int32_t>(blocks));
    blocks += std::min<int64_t>((n + kThreads - 1) / kThreads, cap);
  }
  if (table.empty()) return;
  c3::check(blocks <= kMaxIndex, "adam", "a step over ", blocks, " blocks of parameters (split the parameter list)");
  starts.push_back(static_cast<int32_t>(blocks));
  // one upload: the entries, then the starts
  const size_t entry_bytes = table.size() * sizeof(AdamEntry), start_bytes = starts.size() * sizeof(int32_t);
  std::vector<float> packed((entry_bytes + start_bytes) / sizeof(float));
  std::memcpy(packed.data(), table.data(), entry_bytes);
  std::memcpy(reinterpret_cast<char*>(packed.data()) + entry_bytes, starts.data(), start_bytes);
  Scratch dev_table(packed.size() * sizeof(float));
  upload(dev_table.as<float>(), packed.data(), packed.size());
  const auto* dev_entries = dev_table.as<const AdamEntry>();
  const auto* dev_starts = reinterpret_cast<const int32_t*>(dev_table.as<const char>() + entry_bytes);
  launch("adam", adam_kernel, static_cast<unsigned>(blocks), kThreads, 0, dev_entries, dev_starts,
         static_cast<int>(table.size()));
}

}  // namespace c3::cuda
