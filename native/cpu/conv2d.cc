// conv2d on the CPU. The fast path lowers each chunk of images to one GEMM over an im2col
// matrix: rows (c, r, s), columns (image, oh, ow). Chunks hold several images when the maps are
// small, so GEMMs stay large enough to use every thread; the threads work inside gemm and the
// copy loops, never over images at the same time. The *_reference functions are plain loops.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

namespace {

// Floats in one im2col buffer (8 MiB); a single image larger than this still gets one chunk.
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

struct Geometry {
  int64_t CRS, OHW, HW;
  bool identity;  // 1x1, stride 1, no padding: the input already is the im2col matrix
  int64_t chunk;  // images per chunk
};

Geometry geometry(const Conv2dParams& p) {
  Geometry g;
  g.CRS = p.C * p.R * p.S;
  g.OHW = p.OH * p.OW;
  g.HW = p.H * p.W;
  g.identity = p.R == 1 && p.S == 1 && p.stride == 1 && p.pad == 0;
  const int64_t per_image = std::max<int64_t>(1, g.CRS * g.OHW);
  g.chunk = std::clamp<int64_t>(kColBudget / per_image, 1, std::max<int64_t>(1, p.N));
  // a large 1x1 map needs no batching, and then no copy at all
  if (g.identity && g.OHW >= 1024) g.chunk = 1;
  return g;
}

int64_t grain_items(int64_t floats_per_item) { return std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(1, floats_per_item)); }

// Output columns [lo, hi) of one kernel offset whose input column ow*stride - pad + off lies in [0, size).
void valid_range(int64_t out, int64_t size, int64_t stride, int64_t pad, int64_t off, int64_t& lo, int64_t& hi) {
  // first o with o*stride >= pad - off, last o with o*stride <= size - 1 + pad - off
  int64_t a = pad - off, b = size - 1 + pad - off;
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = b < 0 ? 0 : std::min(out, b / stride + 1);
  if (hi < lo) hi = lo;
}

// col (CRS x nb*OHW) from images x[0..nb)
void im2col(const Conv2dParams& p, const Geometry& g, const float* x, int64_t nb, float* col) {
  const int64_t ld = nb * g.OHW;
  parallel_for(g.CRS * nb, grain_items(g.OHW), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row = t / nb, img = t % nb;
      const int64_t c = row / (p.R * p.S), r = (row / p.S) % p.R, s = row % p.S;
      const float* plane = x + (img * p.C + c) * g.HW;
      float* dst = col + row * ld + img * g.OHW;
      int64_t lo, hi;
      valid_range(p.OW, p.W, p.stride, p.pad, s, lo, hi);
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        float* d = dst + oh * p.OW;
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

// dx[0..nb) = col2im(dcol): every (image, channel) plane is written by one task, so no races.
void col2im(const Conv2dParams& p, const Geometry& g, const float* dcol, int64_t nb, float* dx) {
  const int64_t ld = nb * g.OHW;
  parallel_for(nb * p.C, grain_items(g.OHW * p.R * p.S), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / p.C, c = t % p.C;
      float* plane = dx + (img * p.C + c) * g.HW;
      std::fill(plane, plane + g.HW, 0.0f);
      for (int64_t r = 0; r < p.R; ++r)
        for (int64_t s = 0; s < p.S; ++s) {
          const float* src = dcol + ((c * p.R + r) * p.S + s) * ld + img * g.OHW;
          int64_t lo, hi;
          valid_range(p.OW, p.W, p.stride, p.pad, s, lo, hi);
          for (int64_t oh = 0; oh < p.OH; ++oh) {
            const int64_t ih = oh * p.stride - p.pad + r;
            if (ih < 0 || ih >= p.H) continue;
            const int64_t base = ih * p.W - p.pad + s;
            const float* srow = src + oh * p.OW;
            for (int64_t ow = lo; ow < hi; ++ow) plane[base + ow * p.stride] += srow[ow];
          }
        }
    }
  });
}

// (K x nb*OHW) matrix <-> nb images of (K, OHW): image-major in memory, one row per channel here.
void gather_rows(int64_t K, int64_t OHW, int64_t nb, const float* images, float* mat) {
  parallel_for(nb * K, grain_items(OHW), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / K, k = t % K;
      std::memcpy(mat + k * nb * OHW + img * OHW, images + (img * K + k) * OHW, OHW * sizeof(float));
    }
  });
}

// y images = mat (+ bias per channel)
void scatter_rows(int64_t K, int64_t OHW, int64_t nb, const float* mat, const float* bias, float* images) {
  parallel_for(nb * K, grain_items(OHW), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / K, k = t % K;
      const float* src = mat + k * nb * OHW + img * OHW;
      float* dst = images + (img * K + k) * OHW;
      const float b = bias ? bias[k] : 0.0f;
      for (int64_t i = 0; i < OHW; ++i) dst[i] = src[i] + b;
    }
  });
}

void add_bias(int64_t K, int64_t OHW, const float* bias, float* y) {
  parallel_for(K, grain_items(OHW), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      for (int64_t i = 0; i < OHW; ++i) y[k * OHW + i] += bias[k];
  });
}

}  // namespace

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  const Geometry g = geometry(p);
  for (int64_t n0 = 0; n0 < p.N; n0 += g.chunk) {
    const int64_t nb = std::min(g.chunk, p.N - n0);
    const float* xn = x + n0 * p.C * g.HW;
    float* yn = y + n0 * p.K * g.OHW;
    const float* col = xn;
    if (!(g.identity && nb == 1)) {
      float* c = scratch(col_buffer(), g.CRS * nb * g.OHW);
      im2col(p, g, xn, nb, c);
      col = c;
    }
    if (nb == 1) {
      gemm(false, false, p.K, g.OHW, g.CRS, 1.0f, w, col, 0.0f, yn);
      if (bias) add_bias(p.K, g.OHW, bias, yn);
    } else {
      float* out = scratch(tmp_buffer(), p.K * nb * g.OHW);
      gemm(false, false, p.K, nb * g.OHW, g.CRS, 1.0f, w, col, 0.0f, out);
      scatter_rows(p.K, g.OHW, nb, out, bias, yn);
    }
  }
}

void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const Geometry g = geometry(p);
  for (int64_t n0 = 0; n0 < p.N; n0 += g.chunk) {
    const int64_t nb = std::min(g.chunk, p.N - n0);
    const float* dyn = dy + n0 * p.K * g.OHW;
    float* dxn = dx + n0 * p.C * g.HW;
    const float* dmat = dyn;
    if (nb > 1) {
      float* m = scratch(tmp_buffer(), p.K * nb * g.OHW);
      gather_rows(p.K, g.OHW, nb, dyn, m);
      dmat = m;
    }
    if (g.identity && nb == 1) {
      gemm(true, false, g.CRS, g.OHW, p.K, 1.0f, w, dmat, 0.0f, dxn);
      continue;
    }
    float* dcol = scratch(col_buffer(), g.CRS * nb * g.OHW);
    gemm(true, false, g.CRS, nb * g.OHW, p.K, 1.0f, w, dmat, 0.0f, dcol);
    col2im(p, g, dcol, nb, dxn);
  }
}

void conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const Geometry g = geometry(p);
  if (p.N == 0) {
    std::fill(dw, dw + p.K * g.CRS, 0.0f);
    return;
  }
  for (int64_t n0 = 0; n0 < p.N; n0 += g.chunk) {
    const int64_t nb = std::min(g.chunk, p.N - n0);
    const float* dyn = dy + n0 * p.K * g.OHW;
    const float* xn = x + n0 * p.C * g.HW;
    const float* col = xn;
    if (!(g.identity && nb == 1)) {
      float* c = scratch(col_buffer(), g.CRS * nb * g.OHW);
      im2col(p, g, xn, nb, c);
      col = c;
    }
    const float* dmat = dyn;
    if (nb > 1) {
      float* m = scratch(tmp_buffer(), p.K * nb * g.OHW);
      gather_rows(p.K, g.OHW, nb, dyn, m);
      dmat = m;
    }
    // dw (K x CRS) (+)= dy (K x cols) col^T
    gemm(false, true, p.K, g.CRS, nb * g.OHW, 1.0f, dmat, col, n0 == 0 ? 0.0f : 1.0f, dw);
  }
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
