// conv2d on the CPU as implicit GEMMs on the blocked engine (gemm_kernels.h): the im2col matrix
// is never materialised; its rows are gathered from the input straight into the engine's packed
// B panels, block by block, and finished output tiles are scattered straight into NCHW.
//   forward:          y (K x N*OH*OW) = w (K x CRS) . im2col(x) (CRS x N*OH*OW)
//   backward-data:    per output phase (a, b) of the stride, dx[.., a::stride, b::stride] is a
//                     stride-1 correlation of dy with the taps of w that land on that phase, so
//                     dx (C x pixels of the phase) = w' (C x K*taps) . gather(dy); one phase for
//                     stride 1, every dx element written exactly once. Strided convs with no
//                     more input than output channels instead use one GEMM w^T dy whose tiles
//                     are added straight into dx (col2im fused into the store).
//   backward-weight:  dw (K x CRS) = dy (K x N*OH*OW) . im2col(x)^T, im2col rows packed as columns
// Strided convs read x (and the fused col2im writes dx) in a phase layout where every strided
// row access is contiguous. Kernels that cover the whole unpadded input (OH = OW = 1) are dense
// GEMMs. Stride-1 convs with few channels on the pass's output side go to direct vector loops
// (conv_direct.cc), 3x3 stride-1 convs with enough channels and tiles to Winograd F(2x2, 3x3) or
// F(4x4, 3x3) (winograd.cc). The threads work inside the engine (chunks of the output) and the
// transforms. The *_reference functions are plain loops.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../core/threadpool.h"
#include "conv_direct.h"
#include "gemm_kernels.h"
#include "host_alloc.h"
#include "kernels.h"
#include "winograd.h"
#include "thread_scratch.h"

namespace c3::cpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t floor_mod(int64_t a, int64_t b) { return ((a % b) + b) % b; }

// Phase layout for strided convs: each of `rows` rows of W is split into its s phases (columns
// q, q+s, q+2s, ...), each ceil(W/s) wide and zero-padded, so the conv's strided reads (and the
// col2im's strided adds) become contiguous.
void deinterleave_rows(const float* x, int64_t rows, int64_t W, int64_t s, float* xd) {
  const int64_t pw = ceil_div(W, s);
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = x + r * W;
      for (int64_t q = 0; q < s; ++q) {
        float* d = xd + (r * s + q) * pw;
        for (int64_t j = 0; j < pw; ++j) d[j] = j * s + q < W ? src[j * s + q] : 0.0f;
      }
    }
  });
}

void interleave_rows(const float* xd, int64_t rows, int64_t W, int64_t s, float* x) {
  const int64_t pw = ceil_div(W, s);
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* dst = x + r * W;
      for (int64_t q = 0; q < s; ++q) {
        const float* d = xd + (r * s + q) * pw;
        for (int64_t j = 0; j * s + q < W; ++j) dst[j * s + q] = d[j];
      }
    }
  });
}

// Short runs (a row of a small map) are common: a plain loop beats a library call there.
inline void copy_run(float* d, const float* s, int64_t n) {
  if (n > 32) {
    std::memcpy(d, s, n * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; ++i) d[i] = s[i];
}
inline void zero_run(float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = 0.0f;
}

float* phase_buffer(int64_t n) {
  thread_local ScratchBuffer v;
  return v.get(static_cast<size_t>(n));
}

// One axis of a gather: output o of tap t reads source o * stride + off[t], valid for o in
// [lo[t], hi[t]) (outside it the source is padding: zero).
struct Axis {
  int64_t out = 0, src = 0, stride = 1;
  std::vector<int64_t> off, lo, hi;

  Axis(int64_t out_, int64_t src_, int64_t stride_, std::vector<int64_t> off_)
      : out(out_), src(src_), stride(stride_), off(std::move(off_)) {
    for (int64_t f : off) {
      const int64_t l = f >= 0 ? 0 : ceil_div(-f, stride);
      const int64_t last = src - 1 - f;  // o * stride <= last
      const int64_t h = last < 0 ? 0 : std::min(out, last / stride + 1);
      lo.push_back(std::min(l, out));
      hi.push_back(std::max(h, std::min(l, out)));
    }
  }
  int64_t taps() const { return static_cast<int64_t>(off.size()); }
};

// The B matrix of an implicit-GEMM convolution, never stored: row (c, t, u), column (n, i, j)
// holds src[n, c, i*stride_r + off_r[t], j*stride_c + off_c[u]] (zero outside the source).
struct Gather {
  const float* src;
  int64_t C, H, W;  // source planes per image and their size
  Axis rows, cols;
  // > 0: src is in phase layout (deinterleave_rows with the column stride), each phase this
  // wide, so a strided row read is a contiguous copy
  int64_t phase_width = 0;

  int64_t out_plane() const { return rows.out * cols.out; }

  // line[0, len) = B row kk, columns [j0, j0 + len)
  void line(int64_t kk, int64_t j0, int64_t len, float* out) const {
    const int64_t U = cols.taps(), TU = rows.taps() * U;
    const int64_t c = kk / TU, t = (kk / U) % rows.taps(), u = kk % U;
    const int64_t plane = out_plane(), Wo = cols.out;
    int64_t n = j0 / plane, rem = j0 % plane, i = rem / Wo, j = rem % Wo;
    const int64_t ilo = rows.lo[t], ihi = rows.hi[t], jlo = cols.lo[u], jhi = cols.hi[u];
    const int64_t off_r = rows.off[t], off_c = cols.off[u], sc = cols.stride;
    // a source row of image n, input row ih, as the base that output column jj reads at
    // [jj] (contiguous: stride 1 or phase layout) or [jj * sc]
    const bool phased = phase_width > 0;
    const int64_t q = phased ? floor_mod(off_c, sc) : 0, shift = phased ? (off_c - q) / sc : off_c;
    const int64_t row_len = phased ? sc * phase_width : W;
    auto row_at = [&](int64_t img, int64_t ih) { return src + ((img * C + c) * H + ih) * row_len + q * phase_width + shift; };
    const bool contiguous = phased || sc == 1;
    while (len > 0) {
      if (j == 0 && len >= Wo) {  // whole output rows: the same columns are valid in each
        for (; len >= Wo; len -= Wo, out += Wo) {
          if (i >= ilo && i < ihi) {
            const float* row = row_at(n, i * rows.stride + off_r);
            zero_run(out, jlo);
            if (contiguous) copy_run(out + jlo, row + jlo, jhi - jlo);
            else
              for (int64_t jj = jlo; jj < jhi; ++jj) out[jj] = row[jj * sc];
            zero_run(out + jhi, Wo - jhi);
          } else {
            zero_run(out, Wo);
          }
          if (++i == rows.out) i = 0, ++n;
        }
        continue;
      }
      const int64_t seg = std::min(Wo - j, len);
      if (i >= ilo && i < ihi) {
        const int64_t a = std::clamp(jlo, j, j + seg), b = std::clamp(jhi, j, j + seg);
        const float* row = row_at(n, i * rows.stride + off_r);
        float* o = out - j;  // o[jj] is column jj of this output row
        zero_run(o + j, a - j);
        if (contiguous) copy_run(o + a, row + a, b - a);
        else
          for (int64_t jj = a; jj < b; ++jj) o[jj] = row[jj * sc];
        zero_run(o + b, j + seg - b);
      } else {
        zero_run(out, seg);
      }
      out += seg;
      len -= seg;
      j += seg;
      if (j == Wo) {
        j = 0;
        if (++i == rows.out) i = 0, ++n;
      }
    }
  }
};

// Scratch for one gathered line, per thread (the engine's threads call the packers).
float* line_buffer(int64_t n) {
  thread_local ScratchBuffer v;
  return v.get(static_cast<size_t>(n));
}

// y-like outputs: C column (n, i, j) of row m goes to dst[n, m, i*stride + oa, j*stride + ob]
// of a (N, M, Hd, Wd) tensor, plus bias[m] when given.
struct Scatter {
  float* dst;
  int64_t M, Hd, Wd, stride, oa, ob;
  int64_t Ho, Wo;  // the gather grid (columns of C per image: Ho * Wo)
  const float* bias;

  void store(int64_t i0, int64_t j0, int64_t rows, int64_t cols, const float* acc, int64_t ld, bool first) const {
    const int64_t plane = Ho * Wo;
    int64_t n = j0 / plane, rem = j0 % plane, i = rem / Wo, j = rem % Wo;
    int64_t done = 0;
    while (done < cols) {
      const int64_t seg = std::min(Wo - j, cols - done);
      float* base = dst + ((n * M + i0) * Hd + i * stride + oa) * Wd + ob + j * stride;
      for (int64_t r = 0; r < rows; ++r) {
        float* d = base + r * Hd * Wd;
        const float* t = acc + r * ld + done;
        if (first) {
          const float b = bias ? bias[i0 + r] : 0.0f;
          if (stride == 1)
            for (int64_t x = 0; x < seg; ++x) d[x] = t[x] + b;
          else
            for (int64_t x = 0; x < seg; ++x) d[x * stride] = t[x] + b;
        } else {
          if (stride == 1)
            for (int64_t x = 0; x < seg; ++x) d[x] += t[x];
          else
            for (int64_t x = 0; x < seg; ++x) d[x * stride] += t[x];
        }
      }
      done += seg;
      j += seg;
      if (j == Wo) {
        j = 0;
        if (++i == Ho) i = 0, ++n;
      }
    }
  }
};

// C = A (dense, row-major, M x K with row stride lda) . Gather, scattered by Scatter.
class GatherOperands final : public GemmOperands {
 public:
  GatherOperands(const float* a, int64_t lda, const Gather& g, const Scatter& s) : a_(a), lda_(lda), g_(g), s_(s) {}
  void pack_a(int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr, float* out) const override {
    pack_a_strided(a_, lda_, 1, i0, mc, k0, kc, mr, out);
  }
  void pack_b(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* out) const override {
    float* line = line_buffer(nc);
    for (int64_t k = 0; k < kc; ++k) {
      g_.line(k0 + k, j0, nc, line);
      deal_b_row(line, k, kc, nc, nr, out);
    }
  }
  void store(int64_t i0, int64_t j0, int64_t rows, int64_t cols, const float* acc, int64_t ld,
             bool first) const override {
    s_.store(i0, j0, rows, cols, acc, ld, first);
  }
  double pack_cost_b() const override { return 2.0; }

 private:
  const float* a_;
  int64_t lda_;
  const Gather& g_;
  const Scatter& s_;
};

// dw (K x CRS) = dy (K x N*OHW) . im2col(x)^T: A's rows are dy's channel rows (contiguous per
// image), B's columns are im2col rows, gathered like the forward's.
// Of a 4x4 kernel, when the micro-kernel's panel is 16 wide: B panel of input channel ch (its 16
// taps) over output positions [k0, k0 + kc), row k = the 4x4 patch of x under position k0 + k
// (zeros outside x), as four 4-float copies instead of sixteen strided scalar stores.
void pack_patches4(const Conv2dParams& p, const float* x, int64_t ch, int64_t k0, int64_t kc, float* dst) {
  const int64_t ohw = p.OH * p.OW;
  int64_t n = k0 / ohw, oy = k0 % ohw / p.OW, ox = k0 % p.OW;
  for (int64_t k = 0; k < kc; ++k, dst += 16) {
    const float* plane = x + (n * p.C + ch) * p.H * p.W;
    const int64_t iy = oy * p.stride - p.pad, ix = ox * p.stride - p.pad;
    if (iy >= 0 && ix >= 0 && iy + 4 <= p.H && ix + 4 <= p.W) {
      for (int r = 0; r < 4; ++r) std::memcpy(dst + r * 4, plane + (iy + r) * p.W + ix, 4 * sizeof(float));
    } else {
      for (int r = 0; r < 4; ++r)
        for (int s2 = 0; s2 < 4; ++s2) {
          const int64_t yy = iy + r, xx = ix + s2;
          dst[r * 4 + s2] = yy >= 0 && yy < p.H && xx >= 0 && xx < p.W ? plane[yy * p.W + xx] : 0.0f;
        }
    }
    if (++ox == p.OW) {
      ox = 0;
      if (++oy == p.OH) oy = 0, ++n;
    }
  }
}

class WeightOperands final : public GemmOperands {
 public:
  // x and p give the 4x4 kernels' patch packing (pack_patches4); g the general gather
  WeightOperands(const float* dy, int64_t K, int64_t ohw, const Gather& g, float* dw, int64_t crs,
                 const Conv2dParams& p, const float* x)
      : dy_(dy), K_(K), ohw_(ohw), g_(g), dw_(dw), crs_(crs), p_(p), x_(x) {}
  void pack_a(int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr, float* out) const override {
    for (int64_t q = 0; q * mr < mc; ++q) {
      float* dst = out + q * mr * kc;
      const int64_t rows = std::min<int64_t>(mr, mc - q * mr);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t ch = i0 + q * mr + r;
        int64_t p = k0, done = 0;
        while (done < kc) {
          const int64_t n = p / ohw_, pix = p % ohw_, seg = std::min(ohw_ - pix, kc - done);
          const float* s = dy_ + (n * K_ + ch) * ohw_ + pix;
          float* d = dst + done * mr + r;
          for (int64_t x = 0; x < seg; ++x) d[x * mr] = s[x];
          done += seg;
          p += seg;
        }
      }
      for (int64_t r = rows; r < mr; ++r)
        for (int64_t k = 0; k < kc; ++k) dst[k * mr + r] = 0.0f;
    }
  }
  void pack_b(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* out) const override {
    if (p_.R == 4 && p_.S == 4 && nr == 16 && j0 % 16 == 0 && nc % 16 == 0) {  // a panel per channel
      for (int64_t q = 0; q < nc / 16; ++q) pack_patches4(p_, x_, j0 / 16 + q, k0, kc, out + q * 16 * kc);
      return;
    }
    float* line = line_buffer(kc);
    for (int64_t c = 0; c < nc; ++c) {
      g_.line(j0 + c, k0, kc, line);
      deal_b_col(line, c, kc, nr, out);
    }
    const int64_t padded = ceil_div(nc, nr) * nr;
    if (padded > nc) {
      std::fill(line, line + kc, 0.0f);
      for (int64_t c = nc; c < padded; ++c) deal_b_col(line, c, kc, nr, out);
    }
  }
  void store(int64_t i0, int64_t j0, int64_t rows, int64_t cols, const float* acc, int64_t ld,
             bool first) const override {
    for (int64_t r = 0; r < rows; ++r) {
      float* d = dw_ + (i0 + r) * crs_ + j0;
      const float* t = acc + r * ld;
      if (first)
        for (int64_t x = 0; x < cols; ++x) d[x] = t[x];
      else
        for (int64_t x = 0; x < cols; ++x) d[x] += t[x];
    }
  }
  double pack_cost_b() const override { return 2.0; }

 private:
  const float* dy_;
  int64_t K_, ohw_;
  const Gather& g_;
  float* dw_;
  int64_t crs_;
  const Conv2dParams& p_;
  const float* x_;
};

// dx += col2im(w^T dy) with the col2im fused into the store: C (C*R*S x N*OH*OW) = w^T (rows
// (c, r, s), K deep) . dy (K x pixels), and each finished tile is added straight into dx at
// (c, oh*stride - pad + r, ow*stride - pad + s). Windows overlap, so the engine keeps each
// image's columns, all rows of them, on one thread (column_grain, rows_splittable). dx must be
// zero beforehand.
class Col2imOperands final : public GemmOperands {
 public:
  // dx is in phase layout (deinterleave_rows with the stride): the adds are contiguous
  Col2imOperands(const Conv2dParams& p, const float* w, const Gather& dy, float* dx)
      : p_(p), w_(w), dy_(dy), dx_(dx), crs_(p.C * p.R * p.S), pw_(ceil_div(p.W, p.stride)),
        rows_(p.OH, p.H, p.stride, offsets(p.R, p.pad)), cols_(p.OW, p.W, p.stride, offsets(p.S, p.pad)) {}
  void pack_a(int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr, float* out) const override {
    pack_a_strided(w_, 1, crs_, i0, mc, k0, kc, mr, out);  // element (crs, k) is w[k, crs]
  }
  void pack_b(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* out) const override {
    float* line = line_buffer(nc);
    for (int64_t k = 0; k < kc; ++k) {
      dy_.line(k0 + k, j0, nc, line);
      deal_b_row(line, k, kc, nc, nr, out);
    }
  }
  void store(int64_t i0, int64_t j0, int64_t rows, int64_t cols, const float* acc, int64_t ld, bool) const override {
    const int64_t plane = p_.OH * p_.OW, st = p_.stride;
    // the tile's columns as runs along output rows, shared by all its rows
    struct Run {
      int64_t n, oh, ow, len, at;
    };
    Run runs[32];
    int nruns = 0;
    {
      int64_t n = j0 / plane, rem = j0 % plane, oh = rem / p_.OW, ow = rem % p_.OW, done = 0;
      while (done < cols) {
        const int64_t len = std::min(p_.OW - ow, cols - done);
        runs[nruns++] = Run{n, oh, ow, len, done};
        done += len;
        ow += len;
        if (ow == p_.OW) {
          ow = 0;
          if (++oh == p_.OH) oh = 0, ++n;
        }
      }
    }
    // row i0 + r is (c, tr, ts); step the three counters instead of dividing per row
    int64_t c = i0 / (p_.R * p_.S), tr = (i0 / p_.S) % p_.R, ts = i0 % p_.S;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t ilo = rows_.lo[tr], ihi = rows_.hi[tr], jlo = cols_.lo[ts], jhi = cols_.hi[ts];
      const int64_t off = cols_.off[ts], q = floor_mod(off, st), shift = (off - q) / st;
      const float* t = acc + r * ld;
      for (int k = 0; k < nruns; ++k) {
        const Run& u = runs[k];
        if (u.oh < ilo || u.oh >= ihi) continue;
        // dx row of this output row and tap; column ow*st + off is element ow + off/st of phase
        // off mod st
        float* d = dx_ + (((u.n * p_.C + c) * p_.H + u.oh * st + rows_.off[tr]) * st + q) * pw_ + shift;
        const int64_t a = std::clamp(jlo, u.ow, u.ow + u.len), b = std::clamp(jhi, u.ow, u.ow + u.len);
        const float* src = t + u.at - u.ow;  // src[x] is output column x of this run
        for (int64_t x = a; x < b; ++x) d[x] += src[x];
      }
      if (++ts == p_.S) {
        ts = 0;
        if (++tr == p_.R) tr = 0, ++c;
      }
    }
  }
  double pack_cost_b() const override { return 2.0; }
  int64_t column_grain() const override { return p_.OH * p_.OW; }
  bool rows_splittable() const override { return false; }

 private:
  static std::vector<int64_t> offsets(int64_t taps, int64_t pad) {
    std::vector<int64_t> v(static_cast<size_t>(taps));
    for (int64_t t = 0; t < taps; ++t) v[t] = t - pad;
    return v;
  }
  const Conv2dParams& p_;
  const float* w_;
  const Gather& dy_;
  float* dx_;
  int64_t crs_, pw_;
  Axis rows_, cols_;
};

std::vector<int64_t> tap_offsets(int64_t taps, int64_t first, int64_t step) {
  std::vector<int64_t> v(static_cast<size_t>(taps));
  for (int64_t t = 0; t < taps; ++t) v[t] = first + t * step;
  return v;
}

// im2col of the forward conv as a Gather over x (strided: over x in phase layout, made here)
Gather forward_gather(const Conv2dParams& p, const float* x) {
  Gather g{x, p.C, p.H, p.W, Axis(p.OH, p.H, p.stride, tap_offsets(p.R, -p.pad, 1)),
           Axis(p.OW, p.W, p.stride, tap_offsets(p.S, -p.pad, 1))};
  if (p.stride > 1) {
    const int64_t rows = p.N * p.C * p.H;
    float* xd = phase_buffer(rows * p.stride * ceil_div(p.W, p.stride));
    deinterleave_rows(x, rows, p.W, p.stride, xd);
    g.src = xd;
    g.phase_width = ceil_div(p.W, p.stride);
  }
  return g;
}

// A kernel that covers the whole unpadded input once (OH = OW = 1, D's 4x4 heads on 4x4 maps):
// the conv is a dense layer over x viewed as (N, C*H*W), three plain GEMMs.
bool is_dense(const Conv2dParams& p) { return p.pad == 0 && p.R == p.H && p.S == p.W && p.OH == 1 && p.OW == 1; }

// -1: choose by shape; 0: stride phases; 1: fused col2im (set_conv2d_backward_data_path, or
// C3GAN_CONV_DATA_PATH=phases|col2im for measuring one against the other)
int initial_data_path() {
  const char* e = std::getenv("C3GAN_CONV_DATA_PATH");
  if (!e) return -1;
  const std::string v(e);
  return v == "phases" ? 0 : v == "col2im" ? 1 : -1;
}
int& data_path() {
  static int path = initial_data_path();
  return path;
}

// Backward-data by the fused col2im rather than by stride phases, where its GEMM is the better
// shaped one (C*R*S rows over w^T read in place, dy packed by plain row copies). Needs a few
// images to spread over the threads (each image's columns stay on one thread).
bool use_col2im(const Conv2dParams& p) {
  if (data_path() >= 0) return data_path() == 1;
  if (p.N < 4) return false;
  // strided with no more input than output channels, or any conv whose weights outnumber its
  // output pixels (D's wide layers on 4x4 maps at small batches): there the phases' per-call
  // transposed weights and their packing would dominate
  return (p.stride > 1 && p.C <= p.K) || p.N * p.OH * p.OW <= p.C * p.R * p.S;
}

}  // namespace

void set_conv2d_backward_data_path(int path) { data_path() = path < 0 ? -1 : path > 0 ? 1 : 0; }

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                    float* moments) {
  const bool empty = p.N == 0 || p.K == 0 || p.OH == 0 || p.OW == 0;
  const int64_t crs = p.C * p.R * p.S;
  if (empty) {
    // nothing to compute; an empty output's moments are zeros
  } else if (is_dense(p)) {  // y (N x K) = x (N x CRS) w^T
    gemm_strided(false, true, p.N, p.K, crs, 1.0f, x, crs, w, crs, 0.0f, y, p.K);
    if (bias)
      for (int64_t n = 0; n < p.N; ++n)
        for (int64_t k = 0; k < p.K; ++k) y[n * p.K + k] += bias[k];
  } else if (winograd_applies(p, ConvPass::Forward)) {  // (these three form the moments in cache)
    return winograd_forward(p, x, w, bias, y, moments);
  } else if (winograd_s2_applies(p, ConvPass::Forward)) {
    return winograd_s2_forward(p, x, w, bias, y, moments);
  } else if (direct_conv_applies(p, ConvPass::Forward)) {
    return direct_conv_forward(p, x, w, bias, y, moments);
  } else if (blocked_forward_applies(p)) {
    blocked_forward(p, x, w, bias, y);
  } else {
    const Gather g = forward_gather(p, x);
    const Scatter s{y, p.K, p.OH, p.OW, 1, 0, 0, p.OH, p.OW, bias};
    gemm_run(p.K, p.N * p.OH * p.OW, crs, GatherOperands(w, crs, g, s));
  }
  if (moments) channel_moments(p.N, p.K, p.OH * p.OW, y, moments);  // the other paths: a pass after
}

void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (p.N == 0 || p.C == 0 || p.H == 0 || p.W == 0) return;
  if (is_dense(p)) {  // dx (N x CRS) = dy (N x K) w
    const int64_t crs = p.C * p.R * p.S;
    gemm_strided(false, false, p.N, crs, p.K, 1.0f, dy, p.K, w, crs, 0.0f, dx, crs);
    return;
  }
  if (direct_conv_applies(p, ConvPass::BackwardData)) return direct_conv_backward_data(p, dy, w, dx);
  if (winograd_applies(p, ConvPass::BackwardData)) return winograd_backward_data(p, dy, w, dx);
  // the blocked direct loops beat the phase split's F(2x2, 2x2), not its F(4x4, 2x2)
  const bool s2 = winograd_s2_applies(p, ConvPass::BackwardData);
  if (s2 && winograd_s2_tile(p, ConvPass::BackwardData) == 4) return winograd_s2_backward_data(p, dy, w, dx);
  if (blocked_backward_data_applies(p)) return blocked_backward_data(p, dy, w, dx);
  if (s2) return winograd_s2_backward_data(p, dy, w, dx);
  if (use_col2im(p)) {  // into the phase layout, then back
    const int64_t rows = p.N * p.C * p.H, phased = rows * p.stride * ceil_div(p.W, p.stride);
    float* dxd = phase_buffer(phased);
    std::fill(dxd, dxd + phased, 0.0f);
    const Gather g{dy, p.K, p.OH, p.OW, Axis(p.OH, p.OH, 1, {0}), Axis(p.OW, p.OW, 1, {0})};
    gemm_run(p.C * p.R * p.S, p.N * p.OH * p.OW, p.K, Col2imOperands(p, w, g, dxd));
    interleave_rows(dxd, rows, p.W, p.stride, dx);
    return;
  }
  const int64_t st = p.stride;
  std::vector<float> wt;
  for (int64_t a = 0; a < st; ++a)
    for (int64_t b = 0; b < st; ++b) {
      // dx rows a, a+st, ... and columns b, b+st, ...: Hp x Wp of them
      const int64_t Hp = a < p.H ? ceil_div(p.H - a, st) : 0, Wp = b < p.W ? ceil_div(p.W - b, st) : 0;
      if (Hp == 0 || Wp == 0) continue;
      // kernel rows r0, r0+st, ... (T of them) and columns s0, s0+st, ... (U) land on this phase
      const int64_t r0 = (a + p.pad) % st, s0 = (b + p.pad) % st;
      const int64_t T = r0 < p.R ? ceil_div(p.R - r0, st) : 0, U = s0 < p.S ? ceil_div(p.S - s0, st) : 0;
      if (T == 0 || U == 0) {  // no tap reaches these positions: their gradient is zero
        for (int64_t n = 0; n < p.N; ++n)
          for (int64_t c = 0; c < p.C; ++c)
            for (int64_t i = 0; i < Hp; ++i)
              for (int64_t j = 0; j < Wp; ++j) dx[((n * p.C + c) * p.H + a + i * st) * p.W + b + j * st] = 0.0f;
        continue;
      }
      // w' (C x K*T*U): w'[c, (k, t, u)] = w[k, c, r0 + t*st, s0 + u*st]
      const int64_t ktu = p.K * T * U;
      wt.resize(static_cast<size_t>(p.C * ktu));
      for (int64_t c = 0; c < p.C; ++c)
        for (int64_t k = 0; k < p.K; ++k)
          for (int64_t t = 0; t < T; ++t)
            for (int64_t u = 0; u < U; ++u)
              wt[c * ktu + (k * T + t) * U + u] = w[((k * p.C + c) * p.R + r0 + t * st) * p.S + s0 + u * st];
      // dx[a + i*st] takes dy[oh] with oh*st - pad + r0 + t*st = a + i*st: oh = i + (a + pad - r0)/st - t
      const Gather g{dy, p.K, p.OH, p.OW, Axis(Hp, p.OH, 1, tap_offsets(T, (a + p.pad - r0) / st, -1)),
                     Axis(Wp, p.OW, 1, tap_offsets(U, (b + p.pad - s0) / st, -1))};
      const Scatter s{dx, p.C, p.H, p.W, st, a, b, Hp, Wp, nullptr};
      gemm_run(p.C, p.N * Hp * Wp, ktu, GatherOperands(wt.data(), ktu, g, s));
    }
}

// the conv, then the LeakyReLU in place (the two ops' passes; on CUDA the tile epilogue applies it)
void conv2d_forward_leaky(const Conv2dParams& p, const float* x, const float* w, const float* bias, float slope,
                          float* y) {
  conv2d_forward(p, x, w, bias, y, nullptr);
  unary_forward(UnaryOp::LeakyRelu, static_cast<size_t>(p.N * p.K * p.OH * p.OW), y, slope, y);
}

// the gradient into a cached block, then axpy: the CPU paths write dx whole, and a fused add would
// change their rounding (on CUDA the tile epilogue adds it)
void conv2d_backward_data_accumulate(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const size_t n = static_cast<size_t>(p.N * p.C * p.H * p.W);
  if (n == 0) return;
  const HostFloats g(n);
  conv2d_backward_data(p, dy, w, g.get());
  axpy(n, 1.0f, g.get(), dx);
}

void conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const int64_t crs = p.C * p.R * p.S;
  if (p.K == 0 || crs == 0) return;
  if (is_dense(p)) {  // dw (K x CRS) = dy^T (K x N) x
    gemm_strided(true, false, p.K, crs, p.N, 1.0f, dy, p.K, x, crs, 0.0f, dw, crs);
    return;
  }
  if (direct_conv_applies(p, ConvPass::BackwardWeight)) return direct_conv_backward_weight(p, dy, x, dw);
  if (winograd_applies(p, ConvPass::BackwardWeight)) return winograd_backward_weight(p, dy, x, dw);
  if (winograd_s2_applies(p, ConvPass::BackwardWeight)) return winograd_s2_backward_weight(p, dy, x, dw);
  if (phased_direct_applies(p)) return phased_direct_backward_weight(p, dy, x, dw);
  const Gather g = forward_gather(p, x);
  gemm_run(p.K, crs, p.N * p.OH * p.OW, WeightOperands(dy, p.K, p.OH * p.OW, g, dw, crs, p, x));
}

void conv2d_forward_reference(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          double s = bias ? bias[k] : 0.0;
          for (int64_t c = 0; c < p.C; ++c)
            for (int64_t r = 0; r < p.R; ++r) {
              const int64_t ih = oh * p.stride - p.pad + r;
              if (ih < 0 || ih >= p.H) continue;
              for (int64_t q = 0; q < p.S; ++q) {
                const int64_t iw = ow * p.stride - p.pad + q;
                if (iw < 0 || iw >= p.W) continue;
                s += static_cast<double>(x[((n * p.C + c) * p.H + ih) * p.W + iw]) *
                     w[((k * p.C + c) * p.R + r) * p.S + q];
              }
            }
          y[((n * p.K + k) * p.OH + oh) * p.OW + ow] = static_cast<float>(s);
        }
}

void conv2d_backward_data_reference(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  std::vector<double> acc(static_cast<size_t>(p.N * p.C * p.H * p.W), 0.0);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          const double d = dy[((n * p.K + k) * p.OH + oh) * p.OW + ow];
          for (int64_t c = 0; c < p.C; ++c)
            for (int64_t r = 0; r < p.R; ++r) {
              const int64_t ih = oh * p.stride - p.pad + r;
              if (ih < 0 || ih >= p.H) continue;
              for (int64_t q = 0; q < p.S; ++q) {
                const int64_t iw = ow * p.stride - p.pad + q;
                if (iw < 0 || iw >= p.W) continue;
                acc[((n * p.C + c) * p.H + ih) * p.W + iw] += d * w[((k * p.C + c) * p.R + r) * p.S + q];
              }
            }
        }
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<float>(acc[i]);
}

void conv2d_backward_weight_reference(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t r = 0; r < p.R; ++r)
        for (int64_t q = 0; q < p.S; ++q) {
          double s = 0;
          for (int64_t n = 0; n < p.N; ++n)
            for (int64_t oh = 0; oh < p.OH; ++oh) {
              const int64_t ih = oh * p.stride - p.pad + r;
              if (ih < 0 || ih >= p.H) continue;
              for (int64_t ow = 0; ow < p.OW; ++ow) {
                const int64_t iw = ow * p.stride - p.pad + q;
                if (iw < 0 || iw >= p.W) continue;
                s += static_cast<double>(dy[((n * p.K + k) * p.OH + oh) * p.OW + ow]) *
                     x[((n * p.C + c) * p.H + ih) * p.W + iw];
              }
            }
          dw[((k * p.C + c) * p.R + r) * p.S + q] = static_cast<float>(s);
        }
}

}  // namespace c3::cpu
