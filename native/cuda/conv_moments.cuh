// A conv's per-channel output moments from the tile GEMM's epilogue (tile_row_moments in
// tile_core.cuh): scratch for the row partials of one or more products over the same rows
// (the four stride phases of an up-conv), and their merge into (mean, biased variance) per row.
#pragma once
#include <cuda_runtime.h>

#include "runtime.cuh"

namespace c3::cuda {

class TileMoments {
 public:
  // `groups` products (0: none) of `tiles` column tiles each over `rows` rows
  TileMoments(int groups, int tiles, int rows);
  // the row_moments argument of tile_gemm for product g
  float* group(int g) const;
  // moments (rows) from every group, each product having `cols` columns
  void merge(const char* op, int cols, float2* moments) const;

 private:
  int groups_, tiles_, rows_;
  Scratch part_;
};

}  // namespace c3::cuda
