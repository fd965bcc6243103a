// The scalars of one Adam step as PyTorch forms them: in Python floats (double), rounded to float
// only where they meet a float tensor (1.0f - 0.999f would be 1.3e-5 off 0.001f), the bias
// corrections from the parameter's own step count. Shared by the CPU and CUDA kernels, so both
// take the same float constants and their steps agree bit for bit.
#pragma once
#include <cmath>
#include <cstdint>

namespace c3 {

struct AdamScalars {
  float step_size;  // lr / (1 - beta1^step)
  float bc2_sqrt;   // sqrt(1 - beta2^step)
  float beta1, beta2, one_m_b1, one_m_b2, eps, weight_decay;
};

inline AdamScalars adam_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  return {static_cast<float>(lr / bc1),        static_cast<float>(std::sqrt(bc2)),
          static_cast<float>(beta1),           static_cast<float>(beta2),
          static_cast<float>(1.0 - beta1),     static_cast<float>(1.0 - beta2),
          static_cast<float>(eps),             static_cast<float>(weight_decay)};
}

}  // namespace c3
