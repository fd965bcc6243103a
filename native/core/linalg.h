// Host-side linear algebra for initialisation (no backend: runs once per parameter).
#pragma once
#include <cstdint>

namespace c3 {

// Overwrites the row-major m x n matrix a (m >= n) with Q of its thin QR factorisation with a
// positive diagonal in R — the Q of torch.nn.init.orthogonal_ after its sign correction.
// Modified Gram-Schmidt on columns, multithreaded; Gaussian inputs are well conditioned enough.
void orthonormal_columns(double* a, int64_t m, int64_t n);

}  // namespace c3
