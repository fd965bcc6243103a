// GEMM on the device: C = alpha op(A) op(B) + beta C, row-major, on the tile kernels of
// tile_gemm.cuh (TF32 tensor cores, or exact FP32 with C3GAN_CUDA_MATH=fp32).
#pragma once
#include <cstdint>

namespace c3::cuda {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
          float beta, float* C);

}  // namespace c3::cuda
