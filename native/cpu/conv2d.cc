// conv2d on the CPU. The fast path lowers a tile of the output to one GEMM over an im2col
// matrix: rows (c, r, s), columns (image, oh, ow). A tile is several whole images when the maps
// are small (so GEMMs stay large enough for every thread) or a band of output rows of one image
// when an image alone would pass the im2col budget. The threads work inside gemm and the copy
// loops, never over images at the same time. The *_reference functions are plain loops.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

// defined in gemm.cc: gemm on sub-matrices with row strides lda, ldb, ldc
void gemm_strided(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

namespace {

// Floats in one im2col buffer (8 MiB).
constexpr int64_t kColBudget = int64_t(1) << 21;
// Floats copied per parallel work item below which a thread hand-off is not worth it.
constexpr int64_t kCopyGrain = 1 << 14;

// Scratch reused across calls; per thread because several threads may run convolutions.
std::vector<float>& col_buffer() {
  thread_local std::vector<float> v;
  return v;
}
std::vector<float>& tmp_buffer() {
  thread_local std::vector<float> v;
  return v;
}
float* scratch(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(n);
  return v.data();
}

struct Plan {
  int64_t CRS, OHW, HW;
  bool identity;   // 1x1, stride 1, no padding: the input already is the im2col matrix
  int64_t images;  // images per tile
  int64_t rows;    // output rows per tile (OH unless a tile is part of one image)
};

Plan plan(const Conv2dParams& p) {
  Plan g;
  g.CRS = p.C * p.R * p.S;
  g.OHW = p.OH * p.OW;
  g.HW = p.H * p.W;
  g.identity = p.R == 1 && p.S == 1 && p.stride == 1 && p.pad == 0;
  const int64_t per_image = std::max<int64_t>(1, g.CRS * g.OHW);
  g.images = std::clamp<int64_t>(kColBudget / per_image, 1, std::max<int64_t>(1, p.N));
  g.rows = p.OH;
  if (g.identity && (g.OHW >= 1024 || g.images == 1)) g.images = 1;  // use x in place, no copy
  else if (per_image > kColBudget)
    g.rows = std::clamp<int64_t>(kColBudget / std::max<int64_t>(1, g.CRS * p.OW), 1, std::max<int64_t>(1, p.OH));
  return g;
}

// One tile: images [n0, n0+nb), output rows [oh0, oh1) of each; its im2col matrix has
// nb * (oh1-oh0) * OW columns, image-major.
struct Tile {
  int64_t n0, nb, oh0, oh1;
  int64_t len(const Conv2dParams& p) const { return (oh1 - oh0) * p.OW; }  // columns per image
  int64_t cols(const Conv2dParams& p) const { return nb * len(p); }
};

template <typename F>
void for_tiles(const Conv2dParams& p, const Plan& g, F&& f) {
  for (int64_t n0 = 0; n0 < p.N; n0 += g.images)
    for (int64_t oh0 = 0; oh0 < p.OH; oh0 += g.rows)
      f(Tile{n0, std::min(g.images, p.N - n0), oh0, std::min(p.OH, oh0 + g.rows)});
}

int64_t grain_items(int64_t floats_per_item) { return std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(1, floats_per_item)); }

// Output columns [lo, hi) of one kernel offset whose input column o*stride - pad + off lies in [0, size).
void valid_range(int64_t out, int64_t size, int64_t stride, int64_t pad, int64_t off, int64_t& lo, int64_t& hi) {
  // first o with o*stride >= pad - off, last o with o*stride <= size - 1 + pad - off
  int64_t a = pad - off, b = size - 1 + pad - off;
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = b < 0 ? 0 : std::min(out, b / stride + 1);
  if (hi < lo) hi = lo;
}

// col (CRS x t.cols) of the tile; x points at image t.n0
void im2col(const Conv2dParams& p, const Plan& g, const Tile& t, const float* x, float* col) {
  const int64_t len = t.len(p), ld = t.cols(p);
  parallel_for(g.CRS * t.nb, grain_items(len), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t row = i / t.nb, img = i % t.nb;
      const int64_t c = row / (p.R * p.S), r = (row / p.S) % p.R, s = row % p.S;
      const float* plane = x + (img * p.C + c) * g.HW;
      float* dst = col + row * ld + img * len;
      int64_t lo, hi;
      valid_range(p.OW, p.W, p.stride, p.pad, s, lo, hi);
      for (int64_t oh = t.oh0; oh < t.oh1; ++oh) {
        float* d = dst + (oh - t.oh0) * p.OW;
        const int64_t ih = oh * p.stride - p.pad + r;
        if (ih < 0 || ih >= p.H || lo >= hi) {
          std::fill(d, d + p.OW, 0.0f);
          continue;
        }
        const int64_t base = ih * p.W - p.pad + s;  // input column of ow = 0, may be negative
        std::fill(d, d + lo, 0.0f);
        if (p.stride == 1) std::memcpy(d + lo, plane + base + lo, (hi - lo) * sizeof(float));
        else
          for (int64_t ow = lo; ow < hi; ++ow) d[ow] = plane[base + ow * p.stride];
        std::fill(d + hi, d + p.OW, 0.0f);
      }
    }
  });
}

// dx (+)= col2im(dcol) for the tile; dx points at image t.n0. The first band of an image
// (oh0 == 0) overwrites its planes, later bands add. Every (image, channel) plane is written by
// one task, so there are no races.
void col2im(const Conv2dParams& p, const Plan& g, const Tile& t, const float* dcol, float* dx) {
  const int64_t len = t.len(p), ld = t.cols(p);
  parallel_for(t.nb * p.C, grain_items(len * p.R * p.S), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t img = i / p.C, c = i % p.C;
      float* plane = dx + (img * p.C + c) * g.HW;
      if (t.oh0 == 0) std::fill(plane, plane + g.HW, 0.0f);
      for (int64_t r = 0; r < p.R; ++r)
        for (int64_t s = 0; s < p.S; ++s) {
          const float* src = dcol + ((c * p.R + r) * p.S + s) * ld + img * len;
          int64_t lo, hi;
          valid_range(p.OW, p.W, p.stride, p.pad, s, lo, hi);
          for (int64_t oh = t.oh0; oh < t.oh1; ++oh) {
            const int64_t ih = oh * p.stride - p.pad + r;
            if (ih < 0 || ih >= p.H) continue;
            const int64_t base = ih * p.W - p.pad + s;
            const float* srow = src + (oh - t.oh0) * p.OW;
            for (int64_t ow = lo; ow < hi; ++ow) plane[base + ow * p.stride] += srow[ow];
          }
        }
    }
  });
}

// (K x nb*OHW) matrix from nb whole images of (K, OHW), and back (+ bias per channel)
void gather_rows(int64_t K, int64_t OHW, int64_t nb, const float* images, float* mat) {
  parallel_for(nb * K, grain_items(OHW), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t img = i / K, k = i % K;
      std::memcpy(mat + k * nb * OHW + img * OHW, images + (img * K + k) * OHW, OHW * sizeof(float));
    }
  });
}

void scatter_rows(int64_t K, int64_t OHW, int64_t nb, const float* mat, const float* bias, float* images) {
  parallel_for(nb * K, grain_items(OHW), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t img = i / K, k = i % K;
      const float* src = mat + k * nb * OHW + img * OHW;
      float* dst = images + (img * K + k) * OHW;
      const float b = bias ? bias[k] : 0.0f;
      for (int64_t j = 0; j < OHW; ++j) dst[j] = src[j] + b;
    }
  });
}

// y[k, 0..len) += bias[k] for rows of stride ld
void add_bias(int64_t K, int64_t len, int64_t ld, const float* bias, float* y) {
  parallel_for(K, grain_items(len), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      for (int64_t j = 0; j < len; ++j) y[k * ld + j] += bias[k];
  });
}

// The tile's im2col matrix and its row stride: x itself for an identity conv on one image.
const float* tile_col(const Conv2dParams& p, const Plan& g, const Tile& t, const float* x, int64_t& ld) {
  const float* xn = x + t.n0 * p.C * g.HW;
  if (g.identity && t.nb == 1) {
    ld = g.HW;
    return xn + t.oh0 * p.OW;
  }
  float* col = scratch(col_buffer(), g.CRS * t.cols(p));
  im2col(p, g, t, xn, col);
  ld = t.cols(p);
  return col;
}

// dy of the tile as a (K x cols) matrix and its row stride: in place for one image.
const float* tile_dy(const Conv2dParams& p, const Plan& g, const Tile& t, const float* dy, int64_t& ld) {
  const float* dyn = dy + t.n0 * p.K * g.OHW;
  if (t.nb == 1) {
    ld = g.OHW;
    return dyn + t.oh0 * p.OW;
  }
  float* m = scratch(tmp_buffer(), p.K * t.cols(p));
  gather_rows(p.K, g.OHW, t.nb, dyn, m);  // several images per tile: always whole images
  ld = t.cols(p);
  return m;
}

}  // namespace

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  const Plan g = plan(p);
  for_tiles(p, g, [&](const Tile& t) {
    int64_t ld_col;
    const float* col = tile_col(p, g, t, x, ld_col);
    float* yn = y + t.n0 * p.K * g.OHW;
    if (t.nb == 1) {
      float* out = yn + t.oh0 * p.OW;
      gemm_strided(false, false, p.K, t.len(p), g.CRS, 1.0f, w, g.CRS, col, ld_col, 0.0f, out, g.OHW);
      if (bias) add_bias(p.K, t.len(p), g.OHW, bias, out);
    } else {
      float* out = scratch(tmp_buffer(), p.K * t.cols(p));
      gemm_strided(false, false, p.K, t.cols(p), g.CRS, 1.0f, w, g.CRS, col, ld_col, 0.0f, out, t.cols(p));
      scatter_rows(p.K, g.OHW, t.nb, out, bias, yn);
    }
  });
}

void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const Plan g = plan(p);
  if (g.OHW == 0) {  // no output: no tile would write dx
    std::fill(dx, dx + p.N * p.C * g.HW, 0.0f);
    return;
  }
  for_tiles(p, g, [&](const Tile& t) {
    int64_t ld_dy;
    const float* dmat = tile_dy(p, g, t, dy, ld_dy);
    float* dxn = dx + t.n0 * p.C * g.HW;
    if (g.identity && t.nb == 1) {  // dx rows of the band are exactly W^T dy
      gemm_strided(true, false, g.CRS, t.len(p), p.K, 1.0f, w, g.CRS, dmat, ld_dy, 0.0f, dxn + t.oh0 * p.OW, g.HW);
      return;
    }
    float* dcol = scratch(col_buffer(), g.CRS * t.cols(p));
    gemm_strided(true, false, g.CRS, t.cols(p), p.K, 1.0f, w, g.CRS, dmat, ld_dy, 0.0f, dcol, t.cols(p));
    col2im(p, g, t, dcol, dxn);
  });
}

void conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const Plan g = plan(p);
  if (p.N == 0 || g.OHW == 0) {
    std::fill(dw, dw + p.K * g.CRS, 0.0f);
    return;
  }
  bool first = true;
  for_tiles(p, g, [&](const Tile& t) {
    int64_t ld_col, ld_dy;
    const float* col = tile_col(p, g, t, x, ld_col);
    const float* dmat = tile_dy(p, g, t, dy, ld_dy);
    // dw (K x CRS) (+)= dy (K x cols) col^T
    gemm_strided(false, true, p.K, g.CRS, t.cols(p), 1.0f, dmat, ld_dy, col, ld_col, first ? 0.0f : 1.0f, dw, g.CRS);
    first = false;
  });
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
