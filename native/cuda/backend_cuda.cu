// The CUDA backend table: one function per entry of core/backend.h, each family in its own
// .cu/.cuh pair. Availability (and the reason when absent) comes from runtime.cu's probe.
#include "../core/backend.h"
#include "adam.cuh"
#include "batchnorm.cuh"
#include "bn_glu.cuh"
#include "conv2d.cuh"
#include "conv_const.cuh"
#include "conv_up.cuh"
#include "gemm.cuh"
#include "grid_sample.cuh"
#include "layout.cuh"
#include "memory.cuh"
#include "ntxent.cuh"
#include "pointwise.cuh"
#include "random.cuh"
#include "rows.cuh"

namespace c3 {

const Backend* cuda_backend() {
  static const Backend table = {
      "cuda",
      cuda::alloc, cuda::free, cuda::upload, cuda::download, cuda::copy, cuda::fill, cuda::synchronize, cuda::held_bytes,
      cuda::rand_normal, cuda::rand_uniform,
      cuda::axpy, cuda::sum_into, cuda::affine,
      cuda::gemm,
      cuda::conv2d_forward, cuda::conv2d_forward_leaky, cuda::conv2d_backward_data, cuda::conv2d_backward_data_accumulate,
      cuda::conv2d_backward_weight,
      cuda::conv2d_up_forward, cuda::conv2d_up_backward_data, cuda::conv2d_up_backward_weight,
      cuda::batchnorm_forward_train, cuda::batchnorm_forward_eval, cuda::batchnorm_backward,
      cuda::batchnorm_leaky_backward,
      cuda::glu_forward, cuda::glu_backward,
      cuda::bn_glu_forward, cuda::bn_glu_forward_train, cuda::bn_glu_batchnorm_backward,
      cuda::unary_forward, cuda::unary_backward, cuda::binary_forward, cuda::expand, cuda::sum_to,
      cuda::upsample2x_forward, cuda::upsample2x_backward,
      cuda::copy_block,
      cuda::l2norm_forward, cuda::l2norm_backward,
      cuda::softmax_forward, cuda::softmax_backward,
      cuda::cross_entropy_forward, cuda::cross_entropy_backward,
      cuda::ntxent_forward, cuda::ntxent_backward,
      cuda::affine_grid_forward, cuda::affine_grid_backward,
      cuda::grid_sample_forward, cuda::grid_sample_backward,
      cuda::adam_step,
      cuda::conv2d_code_channels,
  };
  return &table;
}

}  // namespace c3
