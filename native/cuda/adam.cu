// torch.optim.Adam (amsgrad off, L2 weight decay added to the gradient) over many parameters in
// one launch. The host lays out a table (each parameter's pointers, size, scalars and first
// block) in device memory, uploaded through the pinned staging like any upload; each block finds
// its parameter by binary search and grid-strides over that parameter's elements. The scalars
// come from core/adam.h, as on the CPU, and the element math uses _rn intrinsics in the CPU's
// order (sqrt and division are IEEE on both), so the CUDA step equals the CPU step bit for bit.
#include <algorithm>
#include <vector>

#include "../core/adam.h"
#include "adam.cuh"
#include "memory.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

struct AdamEntry {
  float* param;
  const float* grad;
  float* m;
  float* v;
  int64_t n;
  int64_t first_block;  // the entry after the last holds the grid's block count
  AdamScalars s;
};
static_assert(sizeof(AdamEntry) % sizeof(float) == 0, "the table uploads as floats");

constexpr int kThreads = 256;

__global__ void adam_kernel(const AdamEntry* __restrict__ table, int count) {
  const int64_t block = blockIdx.x;
  int lo = 0, hi = count - 1;  // the last entry whose first_block <= block
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].first_block <= block) lo = mid;
    else hi = mid - 1;
  }
  float* __restrict__ param = table[lo].param;
  const float* __restrict__ grad = table[lo].grad;
  float* __restrict__ m = table[lo].m;
  float* __restrict__ v = table[lo].v;
  const int64_t n = table[lo].n;
  const AdamScalars s = table[lo].s;
  const int64_t first = table[lo].first_block, blocks = table[lo + 1].first_block - first;
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
  table.reserve(count + 1);
  // blocks per parameter: one per kThreads elements, at most a few per SM (grid-stride beyond)
  const int64_t cap = int64_t(sm_count()) * 8;
  int64_t blocks = 0;
  for (size_t k = 0; k < count; ++k) {
    const int64_t n = static_cast<int64_t>(ts[k].n);
    if (n == 0) continue;
    table.push_back({ts[k].param, ts[k].grad, ts[k].m, ts[k].v, n, blocks,
                     adam_scalars(lr, beta1, beta2, eps, weight_decay, ts[k].step)});
    blocks += std::min<int64_t>((n + kThreads - 1) / kThreads, cap);
  }
  if (table.empty()) return;
  c3::check(blocks <= kMaxIndex, "adam", "a step over ", blocks, " blocks of parameters (split the parameter list)");
  const int entries = static_cast<int>(table.size());
  table.push_back({nullptr, nullptr, nullptr, nullptr, 0, blocks, {}});
  Scratch dev_table(table.size() * sizeof(AdamEntry));
  upload(dev_table.as<float>(), reinterpret_cast<const float*>(table.data()), table.size() * sizeof(AdamEntry) / sizeof(float));
  launch("adam", adam_kernel, static_cast<unsigned>(blocks), kThreads, 0, dev_table.as<const AdamEntry>(), entries);
}

}  // namespace c3::cuda
