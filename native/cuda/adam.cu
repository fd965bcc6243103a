// torch.optim.Adam (amsgrad off, L2 weight decay added to the gradient) in one pass. The bias
// corrections are computed on the host in double, as the CPU backend does; the element math
// uses _rn intrinsics in the CPU's order (sqrt and division are IEEE on both), so the CUDA step
// equals the CPU step bit for bit.
#include <cmath>

#include "adam.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

__global__ void adam_kernel(int64_t n, float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                            float* __restrict__ v, float beta1, float beta2, float one_m_b1, float one_m_b2, float eps,
                            float weight_decay, float step_size, float bc2_sqrt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float p = param[i];
    const float g = weight_decay != 0.0f ? __fadd_rn(grad[i], __fmul_rn(weight_decay, p)) : grad[i];
    const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(one_m_b1, g));
    const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(one_m_b2, g), g));
    m[i] = mi;
    v[i] = vi;
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
    param[i] = __fsub_rn(p, __fmul_rn(step_size, __fdiv_rn(mi, denom)));
  }
}

}  // namespace

void adam_step(size_t n, float* param, const float* grad, float* m, float* v, double lr, double beta1, double beta2,
               double eps, double weight_decay, int64_t step) {
  // the same float constants as the CPU step (cpu/adam.cc), formed in double as PyTorch does
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const int64_t count = static_cast<int64_t>(n);
  launch("adam", adam_kernel, grid_for(count, 256), 256, 0, count, param, grad, m, v, static_cast<float>(beta1),
         static_cast<float>(beta2), static_cast<float>(1.0 - beta1), static_cast<float>(1.0 - beta2),
         static_cast<float>(eps), static_cast<float>(weight_decay), step_size, bc2_sqrt);
}

}  // namespace c3::cuda
