// torch.optim.Adam (amsgrad off; weight decay is L2, added to the gradient), one fused pass over
// all the parameters: the threads split their elements laid end to end, so a model's many small
// parameters share one fork and join instead of running one by one.
#include <algorithm>
#include <vector>

#include "../core/adam.h"
#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

namespace {

// Vectorised by the compiler (IEEE sqrt and division lane by lane, so the bits are the scalar
// loop's): the weight-decay branch is a template parameter, not control flow in the loop, and
// sqrt sets no errno (-fno-math-errno). Scalar, the divisions and square root made the step
// compute-bound at half the copy bandwidth.
template <bool kDecay>
void adam_range(const AdamTensor& t, const AdamScalars& s0, int64_t b, int64_t e) {
  float* __restrict param = t.param;
  const float* __restrict grad = t.grad;
  float* __restrict m = t.m;
  float* __restrict v = t.v;
  const AdamScalars s = s0;
  for (int64_t i = b; i < e; ++i) {
    const float g = kDecay ? grad[i] + s.weight_decay * param[i] : grad[i];
    const float mi = s.beta1 * m[i] + s.one_m_b1 * g;
    const float vi = s.beta2 * v[i] + s.one_m_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;
    param[i] -= s.step_size * (mi / denom);
  }
}

}  // namespace

void adam_step(const AdamTensor* ts, size_t count, double lr, double beta1, double beta2, double eps,
               double weight_decay) {
  if (count == 0) return;
  std::vector<AdamScalars> scalars(count);
  std::vector<int64_t> start(count + 1, 0);  // each tensor's first element in the joined range
  for (size_t k = 0; k < count; ++k) {
    scalars[k] = adam_scalars(lr, beta1, beta2, eps, weight_decay, ts[k].step);
    start[k + 1] = start[k] + static_cast<int64_t>(ts[k].n);
  }
  parallel_for(start[count], 1 << 14, [&](int64_t b, int64_t e) {
    // the tensor holding element b, then each tensor the piece overlaps
    size_t k = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), b) - start.begin()) - 1;
    for (; k < count && start[k] < e; ++k) {
      const int64_t lo = std::max(b, start[k]), hi = std::min(e, start[k + 1]);
      if (lo >= hi) continue;
      if (scalars[k].weight_decay != 0.0f) adam_range<true>(ts[k], scalars[k], lo - start[k], hi - start[k]);
      else adam_range<false>(ts[k], scalars[k], lo - start[k], hi - start[k]);
    }
  });
}

}  // namespace c3::cpu
