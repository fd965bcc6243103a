// The blocked GEMM engine behind cpu::gemm and conv2d (BLIS/GotoBLAS layout). The engine owns
// the loops, the cache blocks, the threads and the micro-kernel; the caller supplies its operands
// as packers (so conv2d can pack im2col straight into B's panels, never materialising it) and a
// store for finished tiles (so outputs can be scattered, biased or transposed on the way out).
#pragma once
#include <cstdint>

namespace c3::cpu {

// A register-tiled micro-kernel: acc (mr x nr, row-major) = sum over k < kc of the outer product
// of a[k*mr .. k*mr+mr) (a column of A) and b[k*nr .. k*nr+nr) (a row of B).
struct MicroKernel {
  const char* name;
  int mr, nr;
  void (*run)(int64_t kc, const float* a, const float* b, float* acc);
};

// Plain C++ (whatever SIMD the baseline target has; always available).
const MicroKernel& portable_micro_kernel();
// AVX2 + FMA 6x16 (gemm_avx2.cc); null when the compiler cannot build it or this CPU lacks it.
const MicroKernel* avx2_micro_kernel();
// AVX-512F 6x32 (gemm_avx512.cc); null likewise.
const MicroKernel* avx512_micro_kernel();
// AArch64 NEON 12x8 (gemm_neon.cc); null on other targets (NEON is always there on AArch64).
const MicroKernel* neon_micro_kernel();
// The kernel the engine uses, chosen once at run time: NEON on AArch64, AVX-512 on Intel CPUs
// that have it, AVX2 where the CPU has it, else portable; C3GAN_GEMM_KERNEL=
// portable|avx2|avx512|neon in the environment picks one (when this CPU runs it). Panel widths
// (nr) must stay multiples of 8: the Winograd input transform stores 8 columns of a B panel at
// once (winograd_core.h PanelRow).
const MicroKernel& gemm_micro_kernel();
// For tests and benchmarks: use `k` from now on (not thread-safe against running GEMMs).
void set_gemm_micro_kernel(const MicroKernel& k);

// Operands of C (M x N) = A (M x K) B (K x N). Packers fill panels in the micro-kernel's layout:
//   pack_a: rows [i0, i0+mc) x cols [k0, k0+kc) of A into ceil(mc/mr) panels; panel q holds
//           element (i0 + q*mr + r, k0 + k) at out[q*mr*kc + k*mr + r]; rows past mc are zero.
//   pack_b: rows [k0, k0+kc) x cols [j0, j0+nc) of B into ceil(nc/nr) panels; panel q holds
//           element (k0 + k, j0 + q*nr + c) at out[q*nr*kc + k*nr + c]; cols past nc are zero.
//   store:  acc (rows x cols, row stride ld) is A[i0.., k-block] B[k-block, j0..] for one K block;
//           first is true for the first K block of that tile (k0 == 0), where the store must
//           overwrite (or apply beta) rather than accumulate. Every tile of C gets exactly one
//           first store, K == 0 included (acc is then zeros).
// Calls come from several threads at once, for disjoint tiles of C.
class GemmOperands {
 public:
  virtual ~GemmOperands() = default;
  virtual void pack_a(int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr, float* out) const = 0;
  virtual void pack_b(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* out) const = 0;
  virtual void store(int64_t i0, int64_t j0, int64_t rows, int64_t cols, const float* acc, int64_t ld,
                     bool first) const = 0;
  // Relative cost of packing one element of A and of B. Splitting C over threads repacks A once
  // per column chunk and B once per row chunk; the split is chosen to repack the cheaper one.
  virtual double pack_cost_a() const { return 1.0; }
  virtual double pack_cost_b() const { return 1.0; }
  // Threads split C at column multiples of column_grain(), and over rows only where
  // rows_splittable(): a store that adds into shared outputs (conv2d's fused col2im) keeps the
  // columns of one image, all rows of them, on one thread.
  virtual int64_t column_grain() const { return 1; }
  virtual bool rows_splittable() const { return true; }
};

// Runs the blocked GEMM on the thread pool (serially when small or nested in a parallel_for).
void gemm_run(int64_t M, int64_t N, int64_t K, const GemmOperands& ops);

// gemm on sub-matrices (row strides lda, ldb, ldc >= the rows' lengths), same semantics as
// cpu::gemm: C = alpha op(A) op(B) + beta C, beta == 0 never reads C.
void gemm_strided(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Packing helpers for matrices given as element (i, j) at p[i*rs + j*cs].
void pack_a_strided(const float* p, int64_t rs, int64_t cs, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr,
                    float* out);
void pack_b_strided(const float* p, int64_t rs, int64_t cs, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr,
                    float* out);
// Deals one contiguous row of B (line[0..nc), row k of the block) into the panels of pack_b.
void deal_b_row(const float* line, int64_t k, int64_t kc, int64_t nc, int nr, float* out);
// Writes one contiguous column of B (line[0..kc), column c of the block) into the panels of pack_b.
void deal_b_col(const float* line, int64_t c, int64_t kc, int nr, float* out);

}  // namespace c3::cpu
