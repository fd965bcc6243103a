// The tile GEMM's block algorithm on Hopper's warpgroup MMA (wgmma, sm_90a; C3GAN_CUDA_TILE=wgmma,
// TF32 on the big tile): the same tiles, K split, operand descriptors and epilogue as tile_block
// (tile_core.cuh), with the multiply issued by two warpgroups, each a 64 x 128 x 8 wgmma reading
// both operands straight from shared memory. Operands still go global -> registers -> shared
// (rounded to TF32 there, so the products see the same operand values as the mma.sync paths), in
// three stages, one barrier per slice; the wgmma of slice k runs while slice k+1 is stored and
// goes on through the next barrier (one wgmma group stays in flight).
// Shared memory holds each slice in wgmma's K-major core matrices (emu/wgmma_layout.h).
#pragma once
#include "emu/wgmma_layout.h"
#include "tile_core.cuh"

namespace c3::cuda::tile {

// 8 warps, two warpgroups of 64 rows; warp w's accumulators are rows 16 w .. 16 w + 15 of all
// 128 columns, which is for_each_acc's TF32 layout for a 16 x 128 warp tile, so the epilogue and
// the moments are tile_core's.
using Wg = Cfg<128, 128, 16, 128>;
constexpr int kWgN = 128;  // the N of each wgmma

// A BR x BK slice as core matrices [k quad][row group][8 rows][4 k]: LBO (between k quads)
// BR / 8 x 128 bytes, SBO (between row groups) 128 bytes.
template <int BR>
struct SmemCore {
  static constexpr int kElems = BR * BK;
  static constexpr uint32_t LBO = BR / 8 * 128, SBO = 128;
  C3_HD static int idx(int i, int k) { return (k >> 2) * (BR * 4) + (i >> 3) * 32 + (i & 7) * 4 + (k & 3); }
};

// Three operand stages: slice k is multiplied while slice k + 1 is stored, and the wgmma of slice
// k - 1 may still be reading its stage; two index-table slots.
constexpr int kWgStages = 3;

template <class OpA, class OpB>
struct alignas(128) SharedWg {
  float sA[kWgStages][SmemCore<Wg::BM>::kElems];
  float sB[kWgStages][SmemCore<Wg::BN>::kElems];
  Part tA[2][OpA::kTable ? BK : 1];
  Part tB[2][OpB::kTable ? BK : 1];
};

// Global -> registers -> shared for one operand of the wgmma pipeline. Each store of a warp fills
// one core matrix (128 contiguous bytes), so its 32 lanes hit 32 banks: warp w holds row groups
// 2w and 2w + 1 with the slice's four k quads. The lanes run along k for operands contiguous
// along k (8 rows x 16 bytes per load) and along the rows for the others (4 k x 32 bytes).
template <class Op, int BR, int THREADS>
struct CoreLoader {
  static constexpr int E = BR * BK / THREADS;
  static_assert(BK == 16 && E == 8 && BR / 8 == 2 * (THREADS / 32), "a warp fills two row groups of the slice");
  using S = SmemCore<BR>;

  int i0, c4;  // the thread's row in its first row group (tile coordinates), its k in a quad
  Part r[2];   // its two rows
  bool rok[2];
  float v[E];

  C3_HD void init(const Op& op, int row0, int t) {
    const int warp = t >> 5, lane = t & 31;
    const int r8 = Op::kKContig ? lane >> 2 : lane & 7;
    c4 = Op::kKContig ? lane & 3 : lane >> 3;
    i0 = 16 * warp + r8;
    for (int j = 0; j < 2; ++j) {
      const int i = row0 + i0 + 8 * j;
      rok[j] = i < op.rows;
      r[j] = op.row(rok[j] ? i : 0);
    }
  }

  // element e: row group j = e / 4, k quad e % 4
  C3_HD void load(const Op& op, int k0, int kend, const Part* table) {
C3_UNROLL
    for (int e = 0; e < E; ++e) {
      const int j = e >> 2, kk = (e & 3) * 4 + c4;
      float x = 0.0f;
      if (rok[j] && k0 + kk < kend) {
        const Part kp = Op::kTable ? table[kk] : op.kpart(k0 + kk);
        if (in_bounds(op, r[j], kp)) x = load_ro(op.p + r[j].off + kp.off);
      }
      v[e] = x;
    }
  }

  C3_HD void store(float* smem) const {
C3_UNROLL
    for (int e = 0; e < E; ++e) smem[S::idx(i0 + 8 * (e >> 2), (e & 3) * 4 + c4)] = to_tf32(v[e]);
  }
};

// The descriptor of the 8-wide k step s of a slice, from row `row` on (a warpgroup's first row)
template <int BR, class Ctx>
C3_HD uint64_t slice_desc(Ctx& ctx, const float* slice, int row, int s) {
  using S = SmemCore<BR>;
  return c3emu::encode_desc(ctx.smem_addr(slice + S::idx(row, 8 * s)), S::LBO, S::SBO);
}

// One thread's share of block (ctx.bx(): n tile, ctx.by(): m tile, ctx.bz(): K split); ws and
// row_moments as in tile_block.
template <class OpA, class OpB, class Out, class Ctx>
C3_HD void tile_block_wgmma(Ctx& ctx, SharedWg<OpA, OpB>& sh, const OpA& a, const OpB& b, const Out& out, int K,
                            int kchunk, float* ws, float* row_moments) {
  const BlockPlace<Wg> bp(ctx, K, kchunk);
  const int t = bp.t, m0 = bp.m0, n0 = bp.n0, kbeg = bp.kbeg, kend = bp.kend, ktiles = bp.ktiles;
  const int group_row = (bp.warp >> 2) * 64;  // the warpgroup's rows of the tile

  CoreLoader<OpA, Wg::BM, Wg::THREADS> la;
  CoreLoader<OpB, Wg::BN, Wg::THREADS> lb;
  la.init(a, m0, t);
  lb.init(b, n0, t);

  constexpr int ACC = Wg::WM * Wg::WN / 32;
  static_assert(ACC == kWgN / 2, "a thread's accumulators are one wgmma's");
  float acc[ACC];
C3_UNROLL
  for (int i = 0; i < ACC; ++i) acc[i] = 0.0f;

  if (ktiles > 0) {
    for (int k = 0; k < 2 && k < ktiles; ++k) {
      fill_table(a, sh.tA[k], kbeg + k * BK, t);
      fill_table(b, sh.tB[k], kbeg + k * BK, t - 32);
    }
    ctx.sync();
    la.load(a, kbeg, kend, sh.tA[0]);
    lb.load(b, kbeg, kend, sh.tB[0]);
    la.store(sh.sA[0]);
    lb.store(sh.sB[0]);
    ctx.fence_async_smem();  // the stores are read by wgmma (the async proxy)
    for (int kt = 0; kt < ktiles; ++kt) {
      const int cur = kt % kWgStages, nxt = (kt + 1) % kWgStages, slot = kt & 1;
      // slice kt is stored and visible; every warpgroup's wgmma of slice kt - 2, the last reader
      // of stage nxt, has retired; table slot `slot` (slice kt's) is free
      ctx.sync();
      if (kt + 1 < ktiles) {
        la.load(a, kbeg + (kt + 1) * BK, kend, sh.tA[slot ^ 1]);
        lb.load(b, kbeg + (kt + 1) * BK, kend, sh.tB[slot ^ 1]);
      }
      if (kt + 2 < ktiles) {
        fill_table(a, sh.tA[slot], kbeg + (kt + 2) * BK, t);
        fill_table(b, sh.tB[slot], kbeg + (kt + 2) * BK, t - 32);
      }
      ctx.wgmma_fence(acc, ACC);
C3_UNROLL
      for (int s = 0; s < BK / 8; ++s)
        ctx.wgmma_m64n128k8(acc, slice_desc<Wg::BM>(ctx, sh.sA[cur], group_row, s),
                            slice_desc<Wg::BN>(ctx, sh.sB[cur], 0, s));
      ctx.wgmma_commit();
      if (kt + 1 < ktiles) {
        la.store(sh.sA[nxt]);
        lb.store(sh.sB[nxt]);
        ctx.fence_async_smem();
      }
      ctx.template wgmma_wait<1>(acc, ACC);  // slice kt - 1's products have retired
    }
    ctx.template wgmma_wait<0>(acc, ACC);
    ctx.sync();  // the epilogue's moments reuse the stages
  }
  tile_epilogue<Wg, true>(ctx, sh, a.rows, b.rows, out, acc, m0, n0, bp.wm0, bp.wn0, bp.warp, bp.lane, ws,
                          row_moments);
}

}  // namespace c3::cuda::tile
