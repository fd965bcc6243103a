// Host-side linear algebra for initialisation (no backend: runs once per parameter).
#pragma once
#include <cstdint>

namespace c3 {

// Overwrites the count vectors of length len at v (vector j at v + j * len, count <= len) with
// their Gram-Schmidt orthonormalisation, in order: the Q of the thin QR of the len x count
// matrix they are the columns of, with a positive diagonal in R (torch.nn.init.orthogonal_'s Q
// after its sign correction). Block Gram-Schmidt with a second projection where needed
// (orthonormal to working precision), in float64, multithreaded (AVX2 loops where the CPU has
// them); the same bits on any thread count.
void orthonormal_vectors(double* v, int64_t count, int64_t len);

// The same for the columns of the row-major m x n matrix a (m >= n).
void orthonormal_columns(double* a, int64_t m, int64_t n);

}  // namespace c3
