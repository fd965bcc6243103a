// Single-precision GEMM. gemm_reference is the plain triple loop; gemm is the fast path on the
// blocked engine (gemm_kernels.h), laid out like BLIS/GotoBLAS: C is split into chunks, one per
// parallel work item; inside a chunk C is walked in NC-column and KC-deep blocks, a KC x NC block
// of B is packed into NR-wide panels (L3), an MC x KC block of A into MR-tall panels (L2), and
// an MR x NR micro-kernel (AVX2+FMA 6x16 or AVX-512 6x32 where the CPU has it, NEON 12x8 on
// AArch64, chosen at run time) multiplies a panel of A (L1/L2) by a panel of B (L1).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../core/threadpool.h"
#include "gemm_kernels.h"
#include "kernels.h"
#include "thread_scratch.h"

namespace c3::cpu {

namespace {

// Blocks for Zen 1 (32 KiB L1d, 512 KiB L2 per core, 8 MiB L3 per CCX) and similar: a KC x 16
// panel of B (16 KiB) plus a 6 x KC panel of A (6 KiB) stay in L1, an MC x KC block of A
// (144 KiB) in L2, a KC x NC block of B (1 MiB per thread) in L3.
constexpr int64_t KC = 256;
constexpr int64_t MC = 144;
constexpr int64_t NC = 1024;
// Below this many multiply-adds a thread hand-off costs more than it saves.
constexpr int64_t kParallelMacs = 1 << 18;
// Chunks per thread when C is split: a few let the others finish the work of a thread that the
// OS runs late (the machine is often shared); more would repack more.
constexpr int64_t kChunksPerThread = 3;

// ---- portable micro-kernel: 6 x 8, plain loops over compile-time sizes that g++ -O3 keeps in
// registers and vectorises with the baseline SIMD (12 SSE accumulators on x86-64)
constexpr int PMR = 6, PNR = 8;

void portable_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict out) {
  float acc[PMR][PNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < PMR; ++r) {
      const float ar = a[r];
      for (int c = 0; c < PNR; ++c) acc[r][c] += ar * b[c];
    }
    a += PMR;
    b += PNR;
  }
  for (int r = 0; r < PMR; ++r)
    for (int c = 0; c < PNR; ++c) out[r * PNR + c] = acc[r][c];
}

const MicroKernel kPortable = {"portable 6x8", PMR, PNR, portable_kernel};

bool cpu_is_intel() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_is("intel");
#else
  return false;
#endif
}

const MicroKernel* initial_kernel() {
  const char* env = std::getenv("C3GAN_GEMM_KERNEL");
  if (env && std::strcmp(env, "portable") == 0) return &kPortable;
  if (env && std::strcmp(env, "avx2") == 0 && avx2_micro_kernel()) return avx2_micro_kernel();
  if (env && std::strcmp(env, "avx512") == 0 && avx512_micro_kernel()) return avx512_micro_kernel();
  if (env && std::strcmp(env, "neon") == 0 && neon_micro_kernel()) return neon_micro_kernel();
  // NEON is architectural on AArch64 (non-null exactly there)
  if (neon_micro_kernel()) return neon_micro_kernel();
  // AVX-512 where 512-bit FMAs run at full width (Intel's server cores: twice AVX2's rate); AMD's
  // Zen 4 splits them in two, and there the 6x16 AVX2 kernel measured the same with half the
  // column padding on narrow layers
  if (avx512_micro_kernel() && cpu_is_intel()) return avx512_micro_kernel();
  const MicroKernel* k = avx2_micro_kernel();
  return k ? k : &kPortable;
}

const MicroKernel*& active_kernel() {
  static const MicroKernel* k = initial_kernel();
  return k;
}

// Per-thread scratch, 64-byte aligned, grown on demand and kept between calls.
float* thread_scratch(int which, size_t n) {
  thread_local ScratchBuffer bufs[2];
  const uintptr_t p = reinterpret_cast<uintptr_t>(bufs[which].get(n + 16));
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Equal blocks of at most `max` (a multiple of `unit` unless it is the whole extent).
int64_t balanced_block(int64_t extent, int64_t max, int64_t unit) {
  const int64_t blocks = ceil_div(extent, max);
  const int64_t b = ceil_div(ceil_div(extent, blocks), unit) * unit;
  return std::min(b, extent);
}

// One chunk of C: rows [i_lo, i_hi) x cols [j_lo, j_hi), all of K.
void run_chunk(const MicroKernel& mk, const GemmOperands& ops, int64_t K, int64_t i_lo, int64_t i_hi, int64_t j_lo,
               int64_t j_hi) {
  const int mr = mk.mr, nr = mk.nr;
  alignas(64) float acc[16 * 32];  // the largest tile any kernel has (mr * nr <= 512)
  if (K == 0) {
    std::fill(acc, acc + mr * nr, 0.0f);
    for (int64_t i = i_lo; i < i_hi; i += mr)
      for (int64_t j = j_lo; j < j_hi; j += nr)
        ops.store(i, j, std::min<int64_t>(mr, i_hi - i), std::min<int64_t>(nr, j_hi - j), acc, nr, true);
    return;
  }
  const int64_t kc_max = balanced_block(K, KC, 4);
  const int64_t mc_max = balanced_block(i_hi - i_lo, MC, mr);
  const int64_t nc_max = balanced_block(j_hi - j_lo, NC, nr);
  float* bbuf = thread_scratch(0, static_cast<size_t>(ceil_div(nc_max, nr) * nr * kc_max));
  float* abuf = thread_scratch(1, static_cast<size_t>(ceil_div(mc_max, mr) * mr * kc_max));
  for (int64_t jc = j_lo; jc < j_hi; jc += nc_max) {
    const int64_t nc = std::min(nc_max, j_hi - jc);
    const int64_t panels = ceil_div(nc, nr);
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = std::min(kc_max, K - pc);
      ops.pack_b(pc, kc, jc, nc, nr, bbuf);
      for (int64_t ic = i_lo; ic < i_hi; ic += mc_max) {
        const int64_t mc = std::min(mc_max, i_hi - ic);
        ops.pack_a(ic, mc, pc, kc, mr, abuf);
        for (int64_t q = 0; q < panels; ++q) {
          const float* bq = bbuf + q * nr * kc;
          const int64_t cols = std::min<int64_t>(nr, nc - q * nr);
          for (int64_t r0 = 0; r0 < mc; r0 += mr) {
            mk.run(kc, abuf + r0 * kc, bq, acc);
            ops.store(ic + r0, jc + q * nr, std::min<int64_t>(mr, mc - r0), cols, acc, nr, pc == 0);
          }
        }
      }
    }
  }
}

struct Split {
  int64_t nm, nn;
};

// How many row and column chunks: enough for every thread to get a few, choosing the split
// whose repacking (A once per column chunk, B once per row chunk) and imbalance cost least.
Split choose_split(int64_t M, int64_t N, int64_t K, int mr, int64_t nr, int threads, double cost_a, double cost_b,
                   bool split_rows) {
  const double macs = double(M) * double(N) * double(std::max<int64_t>(K, 1));
  if (threads <= 1 || macs < double(kParallelMacs)) return {1, 1};
  const int64_t pm = ceil_div(M, mr), pn = ceil_div(N, nr);  // row panels, column units
  const int64_t max_m = split_rows ? pm : 1;
  const int64_t target = kChunksPerThread * threads;
  // rough nanoseconds: ~10 multiply-adds per ns per thread, ~0.5 ns per packed element
  const double compute = macs / 10.0;
  Split best{1, 1};
  double best_cost = -1;
  for (int64_t nm = 1; nm <= std::min(target, max_m); ++nm)
    for (int64_t nn = 1; nn <= std::min(target / nm, pn); ++nn) {
      const int64_t chunks = nm * nn;
      if (chunks < std::min<int64_t>(threads, max_m * pn)) continue;
      // the largest chunk's share of the work, rounded to whole panels, times the rounds the
      // threads need to get through the chunks
      const double rows = split_rows ? double(ceil_div(pm, nm) * mr) : double(M);
      const double cols = double(ceil_div(pn, nn) * nr);
      const double rounds = double(ceil_div(chunks, threads));
      const double span = compute * std::min(1.0, rows / double(M)) * std::min(1.0, cols / double(N)) * rounds;
      const double pack = 0.5 * double(K) * (double(nn) * double(M) * cost_a + double(nm) * double(N) * cost_b);
      // a little for more chunks: other processes take cores for a while on a shared machine,
      // and a few chunks per thread let the others take over a late thread's share
      const double late = 0.25 * compute / double(threads) / double(chunks);
      const double cost = span + pack / threads + late;
      if (best_cost < 0 || cost < best_cost) best_cost = cost, best = {nm, nn};
    }
  return best;
}

// Operands of cpu::gemm: strided views of op(A), op(B) and C with alpha and beta.
class StridedOperands final : public GemmOperands {
 public:
  StridedOperands(const float* a, int64_t ars, int64_t acs, const float* b, int64_t brs, int64_t bcs, float alpha,
                  float beta, float* c, int64_t ldc)
      : a_(a), ars_(ars), acs_(acs), b_(b), brs_(brs), bcs_(bcs), alpha_(alpha), beta_(beta), c_(c), ldc_(ldc) {}

  void pack_a(int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr, float* out) const override {
    pack_a_strided(a_, ars_, acs_, i0, mc, k0, kc, mr, out);
  }
  void pack_b(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* out) const override {
    pack_b_strided(b_, brs_, bcs_, k0, kc, j0, nc, nr, out);
  }
  void store(int64_t i0, int64_t j0, int64_t rows, int64_t cols, const float* acc, int64_t ld,
             bool first) const override {
    const float alpha = alpha_, beta = first ? beta_ : 1.0f;
    for (int64_t r = 0; r < rows; ++r) {
      float* c = c_ + (i0 + r) * ldc_ + j0;
      const float* t = acc + r * ld;
      if (beta == 0.0f) {  // never read C: it may hold NaN
        for (int64_t j = 0; j < cols; ++j) c[j] = alpha * t[j];
      } else if (beta == 1.0f) {
        for (int64_t j = 0; j < cols; ++j) c[j] += alpha * t[j];
      } else {
        for (int64_t j = 0; j < cols; ++j) c[j] = alpha * t[j] + beta * c[j];
      }
    }
  }

 private:
  const float* a_;
  int64_t ars_, acs_;
  const float* b_;
  int64_t brs_, bcs_;
  float alpha_, beta_;
  float* c_;
  int64_t ldc_;
};

// C = beta * C (beta == 0 writes zeros, whatever C held)
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

}  // namespace

const MicroKernel& portable_micro_kernel() { return kPortable; }
const MicroKernel& gemm_micro_kernel() { return *active_kernel(); }
void set_gemm_micro_kernel(const MicroKernel& k) { active_kernel() = &k; }

void pack_a_strided(const float* p, int64_t rs, int64_t cs, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr,
                    float* out) {
  for (int64_t q = 0; q * mr < mc; ++q) {
    float* dst = out + q * mr * kc;
    const int64_t rows = std::min<int64_t>(mr, mc - q * mr);
    const float* src = p + (i0 + q * mr) * rs + k0 * cs;
    if (cs == 1) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* s = src + r * rs;
        for (int64_t k = 0; k < kc; ++k) dst[k * mr + r] = s[k];
      }
      for (int64_t r = rows; r < mr; ++r)
        for (int64_t k = 0; k < kc; ++k) dst[k * mr + r] = 0.0f;
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = src + k * cs;
        float* d = dst + k * mr;
        int64_t r = 0;
        for (; r < rows; ++r) d[r] = s[r * rs];
        for (; r < mr; ++r) d[r] = 0.0f;
      }
    }
  }
}

void pack_b_strided(const float* p, int64_t rs, int64_t cs, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr,
                    float* out) {
  if (cs == 1) {
    for (int64_t k = 0; k < kc; ++k) deal_b_row(p + (k0 + k) * rs + j0, k, kc, nc, nr, out);
    return;
  }
  // columns of B are contiguous (op(B) = B^T) or strided: read one column at a time (a stream),
  // writing it down the panel, which stays in L1
  for (int64_t q = 0; q * nr < nc; ++q) {
    float* dst = out + q * nr * kc;
    const int64_t cols = std::min<int64_t>(nr, nc - q * nr);
    const float* src = p + k0 * rs + (j0 + q * nr) * cs;
    for (int64_t c = 0; c < cols; ++c) {
      const float* s = src + c * cs;
      for (int64_t k = 0; k < kc; ++k) dst[k * nr + c] = s[k * rs];
    }
    for (int64_t c = cols; c < nr; ++c)
      for (int64_t k = 0; k < kc; ++k) dst[k * nr + c] = 0.0f;
  }
}

void deal_b_row(const float* line, int64_t k, int64_t kc, int64_t nc, int nr, float* out) {
  const int64_t full = nc / nr;
  float* dst = out + k * nr;
  const int64_t panel = int64_t(nr) * kc;
  if (nr == 16) {  // the AVX2 kernel's width: fixed-size copies the compiler turns into vector moves
    for (int64_t q = 0; q < full; ++q) std::memcpy(dst + q * panel, line + q * 16, 16 * sizeof(float));
  } else if (nr == 8) {  // the NEON and portable kernels'
    for (int64_t q = 0; q < full; ++q) std::memcpy(dst + q * panel, line + q * 8, 8 * sizeof(float));
  } else if (nr == 32) {  // the AVX-512 kernel's
    for (int64_t q = 0; q < full; ++q) std::memcpy(dst + q * panel, line + q * 32, 32 * sizeof(float));
  } else {
    for (int64_t q = 0; q < full; ++q) std::memcpy(dst + q * panel, line + q * nr, nr * sizeof(float));
  }
  if (full * nr < nc) {
    float* d = dst + full * panel;
    const int64_t rest = nc - full * nr;
    std::memcpy(d, line + full * nr, rest * sizeof(float));
    std::fill(d + rest, d + nr, 0.0f);
  }
}

void deal_b_col(const float* line, int64_t c, int64_t kc, int nr, float* out) {
  float* dst = out + (c / nr) * nr * kc + c % nr;
  for (int64_t k = 0; k < kc; ++k) dst[k * nr] = line[k];
}

void gemm_run(int64_t M, int64_t N, int64_t K, const GemmOperands& ops) {
  if (M <= 0 || N <= 0) return;
  const MicroKernel& mk = gemm_micro_kernel();
  // columns are split in units of whole panels, or of the operands' grain when they ask for one
  const int64_t grain = ops.column_grain();
  const int64_t unit = grain > 1 ? grain : mk.nr;
  const Split s = choose_split(M, N, K, mk.mr, unit, num_threads(), ops.pack_cost_a(), ops.pack_cost_b(),
                               ops.rows_splittable());
  const int64_t pm = ceil_div(M, mk.mr), pn = ceil_div(N, unit);
  auto chunk = [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t a = c / s.nn, b = c % s.nn;
      const int64_t i_lo = std::min(M, pm * a / s.nm * mk.mr), i_hi = std::min(M, pm * (a + 1) / s.nm * mk.mr);
      const int64_t j_lo = std::min(N, pn * b / s.nn * unit), j_hi = std::min(N, pn * (b + 1) / s.nn * unit);
      if (i_lo < i_hi && j_lo < j_hi) run_chunk(mk, ops, K, i_lo, i_hi, j_lo, j_hi);
    }
  };
  if (s.nm * s.nn == 1) chunk(0, 1);
  else parallel_for(s.nm * s.nn, 1, chunk);
}

void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    const float* B, float beta, float* C) {
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        s += static_cast<double>(a) * b;
      }
      float prev = beta == 0.0f ? 0.0f : beta * C[i * N + j];
      C[i * N + j] = static_cast<float>(alpha * s) + prev;
    }
}

void gemm_strided(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {  // BLAS semantics: A and B are not read
    scale_c(M, N, beta, C, ldc);
    return;
  }
  // op(A) element (i, k) and op(B) element (k, j) as (row stride, column stride)
  const StridedOperands ops(A, trans_a ? 1 : lda, trans_a ? lda : 1, B, trans_b ? 1 : ldb, trans_b ? ldb : 1, alpha,
                            beta, C, ldc);
  gemm_run(M, N, K, ops);
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
          float beta, float* C) {
  gemm_strided(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

}  // namespace c3::cpu
