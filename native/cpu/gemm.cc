// Single-precision GEMM. gemm_reference is the plain triple loop; gemm is the fast path, laid out
// like BLIS/GotoBLAS: C is walked in NC-column and KC-deep blocks, op(B) is packed into NR-wide
// panels (shared by all threads), op(A) into MR-tall panels (per thread), and a register-tiled
// MR x NR micro-kernel written as plain loops over compile-time sizes, which g++ -O3 unrolls
// and vectorises. Threads split each block's MC x NR-panel tiles between them. gemm_strided is
// the same on sub-matrices (row strides lda, ldb, ldc), for conv2d's row bands.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

namespace {

// Micro-tile: 6 x 8 floats is 12 SSE accumulators, leaving registers for one row of B and a
// broadcast of A (x86-64 has 16 vector registers).
constexpr int MR = 6;
constexpr int NR = 8;
// Blocks: a KC x NR panel of B (8 KiB) stays in L1, an MC x KC block of A (96 KiB) in L2, a
// KC x NC block of B (2 MiB) in L3.
constexpr int64_t KC = 256;
constexpr int64_t MC = 16 * MR;
constexpr int64_t NC = 256 * NR;
// Below this many multiply-adds a thread hand-off costs more than it saves.
constexpr int64_t kParallelMacs = 1 << 18;

// A strided matrix view: element (i, j) is p[i * rs + j * cs].
struct View {
  const float* p;
  int64_t rs, cs;
  float at(int64_t i, int64_t j) const { return p[i * rs + j * cs]; }
};

// op(X) of a row-major X with row stride ld: X itself, or X^T
View view(bool trans, const float* X, int64_t ld) { return trans ? View{X, 1, ld} : View{X, ld, 1}; }

// Rows [i0, i0+mc) x cols [k0, k0+kc) of op(A) into MR-row panels; panel q holds element
// (q*MR + r, k) at q*MR*kc + k*MR + r. Rows past mc are zero so the micro-kernel needs no edges.
void pack_a(const View& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* out) {
  for (int64_t q = 0; q * MR < mc; ++q) {
    float* dst = out + q * MR * kc;
    int64_t rows = std::min<int64_t>(MR, mc - q * MR);
    const float* src = a.p + (i0 + q * MR) * a.rs + k0 * a.cs;
    if (a.cs == 1) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = src[r * a.rs + k];
    } else {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t r = 0; r < rows; ++r) dst[k * MR + r] = src[r * a.rs + k * a.cs];
    }
    for (int64_t r = rows; r < MR; ++r)
      for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = 0.0f;
  }
}

// Rows [k0, k0+kc) x cols of NR-panels [p0, p1) (from column j0) of op(B); panel q holds
// element (k, q*NR + c) at q*NR*kc + k*NR + c, zero past column n.
void pack_b(const View& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, int64_t p0, int64_t p1, float* out) {
  if (b.cs == 1) {
    // rows of B are contiguous: read each row once, left to right, dealing it out to the panels
    const int64_t full_end = std::min(p1, n / NR);
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = b.p + (k0 + k) * b.rs + j0;
      for (int64_t q = p0; q < full_end; ++q) {
        float* dst = out + q * NR * kc + k * NR;
        for (int c = 0; c < NR; ++c) dst[c] = src[q * NR + c];
      }
      for (int64_t q = std::max(p0, full_end); q < p1; ++q) {
        float* dst = out + q * NR * kc + k * NR;
        const int64_t cols = n - q * NR;
        for (int64_t c = 0; c < NR; ++c) dst[c] = c < cols ? src[q * NR + c] : 0.0f;
      }
    }
    return;
  }
  for (int64_t q = p0; q < p1; ++q) {
    float* dst = out + q * NR * kc;
    int64_t cols = std::min<int64_t>(NR, n - q * NR);
    const float* src = b.p + k0 * b.rs + (j0 + q * NR) * b.cs;
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = src[k * b.rs + c * b.cs];
    for (int64_t c = cols; c < NR; ++c)
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = 0.0f;
  }
}

// acc = sum over k of a[k] (MR column) times b[k] (NR row). Fixed trip counts let the compiler
// keep acc in registers and vectorise along NR.
inline void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict out) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < MR; ++r) {
      const float ar = a[r];
      for (int c = 0; c < NR; ++c) acc[r][c] += ar * b[c];
    }
    a += MR;
    b += NR;
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) out[r * NR + c] = acc[r][c];
}

// C tile (rows x cols, row stride ldc) = alpha * acc + beta * C; beta == 0 never reads C.
inline void store_tile(const float* acc, int64_t rows, int64_t cols, float alpha, float beta, float* C, int64_t ldc) {
  for (int64_t r = 0; r < rows; ++r) {
    float* c = C + r * ldc;
    const float* t = acc + r * NR;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < cols; ++j) c[j] = alpha * t[j];
    } else if (beta == 1.0f) {
      for (int64_t j = 0; j < cols; ++j) c[j] += alpha * t[j];
    } else {
      for (int64_t j = 0; j < cols; ++j) c[j] = alpha * t[j] + beta * c[j];
    }
  }
}

// C = beta * C (beta == 0 writes zeros, whatever C held)
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

std::vector<float>& packed_b_buffer() {
  thread_local std::vector<float> buf;
  return buf;
}

std::vector<float>& packed_a_buffer() {
  thread_local std::vector<float> buf;
  return buf;
}

}  // namespace

// gemm with row strides (lda, ldb, ldc >= the rows' lengths) for sub-matrices; conv2d.cc uses it.
// Not in kernels.h (owned elsewhere), so conv2d.cc repeats this declaration.
void gemm_strided(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    const float* B, float beta, float* C) {
  View a = view(trans_a, A, trans_a ? M : K), b = view(trans_b, B, trans_b ? K : N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(a.at(i, k)) * b.at(k, j);
      float prev = beta == 0.0f ? 0.0f : beta * C[i * N + j];
      C[i * N + j] = static_cast<float>(alpha * s) + prev;
    }
}

void gemm_strided(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const View a = view(trans_a, A, lda), b = view(trans_b, B, ldb);
  const bool threaded = M * N * K >= kParallelMacs && num_threads() > 1;
  const int threads = threaded ? num_threads() : 1;
  const int64_t m_blocks = (M + MC - 1) / MC;
  std::vector<float>& bp = packed_b_buffer();

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t n_panels = (nc + NR - 1) / NR;
    // enough tiles for every thread to get a few, so uneven tiles still balance
    const int64_t n_groups = std::min<int64_t>(n_panels, std::max<int64_t>(1, (4 * threads + m_blocks - 1) / m_blocks));
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const float beta_k = pc == 0 ? beta : 1.0f;
      if (bp.size() < static_cast<size_t>(n_panels * NR * kc)) bp.resize(n_panels * NR * kc);
      float* bpp = bp.data();

      auto pack = [&](int64_t p0, int64_t p1) { pack_b(b, pc, kc, jc, nc, p0, p1, bpp); };
      if (threaded) parallel_for(n_panels, 16, pack);
      else pack(0, n_panels);

      // tile t covers A block t / n_groups and the t % n_groups-th share of the B panels
      auto tiles = [&](int64_t t0, int64_t t1) {
        std::vector<float>& ap = packed_a_buffer();
        if (ap.size() < static_cast<size_t>(MC * kc)) ap.resize(MC * kc);
        float* app = ap.data();
        int64_t packed_block = -1;
        float acc[MR * NR];
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t mb = t / n_groups, g = t % n_groups;
          const int64_t ic = mb * MC, mc = std::min(MC, M - ic);
          if (mb != packed_block) {
            pack_a(a, ic, mc, pc, kc, app);
            packed_block = mb;
          }
          const int64_t q0 = n_panels * g / n_groups, q1 = n_panels * (g + 1) / n_groups;
          for (int64_t q = q0; q < q1; ++q) {
            const int64_t j = jc + q * NR, cols = std::min<int64_t>(NR, N - j);
            const float* bq = bpp + q * NR * kc;
            for (int64_t r0 = 0; r0 < mc; r0 += MR) {
              micro_kernel(kc, app + r0 * kc, bq, acc);
              store_tile(acc, std::min<int64_t>(MR, mc - r0), cols, alpha, beta_k, C + (ic + r0) * ldc + j, ldc);
            }
          }
        }
      };
      if (threaded) parallel_for(m_blocks * n_groups, 1, tiles);
      else tiles(0, m_blocks * n_groups);
    }
  }
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
          float beta, float* C) {
  gemm_strided(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

}  // namespace c3::cpu
