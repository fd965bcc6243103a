// torch.optim.Adam (amsgrad off; weight decay is L2, added to the gradient), one fused pass.
#include <cmath>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

void adam_step(size_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1, float beta2,
               float eps, float weight_decay, int64_t step) {
  // bias corrections in double, as PyTorch computes them in Python floats
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
  parallel_for(static_cast<int64_t>(n), 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float g = weight_decay != 0.0f ? grad[i] + weight_decay * param[i] : grad[i];
      const float mi = beta1 * m[i] + one_m_b1 * g;
      const float vi = beta2 * v[i] + one_m_b2 * g * g;
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi) / bc2_sqrt + eps;
      param[i] -= step_size * (mi / denom);
    }
  });
}

}  // namespace c3::cpu
