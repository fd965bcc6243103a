// The CPU backend table.
#include "kernels.h"

namespace c3 {

const Backend& cpu_backend() {
  static const Backend table = {
      "cpu",
      cpu::alloc, cpu::free, cpu::upload, cpu::download, cpu::copy, cpu::fill, cpu::synchronize, cpu::held_bytes,
      cpu::rand_normal, cpu::rand_uniform,
      cpu::axpy, cpu::sum_into, cpu::affine,
      cpu::gemm,
      cpu::conv2d_forward, cpu::conv2d_forward_leaky, cpu::conv2d_backward_data, cpu::conv2d_backward_data_accumulate,
      cpu::conv2d_backward_weight,
      cpu::conv2d_up_forward, cpu::conv2d_up_backward_data, cpu::conv2d_up_backward_weight,
      cpu::batchnorm_forward_train, cpu::batchnorm_forward_eval, cpu::batchnorm_backward,
      cpu::batchnorm_leaky_backward,
      cpu::glu_forward, cpu::glu_backward,
      cpu::bn_glu_forward, cpu::bn_glu_forward_train, cpu::bn_glu_batchnorm_backward,
      cpu::unary_forward, cpu::unary_backward, cpu::binary_forward, cpu::expand, cpu::sum_to,
      cpu::upsample2x_forward, cpu::upsample2x_backward,
      cpu::copy_block,
      cpu::l2norm_forward, cpu::l2norm_backward,
      cpu::softmax_forward, cpu::softmax_backward,
      cpu::cross_entropy_forward, cpu::cross_entropy_backward,
      cpu::ntxent_forward, cpu::ntxent_backward,
      cpu::affine_grid_forward, cpu::affine_grid_backward,
      cpu::grid_sample_forward, cpu::grid_sample_backward,
      cpu::adam_step,
      cpu::conv2d_code_channels,
  };
  return table;
}

}  // namespace c3
