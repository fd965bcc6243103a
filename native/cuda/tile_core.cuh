// The block algorithm of the tile GEMM behind gemm and conv2d (tile_gemm.cuh launches it):
// out(m, n) = alpha * sum_k A(m, k) B(n, k) + bias[m] + beta * out, where A and B are operand
// descriptors (conv_gemm.cuh) that compute their addresses on the fly (strided matrices, im2col
// views). One block computes a BM x BN tile, walking K in BK = 16 slices: global loads for
// slice k+1 go into registers while slice k is multiplied from shared memory (two shared
// buffers, one barrier per slice). Operands whose k addresses need divisions (im2col) take them
// from a small per-slice table that one warp fills two slices ahead. The multiply is TF32
// mma.sync.m16n8k8 with fp32 accumulation, or FFMA register tiles in the exact-fp32 mode. When
// the tiles are too few to fill the device, K is split across blocks into a workspace that a
// second pass sums in a fixed order, so results never depend on timing.
// Written against a context (thread and block indices, the block barrier, the mma) so that the
// host tests run the same code over emulated threads; the CUDA context is in tile_gemm.cuh.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "conv_gemm.cuh"
#include "hd.cuh"

namespace c3::cuda::tile {

using gemmop::Part;

constexpr int BK = 16;

template <int BM_, int BN_, int WM_, int WN_>
struct Cfg {
  static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_;
  static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN, WARPS = WARPS_M * WARPS_N, THREADS = WARPS * 32;
  static_assert(BM % WM == 0 && BN % WN == 0 && WM % 16 == 0 && WN % 8 == 0, "warp tiles must cover the block");
};
using Big = Cfg<128, 128, 64, 32>;    // 8 warps, 64 accumulators per thread
using SmallM = Cfg<32, 128, 32, 32>;  // 4 warps, for M <= 32 (few output channels)

// A BR x BK slice in shared memory. Operands contiguous along k are stored [row][BK + 4],
// the others [k][BR + 8]; both paddings make the mma fragment reads conflict-free (the 8 rows
// of a fragment land 20 or 8 banks apart, the 4 k values 1 or 8 banks apart).
template <int BR, bool KContig>
struct Smem {
  static constexpr int kElems = KContig ? BR * (BK + 4) : BK * (BR + 8);
  C3_HD static int idx(int i, int k) { return KContig ? i * (BK + 4) + k : k * (BR + 8) + i; }
};

template <class CFG, class OpA, class OpB>
struct alignas(16) Shared {
  float sA[2][Smem<CFG::BM, OpA::kKContig>::kElems];
  float sB[2][Smem<CFG::BN, OpB::kKContig>::kElems];
  Part tA[2][OpA::kTable ? BK : 1];
  Part tB[2][OpB::kTable ? BK : 1];
};

// The operand stages of the cp.async pipeline (tile_block_async): ST slices in flight, raw
// floats (TF32 rounding happens as fragments are read), a table slot per stage.
template <class CFG, class OpA, class OpB, int ST>
struct alignas(16) SharedAsync {
  float sA[ST][Smem<CFG::BM, OpA::kKContig>::kElems];
  float sB[ST][Smem<CFG::BN, OpB::kKContig>::kElems];
  Part tA[ST][OpA::kTable ? BK : 1];
  Part tB[ST][OpB::kTable ? BK : 1];
};

C3_HD uint32_t f2u(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}

// round to TF32 (11 significant bits), to nearest with ties away from zero (cvt.rna)
C3_HD float to_tf32(float x) {
#ifdef __CUDA_ARCH__
  uint32_t u;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(x));
  return __uint_as_float(u);
#else
  uint32_t u = f2u(x);
  if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;
  u &= 0xffffe000u;
  float y;
  std::memcpy(&y, &u, 4);
  return y;
#endif
}

C3_HD float load_ro(const float* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}

template <class Op>
C3_HD bool in_bounds(const Op& op, const Part& r, const Part& k) {
  if (!Op::kBounds) return true;
  return static_cast<unsigned>(r.dh + k.dh) < static_cast<unsigned>(op.H) &&
         static_cast<unsigned>(r.dw + k.dw) < static_cast<unsigned>(op.W);
}

// Global -> registers -> shared for one operand. Contiguous-along-k operands: each thread owns
// one k of the slice and E rows (a warp reads two 64-byte row pieces). The others: each thread
// owns one row (its address computed once) and E values of k (a warp reads 32 adjacent rows).
template <class Op, int BR, int THREADS>
struct Loader {
  static constexpr bool KC = Op::kKContig;
  static constexpr int STEP = KC ? THREADS / BK : THREADS / BR;
  static constexpr int E = KC ? BR / STEP : BK / STEP;
  static_assert(KC ? (THREADS % BK == 0 && BR % STEP == 0) : (THREADS % BR == 0 && BK % STEP == 0),
                "thread mapping must tile the slice");
  using S = Smem<BR, KC>;

  int li, lk;  // the thread's first row / k within the slice
  Part r;      // row-owning mapping: the thread's row
  bool rok;
  float v[E];

  C3_HD void init(const Op& op, int row0, int t) {
    if (KC) {
      lk = t % BK, li = t / BK;
      rok = true;
      r = Part{0, 0, 0};
    } else {
      li = t % BR, lk = t / BR;
      const int i = row0 + li;
      rok = i < op.rows;
      r = op.row(rok ? i : 0);
    }
  }

  C3_HD void load(const Op& op, int row0, int k0, int kend, const Part* table) {
    if (KC) {
      const int k = k0 + lk;
      const bool kok = k < kend;
      const Part kp = Op::kTable ? table[lk] : op.kpart(k);
C3_UNROLL
      for (int e = 0; e < E; ++e) {
        const int i = row0 + li + e * STEP;
        float x = 0.0f;
        if (kok && i < op.rows) {
          const Part rp = op.row(i);
          if (in_bounds(op, rp, kp)) x = load_ro(op.p + rp.off + kp.off);
        }
        v[e] = x;
      }
    } else {
C3_UNROLL
      for (int e = 0; e < E; ++e) {
        const int kk = lk + e * STEP;
        float x = 0.0f;
        if (rok && k0 + kk < kend) {
          const Part kp = Op::kTable ? table[kk] : op.kpart(k0 + kk);
          if (in_bounds(op, r, kp)) x = load_ro(op.p + r.off + kp.off);
        }
        v[e] = x;
      }
    }
  }

  // load()'s elements as cp.async copies straight into the stage smem (zero-filled where load()
  // reads nothing), for the pipeline of tile_block_async
  template <class Ctx>
  C3_HD void issue(Ctx& ctx, const Op& op, int row0, int k0, int kend, const Part* table, float* smem) const {
    if (KC) {
      const int k = k0 + lk;
      const bool kok = k < kend;
      const Part kp = Op::kTable ? table[lk] : op.kpart(k);
C3_UNROLL
      for (int e = 0; e < E; ++e) {
        const int i = row0 + li + e * STEP;
        const float* src = op.p;
        bool ok = kok && i < op.rows;
        if (ok) {
          const Part rp = op.row(i);
          ok = in_bounds(op, rp, kp);
          if (ok) src = op.p + rp.off + kp.off;
        }
        ctx.cp_async4(smem + S::idx(li + e * STEP, lk), src, ok);
      }
    } else {
C3_UNROLL
      for (int e = 0; e < E; ++e) {
        const int kk = lk + e * STEP;
        const float* src = op.p;
        bool ok = rok && k0 + kk < kend;
        if (ok) {
          const Part kp = Op::kTable ? table[kk] : op.kpart(k0 + kk);
          ok = in_bounds(op, r, kp);
          if (ok) src = op.p + r.off + kp.off;
        }
        ctx.cp_async4(smem + S::idx(li, kk), src, ok);
      }
    }
  }

  template <bool TF32>
  C3_HD void store(float* smem) const {
C3_UNROLL
    for (int e = 0; e < E; ++e) {
      const int i = KC ? li + e * STEP : li, k = KC ? lk : lk + e * STEP;
      smem[S::idx(i, k)] = TF32 ? to_tf32(v[e]) : v[e];
    }
  }
};

template <class Op>
C3_HD void fill_table(const Op& op, Part* table, int k0, int slot) {
  if (Op::kTable && slot >= 0 && slot < BK) table[slot] = op.kpart(k0 + slot);
}

// stores and returns the output value of accumulator acc at (m, n)
template <class Out>
C3_HD float store_out(const Out& out, int m, int n, float acc) {
  float v = out.alpha * acc;
  if (out.bias) v += out.bias[m];
  const int64_t off = out.offset(m, n);
  if (out.beta != 0.0f) v += out.beta * out.p[off];
  v = gemmop::activate(out, v);
  out.p[off] = v;
  return v;
}

// Calls f(index into acc, m, n) for each accumulator of this thread (tile coordinates).
template <class CFG, bool TF32, class F>
C3_HD void for_each_acc(int wm0, int wn0, int lane, F f) {
  if (TF32) {
    constexpr int MT = CFG::WM / 16, NT = CFG::WN / 8;
    const int g = lane >> 2, tq = lane & 3;
C3_UNROLL
    for (int mt = 0; mt < MT; ++mt)
C3_UNROLL
      for (int nt = 0; nt < NT; ++nt)
C3_UNROLL
        for (int q = 0; q < 4; ++q)
          f((mt * NT + nt) * 4 + q, wm0 + mt * 16 + g + 8 * (q >> 1), wn0 + nt * 8 + 2 * tq + (q & 1));
  } else {
    constexpr int TM = CFG::WM / 8, TN = CFG::WN / 4;
    const int tm = lane & 7, tn = lane >> 3;
C3_UNROLL
    for (int i = 0; i < TM; ++i)
C3_UNROLL
      for (int j = 0; j < TN; ++j) f(i * TN + j, wm0 + tm + 8 * i, wn0 + tn + 4 * j);
  }
}

// The rows of a thread's accumulators (for_each_acc's layout): R rows per thread, accumulator q
// in local row of(q), local row r at tile row row(r).
template <class CFG, bool TF32>
struct AccRows {
  static constexpr int R = TF32 ? CFG::WM / 16 * 2 : CFG::WM / 8;
  C3_HD static int of(int q) { return TF32 ? q / (CFG::WN / 8 * 4) * 2 + ((q & 3) >> 1) : q / (CFG::WN / 4); }
  C3_HD static int row(int r, int wm0, int lane) {
    return TF32 ? wm0 + (r >> 1) * 16 + (lane >> 2) + 8 * (r & 1) : wm0 + (lane & 7) + 8 * r;
  }
  // the lanes and warps that share a row: each writes its own one of SLOTS partial sums
  static constexpr int SLOTS = CFG::WARPS_N * 4;
  C3_HD static int slot(int warp, int lane) { return (warp % CFG::WARPS_N) * 4 + (TF32 ? (lane & 3) : (lane >> 3)); }
};

// The conv -> batch-norm epilogue: per row of the block's tile (an output channel of the conv,
// whose columns are batch and positions), the sum of the stored values v over the tile's
// columns and the sum of their squared deviations from the tile row's mean, to
// row_moments[2 * (row * tiles_n + tile_n)] (float pairs, a row's tiles side by side for the
// merge: conv_moments.cu merges them per channel in double).
// Deviations from the tile's own mean keep the variance exact when the mean is large against
// the spread. Partial sums go through shared memory (smem, BM * (SLOTS + 2) floats) and are
// added in a fixed order, so the results do not depend on timing.
template <class CFG, bool TF32, class Ctx>
C3_HD void tile_row_moments(Ctx& ctx, float* smem, const float* v, int m0, int n0, int M, int N, int wm0, int wn0,
                            int warp, int lane, float* row_moments) {
  using Rows = AccRows<CFG, TF32>;
  constexpr int R = Rows::R, SLOTS = Rows::SLOTS;
  float* part = smem;                       // [BM][SLOTS]
  float* mean = smem + CFG::BM * SLOTS;     // [BM]
  float* total = mean + CFG::BM;            // [BM]
  const int t = ctx.tid(), slot = Rows::slot(warp, lane);
  const int cols = N - n0 < CFG::BN ? N - n0 : CFG::BN;
  float s[R];
C3_UNROLL
  for (int r = 0; r < R; ++r) s[r] = 0.0f;
  for_each_acc<CFG, TF32>(wm0, wn0, lane, [&](int q, int, int n) {
    if (n0 + n < N) s[Rows::of(q)] += v[q];
  });
C3_UNROLL
  for (int r = 0; r < R; ++r) part[Rows::row(r, wm0, lane) * SLOTS + slot] = s[r];
  ctx.sync();
  if (t < CFG::BM) {
    float sum = 0.0f;
    for (int k = 0; k < SLOTS; ++k) sum += part[t * SLOTS + k];
    total[t] = sum;
    mean[t] = sum / static_cast<float>(cols);
  }
  ctx.sync();
C3_UNROLL
  for (int r = 0; r < R; ++r) s[r] = 0.0f;
  for_each_acc<CFG, TF32>(wm0, wn0, lane, [&](int q, int m, int n) {
    if (n0 + n < N) {
      const float d = v[q] - mean[m];
      s[Rows::of(q)] += d * d;
    }
  });
C3_UNROLL
  for (int r = 0; r < R; ++r) part[Rows::row(r, wm0, lane) * SLOTS + slot] = s[r];
  ctx.sync();
  if (t < CFG::BM && m0 + t < M) {
    float m2 = 0.0f;
    for (int k = 0; k < SLOTS; ++k) m2 += part[t * SLOTS + k];
    const int tiles_n = (N + CFG::BN - 1) / CFG::BN;
    const int64_t at = 2 * (static_cast<int64_t>(m0 + t) * tiles_n + n0 / CFG::BN);
    row_moments[at] = total[t];
    row_moments[at + 1] = m2;
  }
}

// acc += this warp's part of the slice. TF32: m16n8k8 fragments as in the PTX ISA, a0 (g, t),
// a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (k=t, n=g), b1 (k=t+4, n=g), for g = lane / 4,
// t = lane % 4. FP32: each lane owns rows tm + 8i and columns tn + 4j of the warp tile.
// RAW: shared memory holds unrounded floats (the cp.async stages); TF32 rounds each as it is read.
template <class CFG, bool TF32, class OpA, class OpB, bool RAW = false, class Ctx>
C3_HD void multiply_slice(Ctx& ctx, const float* sA, const float* sB, float* acc, int wm0, int wn0, int lane) {
  const auto frag = [](float x) { return f2u(RAW ? to_tf32(x) : x); };
  using TA = Smem<CFG::BM, OpA::kKContig>;
  using TB = Smem<CFG::BN, OpB::kKContig>;
  if (TF32) {
    constexpr int MT = CFG::WM / 16, NT = CFG::WN / 8;
    const int g = lane >> 2, tq = lane & 3;
C3_UNROLL
    for (int ks = 0; ks < BK; ks += 8) {
      uint32_t af[MT][4], bf[NT][2];
C3_UNROLL
      for (int mt = 0; mt < MT; ++mt) {
        const int r = wm0 + mt * 16 + g;
        af[mt][0] = frag(sA[TA::idx(r, ks + tq)]);
        af[mt][1] = frag(sA[TA::idx(r + 8, ks + tq)]);
        af[mt][2] = frag(sA[TA::idx(r, ks + tq + 4)]);
        af[mt][3] = frag(sA[TA::idx(r + 8, ks + tq + 4)]);
      }
C3_UNROLL
      for (int nt = 0; nt < NT; ++nt) {
        const int c = wn0 + nt * 8 + g;
        bf[nt][0] = frag(sB[TB::idx(c, ks + tq)]);
        bf[nt][1] = frag(sB[TB::idx(c, ks + tq + 4)]);
      }
C3_UNROLL
      for (int mt = 0; mt < MT; ++mt)
C3_UNROLL
        for (int nt = 0; nt < NT; ++nt) ctx.mma(acc + (mt * NT + nt) * 4, af[mt], bf[nt]);
    }
  } else {
    constexpr int TM = CFG::WM / 8, TN = CFG::WN / 4;
    const int tm = lane & 7, tn = lane >> 3;
C3_UNROLL
    for (int kk = 0; kk < BK; ++kk) {
      float av[TM], bv[TN];
C3_UNROLL
      for (int i = 0; i < TM; ++i) av[i] = sA[TA::idx(wm0 + tm + 8 * i, kk)];
C3_UNROLL
      for (int j = 0; j < TN; ++j) bv[j] = sB[TB::idx(wn0 + tn + 4 * j, kk)];
C3_UNROLL
      for (int i = 0; i < TM; ++i)
C3_UNROLL
        for (int j = 0; j < TN; ++j) acc[i * TN + j] = fmaf(av[i], bv[j], acc[i * TN + j]);
    }
  }
}

// A thread's place in the product: its block's tile (ctx.bx(): n tile, ctx.by(): m tile), its
// K range (ctx.bz(): split), its warp's sub-tile.
template <class CFG>
struct BlockPlace {
  int t, warp, lane, m0, n0, kbeg, kend, ktiles, wm0, wn0;
  template <class Ctx>
  C3_HD BlockPlace(Ctx& ctx, int K, int kchunk)
      : t(ctx.tid()), warp(t >> 5), lane(t & 31), m0(ctx.by() * CFG::BM), n0(ctx.bx() * CFG::BN),
        kbeg(ctx.bz() * kchunk), kend(K < kbeg + kchunk ? K : kbeg + kchunk),
        ktiles(kend > kbeg ? (kend - kbeg + BK - 1) / BK : 0), wm0((warp / CFG::WARPS_N) * CFG::WM),
        wn0((warp % CFG::WARPS_N) * CFG::WN) {}
};

// The accumulators out: stored (or, with ws, raw K-split partial sums to
// ws[(z * M + m) * N + n]), then the moments epilogue when asked. The operand buffers sh are
// free: every thread has passed the main loop's last barrier.
template <class CFG, bool TF32, class Out, class Ctx, class SH>
C3_HD void tile_epilogue(Ctx& ctx, SH& sh, int M, int N, const Out& out, float* acc, int m0, int n0, int wm0, int wn0,
                         int warp, int lane, float* ws, float* row_moments) {
  const int z = ctx.bz();
  for_each_acc<CFG, TF32>(wm0, wn0, lane, [&](int q, int m, int n) {
    const int gm = m0 + m, gn = n0 + n;
    if (gm >= M || gn >= N) return;
    if (ws) ws[(static_cast<int64_t>(z) * M + gm) * N + gn] = acc[q];
    else acc[q] = store_out(out, gm, gn, acc[q]);
  });
  if (row_moments && !ws) {
    static_assert(sizeof(sh) >= sizeof(float) * CFG::BM * (AccRows<CFG, TF32>::SLOTS + 2),
                  "the moments' partial sums fit in the operand buffers");
    tile_row_moments<CFG, TF32>(ctx, reinterpret_cast<float*>(&sh), acc, m0, n0, M, N, wm0, wn0, warp, lane,
                                row_moments);
  }
}

// One thread's share of block (ctx.bx(): n tile, ctx.by(): m tile, ctx.bz(): K split).
// ws == null: write out; else raw partial sums to ws[(z * M + m) * N + n]. row_moments (without
// ws only): also the tile's per-row moments (tile_row_moments).
template <class CFG, bool TF32, class OpA, class OpB, class Out, class Ctx>
C3_HD void tile_block(Ctx& ctx, Shared<CFG, OpA, OpB>& sh, const OpA& a, const OpB& b, const Out& out, int K,
                      int kchunk, float* ws, float* row_moments = nullptr) {
  const BlockPlace<CFG> bp(ctx, K, kchunk);
  const int t = bp.t, warp = bp.warp, lane = bp.lane, m0 = bp.m0, n0 = bp.n0, kbeg = bp.kbeg, kend = bp.kend,
            ktiles = bp.ktiles, wm0 = bp.wm0, wn0 = bp.wn0;

  Loader<OpA, CFG::BM, CFG::THREADS> la;
  Loader<OpB, CFG::BN, CFG::THREADS> lb;
  la.init(a, m0, t);
  lb.init(b, n0, t);

  constexpr int ACC = CFG::WM * CFG::WN / 32;
  float acc[ACC];
C3_UNROLL
  for (int i = 0; i < ACC; ++i) acc[i] = 0.0f;

  if (ktiles > 0) {
    // the A table is filled by threads 0..15, the B table by threads 32..47 (another warp)
    fill_table(a, sh.tA[0], kbeg, t);
    fill_table(b, sh.tB[0], kbeg, t - 32);
    ctx.sync();
    la.load(a, m0, kbeg, kend, sh.tA[0]);
    lb.load(b, n0, kbeg, kend, sh.tB[0]);
    la.template store<TF32>(sh.sA[0]);
    lb.template store<TF32>(sh.sB[0]);
    if (ktiles > 1) {
      fill_table(a, sh.tA[1], kbeg + BK, t);
      fill_table(b, sh.tB[1], kbeg + BK, t - 32);
    }
    ctx.sync();
    for (int kt = 0; kt < ktiles; ++kt) {
      const int cur = kt & 1, nxt = cur ^ 1;
      if (kt + 1 < ktiles) {
        la.load(a, m0, kbeg + (kt + 1) * BK, kend, sh.tA[nxt]);
        lb.load(b, n0, kbeg + (kt + 1) * BK, kend, sh.tB[nxt]);
      }
      if (kt + 2 < ktiles) {  // table slot cur held slice kt, whose loads are done
        fill_table(a, sh.tA[cur], kbeg + (kt + 2) * BK, t);
        fill_table(b, sh.tB[cur], kbeg + (kt + 2) * BK, t - 32);
      }
      multiply_slice<CFG, TF32, OpA, OpB>(ctx, sh.sA[cur], sh.sB[cur], acc, wm0, wn0, lane);
      if (kt + 1 < ktiles) {
        la.template store<TF32>(sh.sA[nxt]);
        lb.template store<TF32>(sh.sB[nxt]);
      }
      ctx.sync();
    }
  }

  tile_epilogue<CFG, TF32>(ctx, sh, a.rows, b.rows, out, acc, m0, n0, wm0, wn0, warp, lane, ws, row_moments);
}

// The stage of the tile GEMM as tile_block, with the operands in ST stages of shared memory
// filled by cp.async (ST - 1 slices in flight while one is multiplied, one barrier per slice):
// the loads no longer pass through registers, so more of them can be outstanding. The index
// tables are filled ST slices ahead, into the slot whose slice was issued last round.
template <class CFG, bool TF32, int ST, class OpA, class OpB, class Out, class Ctx>
C3_HD void tile_block_async(Ctx& ctx, SharedAsync<CFG, OpA, OpB, ST>& sh, const OpA& a, const OpB& b, const Out& out,
                            int K, int kchunk, float* ws, float* row_moments) {
  static_assert(ST >= 2, "a pipeline needs two stages");
  const BlockPlace<CFG> bp(ctx, K, kchunk);
  const int t = bp.t, warp = bp.warp, lane = bp.lane, m0 = bp.m0, n0 = bp.n0, kbeg = bp.kbeg, kend = bp.kend,
            ktiles = bp.ktiles, wm0 = bp.wm0, wn0 = bp.wn0;

  Loader<OpA, CFG::BM, CFG::THREADS> la;
  Loader<OpB, CFG::BN, CFG::THREADS> lb;
  la.init(a, m0, t);
  lb.init(b, n0, t);

  constexpr int ACC = CFG::WM * CFG::WN / 32;
  float acc[ACC];
C3_UNROLL
  for (int i = 0; i < ACC; ++i) acc[i] = 0.0f;

  if (ktiles > 0) {
    for (int s = 0; s < ST && s < ktiles; ++s) {
      fill_table(a, sh.tA[s], kbeg + s * BK, t);
      fill_table(b, sh.tB[s], kbeg + s * BK, t - 32);
    }
    ctx.sync();
    for (int s = 0; s + 1 < ST; ++s) {
      if (s < ktiles) {
        la.issue(ctx, a, m0, kbeg + s * BK, kend, sh.tA[s], sh.sA[s]);
        lb.issue(ctx, b, n0, kbeg + s * BK, kend, sh.tB[s], sh.sB[s]);
      }
      ctx.cp_commit();  // empty groups too: the wait below counts groups
    }
    for (int kt = 0; kt < ktiles; ++kt) {
      ctx.template cp_wait<ST - 2>();  // this thread's copies of slice kt have landed
      ctx.sync();                      // everyone's have, and slice kt - 1's stage is free
      const int nk = kt + ST - 1, ns = nk % ST;
      if (nk < ktiles) {
        la.issue(ctx, a, m0, kbeg + nk * BK, kend, sh.tA[ns], sh.sA[ns]);
        lb.issue(ctx, b, n0, kbeg + nk * BK, kend, sh.tB[ns], sh.sB[ns]);
      }
      ctx.cp_commit();
      const int cur = kt % ST;
      if (kt + ST < ktiles) {  // slot cur's slice kt was issued rounds ago; visible after the next barrier
        fill_table(a, sh.tA[cur], kbeg + (kt + ST) * BK, t);
        fill_table(b, sh.tB[cur], kbeg + (kt + ST) * BK, t - 32);
      }
      multiply_slice<CFG, TF32, OpA, OpB, true>(ctx, sh.sA[cur], sh.sB[cur], acc, wm0, wn0, lane);
    }
    ctx.template cp_wait<0>();
    ctx.sync();
  }
  tile_epilogue<CFG, TF32>(ctx, sh, a.rows, b.rows, out, acc, m0, n0, wm0, wn0, warp, lane, ws, row_moments);
}

// The split-K epilogue for output element idx of M x N: the splits summed in order.
template <class Out>
C3_HD void splitk_reduce_at(const float* ws, int splits, int M, int N, const Out& out, int64_t idx) {
  const int64_t MN = static_cast<int64_t>(M) * N;
  float s = 0.0f;
  for (int z = 0; z < splits; ++z) s += ws[z * MN + idx];
  store_out(out, static_cast<int>(idx / N), static_cast<int>(idx % N), s);
}

struct Plan {
  int64_t tiles_m, tiles_n;
  int splits, kchunk;
};

// Tiles of the product and the K split: split until the grid covers the device about twice,
// each split keeping at least 4 slices.
template <class CFG>
inline Plan plan_tiles(int M, int N, int K, int sms) {
  Plan p;
  p.tiles_m = (M + CFG::BM - 1) / CFG::BM;
  p.tiles_n = (N + CFG::BN - 1) / CFG::BN;
  const int ktiles = (K + BK - 1) / BK;
  int chunk_tiles = std::max(ktiles, 1);
  p.splits = 1;
  const int64_t tiles = p.tiles_m * p.tiles_n, target = 2 * static_cast<int64_t>(sms);
  if (tiles < target && ktiles >= 8) {
    const int64_t want = std::min<int64_t>({(target + tiles - 1) / tiles, ktiles / 4, 64});
    if (want > 1) {
      chunk_tiles = static_cast<int>((ktiles + want - 1) / want);
      p.splits = (ktiles + chunk_tiles - 1) / chunk_tiles;
    }
  }
  p.kchunk = chunk_tiles * BK;
  return p;
}

}  // namespace c3::cuda::tile
