// torch.optim.Adam (amsgrad off; weight decay is L2, added to the gradient), one fused pass.
#include <cmath>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

void adam_step(size_t n, float* param, const float* grad, float* m, float* v, double lr, double beta1_d,
               double beta2_d, double eps_d, double weight_decay_d, int64_t step) {
  // what PyTorch forms in Python floats (double) and rounds to float only when it meets a float
  // tensor: the bias corrections, lr / bc1, 1 - beta (1.0f - 0.999f would be 1.3e-5 off 0.001f)
  const double bc1 = 1.0 - std::pow(beta1_d, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2_d, static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float beta1 = static_cast<float>(beta1_d), beta2 = static_cast<float>(beta2_d);
  const float one_m_b1 = static_cast<float>(1.0 - beta1_d), one_m_b2 = static_cast<float>(1.0 - beta2_d);
  const float eps = static_cast<float>(eps_d), weight_decay = static_cast<float>(weight_decay_d);
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
