// Batch normalisation over (N, C, HW) with PyTorch's semantics: per-channel statistics across N
// and HW, biased variance for normalising, unbiased variance into the running estimate.
//
// Memory-bound, so each element is read as few times as possible; sums run in float over chunks
// of at most kBlock floats (vectorised, batchnorm_kernels.h) and in double across chunks:
//   rows (HW >= kShortHW): a channel's N rows of HW floats are cut into chunks (runs of whole
//     rows, or pieces of one long row). Statistics are two-pass per chunk while it is in L1 (its
//     mean, then the sums of x minus that mean), chunks merged in double with Chan's formula in a
//     fixed order. A task takes whole channels (statistics, then the second pass while the
//     channel is in cache) when there are enough channels for the threads; else chunks, then
//     rows, are split over threads (a 128 px layer has few channels and long rows).
//   columns (HW < kShortHW, BatchNorm1d's HW = 1 included): a group of channels is read as N rows
//     of g * HW contiguous floats and summed down the columns (float over kRows rows, then
//     double); the group's statistics are complete within one task, which then normalises (or,
//     backward, forms dx) from cache.
// The work is split by shape only, so results do not depend on the thread count. The
// *_reference functions at the end are the plain double loops.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/threadpool.h"
#include "batchnorm_kernels.h"
#include "host_alloc.h"
#include "kernels.h"
#include "moments.h"

namespace c3::cpu {

namespace {

constexpr int64_t kBlock = 2048;      // floats per float-summed chunk (8 KiB, in L1 for its 2nd pass)
constexpr int64_t kShortHW = 32;      // shorter rows are summed as columns
constexpr int64_t kRows = 32;         // rows per float-summed block in column mode
constexpr int64_t kGroupCols = 1024;  // target columns of a column-mode channel group
constexpr int64_t kGrain = 16384;     // floats per parallel task

// ---- the portable table: plain loops the compiler vectorises (one accumulator array per loop)

constexpr int kLanes = 8;

inline float lanes_total(const float* acc) {
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

float p_sum(const float* x, int64_t rows, int64_t len, int64_t ld) {
  float acc[kLanes] = {}, tail = 0.0f;
  const int64_t m = len / kLanes * kLanes;
  for (int64_t r = 0; r < rows; ++r, x += ld) {
    for (int64_t i = 0; i < m; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j];
    for (int64_t i = m; i < len; ++i) tail += x[i];
  }
  return lanes_total(acc) + tail;
}

void p_shifted_sums(const float* x, int64_t rows, int64_t len, int64_t ld, float a, float* s1, float* s2) {
  float acc[kLanes] = {}, sq[kLanes] = {}, t1 = 0.0f, t2 = 0.0f;
  const int64_t m = len / kLanes * kLanes;
  for (int64_t r = 0; r < rows; ++r, x += ld) {
    for (int64_t i = 0; i < m; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j] - a;
    for (int64_t i = 0; i < m; i += kLanes)
      for (int j = 0; j < kLanes; ++j) sq[j] += (x[i + j] - a) * (x[i + j] - a);
    for (int64_t i = m; i < len; ++i) t1 += x[i] - a, t2 += (x[i] - a) * (x[i] - a);
  }
  *s1 = lanes_total(acc) + t1;
  *s2 = lanes_total(sq) + t2;
}

void p_grad_sums(const float* dy, const float* x, int64_t rows, int64_t len, int64_t ld, float mean, float* s1,
                 float* s2) {
  float acc[kLanes] = {}, dot[kLanes] = {}, t1 = 0.0f, t2 = 0.0f;
  const int64_t m = len / kLanes * kLanes;
  for (int64_t r = 0; r < rows; ++r, x += ld, dy += ld) {
    for (int64_t i = 0; i < m; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += dy[i + j];
    for (int64_t i = 0; i < m; i += kLanes)
      for (int j = 0; j < kLanes; ++j) dot[j] += dy[i + j] * (x[i + j] - mean);
    for (int64_t i = m; i < len; ++i) t1 += dy[i], t2 += dy[i] * (x[i] - mean);
  }
  *s1 = lanes_total(acc) + t1;
  *s2 = lanes_total(dot) + t2;
}

void p_invstd(int64_t n, const double* var, double eps, double* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = 1.0 / std::sqrt(var[i] + eps);
}

void row_affine(const float* x, int64_t n, float a, float b, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + b;
}

void row_dx(const float* dy, const float* x, int64_t n, float a, float b, float m, float k, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = a * dy[i] + b * (x[i] - m) + k;
}

const BatchnormKernels kPortable = {"portable", p_sum, p_shifted_sums, p_grad_sums, p_invstd, row_affine, row_dx};

const BatchnormKernels*& active_kernels() {
  static const BatchnormKernels* k = avx2_batchnorm_kernels()   ? avx2_batchnorm_kernels()
                                     : neon_batchnorm_kernels() ? neon_batchnorm_kernels()
                                                                : &kPortable;
  return k;
}

// ---- per-channel results from the statistics, over arrays of channels so the loops vectorise

struct TrainArgs {
  const float* gamma;
  const float* beta;
  float* running_mean;
  float* running_var;
  float momentum, eps;
  float* save_mean;
  float* save_invstd;
  float* moments;  // (C, 2): mean and biased variance, for channel_moments
};

// Channels [c0, c0 + g) with these means and M2 over `count` values each: saves the statistics,
// updates the running ones, and gives y = x * scale + shift. work: g doubles.
void finish_channels(const BatchnormKernels& k, const TrainArgs& t, int64_t c0, int64_t g, double count,
                     const double* mean, const double* m2, double* work, float* scale, float* shift) {
  const double mom = t.momentum, keep = 1.0 - mom;
  const double inv_count = 1.0 / count;
  for (int64_t j = 0; j < g; ++j) work[j] = m2[j] * inv_count;  // biased variance
  if (t.moments)
    for (int64_t j = 0; j < g; ++j) {
      t.moments[2 * (c0 + j)] = static_cast<float>(mean[j]);
      t.moments[2 * (c0 + j) + 1] = static_cast<float>(work[j]);
    }
  if (t.running_var) {
    // PyTorch's unbiased estimate; a single value per channel has none, keep the biased one
    const double unbiased = count > 1 ? count / (count - 1) : 1.0;
    float* rv = t.running_var + c0;
    for (int64_t j = 0; j < g; ++j) rv[j] = static_cast<float>(keep * rv[j] + mom * (work[j] * unbiased));
  }
  k.invstd(g, work, t.eps, work);
  if (t.save_mean)
    for (int64_t j = 0; j < g; ++j) t.save_mean[c0 + j] = static_cast<float>(mean[j]);
  if (t.save_invstd)
    for (int64_t j = 0; j < g; ++j) t.save_invstd[c0 + j] = static_cast<float>(work[j]);
  if (t.running_mean) {
    float* rm = t.running_mean + c0;
    for (int64_t j = 0; j < g; ++j) rm[j] = static_cast<float>(keep * rm[j] + mom * mean[j]);
  }
  for (int64_t j = 0; j < g; ++j) {
    const double gi = (t.gamma ? t.gamma[c0 + j] : 1.0) * work[j];
    scale[j] = static_cast<float>(gi);
    shift[j] = static_cast<float>((t.beta ? t.beta[c0 + j] : 0.0) - mean[j] * gi);
  }
}

struct GradArgs {
  bool training;
  const float* gamma;
  const float* save_mean;
  const float* save_invstd;
  float* dgamma;
  float* dbeta;
};

// Channels [c0, c0 + g) with these sums of dy and dy * (x - mean): dgamma, dbeta, and
// dx = a * dy + b * (x - mean) + k (training subtracts the mean of dy and the projection on xhat).
void finish_grads(const GradArgs& t, int64_t c0, int64_t g, double count, const double* sum_dy,
                  const double* sum_dy_dev, float* a, float* b, float* k) {
  const double inv_count = 1.0 / count;
  const float* is = t.save_invstd + c0;
  if (t.dgamma)
    for (int64_t j = 0; j < g; ++j) t.dgamma[c0 + j] = static_cast<float>(sum_dy_dev[j] * is[j]);
  if (t.dbeta)
    for (int64_t j = 0; j < g; ++j) t.dbeta[c0 + j] = static_cast<float>(sum_dy[j]);
  for (int64_t j = 0; j < g; ++j) {
    const double invstd = is[j], ga = (t.gamma ? t.gamma[c0 + j] : 1.0) * invstd;
    a[j] = static_cast<float>(ga);
    b[j] = static_cast<float>(-ga * invstd * (sum_dy_dev[j] * invstd) * inv_count);
    k[j] = static_cast<float>(-ga * sum_dy[j] * inv_count);
  }
  if (!t.training) std::fill(b, b + g, 0.0f), std::fill(k, k + g, 0.0f);
}

// ---- row mode: a channel's N rows of HW floats at stride C * HW, in chunks of <= kBlock floats

struct Chunks {
  int64_t N, HW, rows_per, cols_per, row_chunks, col_chunks;
  Chunks(int64_t n, int64_t hw) : N(n), HW(hw) {
    rows_per = HW >= kBlock ? 1 : kBlock / HW;
    cols_per = HW >= kBlock ? kBlock : HW;
    row_chunks = (N + rows_per - 1) / rows_per;
    col_chunks = (HW + cols_per - 1) / cols_per;
  }
  int64_t count() const { return row_chunks * col_chunks; }
  // chunk q: rows [n0, n0 + nr) x columns [i0, i0 + nc)
  void at(int64_t q, int64_t& n0, int64_t& nr, int64_t& i0, int64_t& nc) const {
    n0 = q / col_chunks * rows_per, nr = std::min(rows_per, N - n0);
    i0 = q % col_chunks * cols_per, nc = std::min(cols_per, HW - i0);
  }
};

// Chunk q of channel c.
Moments chunk_moments(const BatchnormKernels& k, const Chunks& ch, int64_t C, int64_t c, int64_t q, const float* x) {
  int64_t n0, nr, i0, nc;
  ch.at(q, n0, nr, i0, nc);
  return run_moments(k, x + (n0 * C + c) * ch.HW + i0, nr, nc, C * ch.HW);
}

void chunk_grad(const BatchnormKernels& k, const Chunks& ch, int64_t C, int64_t c, int64_t q, const float* dy,
                const float* x, float mean, double& s1, double& s2) {
  int64_t n0, nr, i0, nc;
  ch.at(q, n0, nr, i0, nc);
  const int64_t off = (n0 * C + c) * ch.HW + i0;
  float a, b;
  k.grad_sums(dy + off, x + off, nr, nc, C * ch.HW, mean, &a, &b);
  s1 += a, s2 += b;
}

// Whole channels per task when they keep every thread busy; else chunks, then rows, over threads.
bool by_channels(int64_t C) { return C >= 4 * static_cast<int64_t>(num_threads()); }

int64_t grain_for(int64_t floats_per_item) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, floats_per_item)); }

void forward_rows(int64_t N, int64_t C, int64_t HW, const float* x, const TrainArgs& t, float* y) {
  const BatchnormKernels& k = batchnorm_kernels();
  const Chunks ch(N, HW);
  const int64_t nq = ch.count();
  const double count = static_cast<double>(N * HW);
  if (by_channels(C)) {
    parallel_for(C, grain_for(N * HW), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        Moments m;
        for (int64_t q = 0; q < nq; ++q) m.add(chunk_moments(k, ch, C, c, q, x));
        double work;
        float scale, shift;
        finish_channels(k, t, c, 1, count, &m.mean, &m.m2, &work, &scale, &shift);
        for (int64_t n = 0; y && n < N; ++n) k.affine(x + (n * C + c) * HW, HW, scale, shift, y + (n * C + c) * HW);
      }
    });
    return;
  }
  std::vector<Moments> parts(C * nq);
  parallel_for(C * nq, grain_for(std::min(kBlock, N * HW)), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) parts[u] = chunk_moments(k, ch, C, u / nq, u % nq, x);
  });
  std::vector<double> mean(C), m2(C), work(C);
  for (int64_t c = 0; c < C; ++c) {
    Moments m;
    for (int64_t q = 0; q < nq; ++q) m.add(parts[c * nq + q]);
    mean[c] = m.mean, m2[c] = m.m2;
  }
  std::vector<float> scale(C), shift(C);
  finish_channels(k, t, 0, C, count, mean.data(), m2.data(), work.data(), scale.data(), shift.data());
  if (!y) return;
  parallel_for(N * C, grain_for(HW), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) k.affine(x + r * HW, HW, scale[r % C], shift[r % C], y + r * HW);
  });
}

void backward_rows(int64_t N, int64_t C, int64_t HW, const float* dy, const float* x, const GradArgs& t, float* dx) {
  const BatchnormKernels& k = batchnorm_kernels();
  const Chunks ch(N, HW);
  const int64_t nq = ch.count();
  const double count = static_cast<double>(N * HW);
  const bool sums = t.training || t.dgamma || t.dbeta;
  if (by_channels(C)) {
    parallel_for(C, grain_for(N * HW), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double s1 = 0, s2 = 0;
        for (int64_t q = 0; sums && q < nq; ++q) chunk_grad(k, ch, C, c, q, dy, x, t.save_mean[c], s1, s2);
        float a, b, kk;
        finish_grads(t, c, 1, count, &s1, &s2, &a, &b, &kk);
        if (!dx) continue;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t off = (n * C + c) * HW;
          k.dx(dy + off, x + off, HW, a, b, t.save_mean[c], kk, dx + off);
        }
      }
    });
    return;
  }
  std::vector<double> p1(C * nq, 0.0), p2(C * nq, 0.0);
  if (sums)
    parallel_for(C * nq, grain_for(std::min(kBlock, N * HW)), [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) chunk_grad(k, ch, C, u / nq, u % nq, dy, x, t.save_mean[u / nq], p1[u], p2[u]);
    });
  std::vector<double> s1(C, 0.0), s2(C, 0.0);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t q = 0; q < nq; ++q) s1[c] += p1[c * nq + q], s2[c] += p2[c * nq + q];
  std::vector<float> a(C), b(C), kk(C);
  finish_grads(t, 0, C, count, s1.data(), s2.data(), a.data(), b.data(), kk.data());
  if (!dx) return;
  parallel_for(N * C, grain_for(HW), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r % C;
      k.dx(dy + r * HW, x + r * HW, HW, a[c], b[c], t.save_mean[c], kk[c], dx + r * HW);
    }
  });
}

// ---- column mode: groups of g channels, each N rows of g * HW floats at stride C * HW

int64_t group_channels(int64_t N, int64_t C, int64_t HW) {
  // about kGroupCols columns, and N of those rows within ~128 KiB where N allows (the later
  // passes, and backward's two tensors, then read from L2)
  int64_t g = std::max<int64_t>(1, kGroupCols / HW);
  g = std::min(g, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, N * HW)));
  return std::min(g, C);
}

// Scratch of one task, reused over its groups.
struct GroupScratch {
  std::vector<double> t1, t2, work;
  std::vector<float> f1, f2, col1, col2, col3, ch1, ch2, ch3;
  GroupScratch(int64_t g, int64_t HW)
      : t1(g), t2(g), work(g), f1(g * HW), f2(g * HW), col1(g * HW), col2(g * HW), col3(g * HW), ch1(g), ch2(g),
        ch3(g) {}
};

// Calls fn(c0, g, scratch) for every channel group, groups split over threads.
template <class F>
void for_groups(int64_t N, int64_t C, int64_t HW, F fn) {
  const int64_t g = group_channels(N, C, HW);
  const int64_t groups = (C + g - 1) / g;
  parallel_for(groups, grain_for(N * g * HW), [&](int64_t q0, int64_t q1) {
    GroupScratch s(g, HW);
    for (int64_t q = q0; q < q1; ++q) fn(q * g, std::min(g, C - q * g), s);
  });
}

// Per channel v[c] along its HW columns: v itself when HW is 1, else spread into out.
const float* per_column(int64_t g, int64_t HW, const float* v, std::vector<float>& out) {
  if (HW == 1) return v;
  for (int64_t c = 0; c < g; ++c)
    for (int64_t i = 0; i < HW; ++i) out[c * HW + i] = v[c];
  return out.data();
}

// t1, t2 = per channel of the group, the sums over its HW columns and the N rows of the terms
// that term(row n, f1, f2) adds into the float column accumulators: float over kRows rows, then
// double
template <class Term>
void channel_sums(int64_t N, int64_t g, int64_t HW, GroupScratch& s, Term term) {
  const int64_t cols = g * HW;
  std::fill(s.t1.begin(), s.t1.begin() + g, 0.0);
  std::fill(s.t2.begin(), s.t2.begin() + g, 0.0);
  for (int64_t n0 = 0; n0 < N; n0 += kRows) {
    std::fill(s.f1.begin(), s.f1.begin() + cols, 0.0f);
    std::fill(s.f2.begin(), s.f2.begin() + cols, 0.0f);
    for (int64_t n = n0; n < std::min(N, n0 + kRows); ++n) term(n, s.f1.data(), s.f2.data());
    for (int64_t c = 0; c < g; ++c) {
      double a = 0, b = 0;
      for (int64_t i = 0; i < HW; ++i) a += s.f1[c * HW + i], b += s.f2[c * HW + i];
      s.t1[c] += a, s.t2[c] += b;
    }
  }
}

void forward_columns(int64_t N, int64_t C, int64_t HW, const float* x, const TrainArgs& t, float* y) {
  const BatchnormKernels& k = batchnorm_kernels();
  const int64_t ld = C * HW;
  const double count = static_cast<double>(N * HW);
  for_groups(N, C, HW, [&](int64_t c0, int64_t g, GroupScratch& s) {
    const int64_t cols = g * HW;
    const float* base = x + c0 * HW;
    // pass 1: the channel means, rounded to float: the pivots of pass 2
    channel_sums(N, g, HW, s, [&](int64_t n, float* a1, float*) {
      const float* r = base + n * ld;
      for (int64_t j = 0; j < cols; ++j) a1[j] += r[j];
    });
    float* pivot = s.ch1.data();
    for (int64_t c = 0; c < g; ++c) pivot[c] = static_cast<float>(s.t1[c] / count);
    const float* p = per_column(g, HW, pivot, s.col1);
    // pass 2: sums of x - pivot and of its square, as in chunk_moments
    channel_sums(N, g, HW, s, [&](int64_t n, float* a1, float* a2) {
      const float* r = base + n * ld;
      for (int64_t j = 0; j < cols; ++j) {
        const float d = r[j] - p[j];
        a1[j] += d;
        a2[j] += d * d;
      }
    });
    for (int64_t c = 0; c < g; ++c) {  // into the means and M2
      const double s1 = s.t1[c], d = s1 / count;
      s.t1[c] = pivot[c] + d;
      s.t2[c] = std::max(0.0, s.t2[c] - s1 * d);
    }
    finish_channels(k, t, c0, g, count, s.t1.data(), s.t2.data(), s.work.data(), s.ch2.data(), s.ch3.data());
    if (!y) return;
    const float* sc = per_column(g, HW, s.ch2.data(), s.col2);
    const float* sh = per_column(g, HW, s.ch3.data(), s.col3);
    // pass 3: normalise
    for (int64_t n = 0; n < N; ++n) {
      const float* r = base + n * ld;
      float* o = y + c0 * HW + n * ld;
      for (int64_t j = 0; j < cols; ++j) o[j] = r[j] * sc[j] + sh[j];
    }
  });
}

void backward_columns(int64_t N, int64_t C, int64_t HW, const float* dy, const float* x, const GradArgs& t,
                      float* dx) {
  const int64_t ld = C * HW;
  const double count = static_cast<double>(N * HW);
  const bool sums = t.training || t.dgamma || t.dbeta;
  for_groups(N, C, HW, [&](int64_t c0, int64_t g, GroupScratch& s) {
    const int64_t cols = g * HW;
    const float* m = per_column(g, HW, t.save_mean + c0, s.col1);
    const float* xb = x + c0 * HW;
    const float* gb = dy + c0 * HW;
    std::fill(s.t1.begin(), s.t1.end(), 0.0);
    std::fill(s.t2.begin(), s.t2.end(), 0.0);
    if (sums)
      channel_sums(N, g, HW, s, [&](int64_t n, float* a1, float* a2) {
        const float* xr = xb + n * ld;
        const float* gr = gb + n * ld;
        for (int64_t j = 0; j < cols; ++j) {
          a1[j] += gr[j];
          a2[j] += gr[j] * (xr[j] - m[j]);
        }
      });
    finish_grads(t, c0, g, count, s.t1.data(), s.t2.data(), s.ch1.data(), s.ch2.data(), s.ch3.data());
    if (!dx) return;
    const float* pa = per_column(g, HW, s.ch1.data(), s.col2);
    const float* pb = per_column(g, HW, s.ch2.data(), s.col3);
    const float* pk = per_column(g, HW, s.ch3.data(), s.f2);
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = xb + n * ld;
      const float* gr = gb + n * ld;
      float* o = dx + c0 * HW + n * ld;
      for (int64_t j = 0; j < cols; ++j) o[j] = pa[j] * gr[j] + pb[j] * (xr[j] - m[j]) + pk[j];
    }
  });
}

}  // namespace

const BatchnormKernels& portable_batchnorm_kernels() { return kPortable; }
const BatchnormKernels& batchnorm_kernels() { return *active_kernels(); }
void set_batchnorm_kernels(const BatchnormKernels& k) { active_kernels() = &k; }

namespace {

// batch norm in training, without the epilogue (BnEpilogue)
void normalise_train(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                     float* running_mean, float* running_var, float momentum, float eps, float* y, float* save_mean,
                     float* save_invstd, const float* moments) {
  if (N * HW == 0 || C == 0) return;
  const TrainArgs t{gamma, beta, running_mean, running_var, momentum, eps, save_mean, save_invstd, nullptr};
  if (!moments) {
    (HW >= kShortHW ? forward_rows : forward_columns)(N, C, HW, x, t, y);
    return;
  }
  // the statistics are given: the per-channel step, then (for y) the affine pass alone
  const double count = static_cast<double>(N * HW);
  std::vector<double> mean(C), m2(C), work(C);
  for (int64_t c = 0; c < C; ++c) mean[c] = moments[2 * c], m2[c] = static_cast<double>(moments[2 * c + 1]) * count;
  std::vector<float> scale(C), shift(C);
  finish_channels(batchnorm_kernels(), t, 0, C, count, mean.data(), m2.data(), work.data(), scale.data(), shift.data());
  if (!y) return;
  const BatchnormKernels& k = batchnorm_kernels();
  parallel_for(N * C, grain_for(HW), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) k.affine(x + r * HW, HW, scale[r % C], shift[r % C], y + r * HW);
  });
}

}  // namespace

Moments run_moments(const BatchnormKernels& k, const float* p, int64_t rows, int64_t len, int64_t ld) {
  // the mean a in float, then the sums of d = x - a while the values are in L1; the shift
  // corrects for a being rounded (M2 = sum d^2 - (sum d)^2 / n)
  const double n = static_cast<double>(rows * len);
  const float a = static_cast<float>(k.sum(p, rows, len, ld) / n);
  float s1, s2;
  k.shifted_sums(p, rows, len, ld, a, &s1, &s2);
  const double d = s1 / n;
  return {n, a + d, std::max(0.0, s2 - s1 * d)};
}

void channel_moments(int64_t N, int64_t C, int64_t HW, const float* x, float* moments) {
  if (C == 0) return;
  if (N * HW == 0) {
    std::fill(moments, moments + 2 * C, 0.0f);
    return;
  }
  const TrainArgs t{nullptr, nullptr, nullptr, nullptr, 0.0f, 1.0f, nullptr, nullptr, moments};
  (HW >= kShortHW ? forward_rows : forward_columns)(N, C, HW, x, t, nullptr);
}

namespace {

// batch norm in eval, without the epilogue
void normalise_eval(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                    const float* running_mean, const float* running_var, float eps, float* y) {
  if (N * C * HW == 0) return;
  std::vector<float> sc(C), sh(C);
  for (int64_t c = 0; c < C; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    sc[c] = static_cast<float>(g * invstd);
    sh[c] = static_cast<float>(b - running_mean[c] * g * invstd);
  }
  if (HW >= kShortHW) {
    parallel_for(N * C, grain_for(HW), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) batchnorm_kernels().affine(x + r * HW, HW, sc[r % C], sh[r % C], y + r * HW);
    });
    return;
  }
  // short rows: the coefficients laid out along a whole (C, HW) sample
  const int64_t ld = C * HW;
  std::vector<float> a(ld), b(ld);
  for (int64_t j = 0; j < ld; ++j) a[j] = sc[j / HW], b[j] = sh[j / HW];
  parallel_for(N, std::max<int64_t>(1, kGrain / ld), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* r = x + n * ld;
      float* o = y + n * ld;
      const float* pa = a.data();
      const float* pb = b.data();
      for (int64_t j = 0; j < ld; ++j) o[j] = r[j] * pa[j] + pb[j];
    }
  });
}

}  // namespace

namespace {

// y += residual, then LeakyReLU, as the separate ops would round them (on the CPU in passes of
// their own, as those ops)
void apply_epilogue(int64_t n, const BnEpilogue& epi, float* y) {
  if (!y) return;
  if (epi.residual) {
    const float* r = epi.residual;
    parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) y[i] += r[i];
    });
  }
  if (epi.leaky) unary_forward(UnaryOp::LeakyRelu, static_cast<size_t>(n), y, epi.slope, y);
}

}  // namespace

void batchnorm_forward_train(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                             float* running_mean, float* running_var, float momentum, float eps, float* y,
                             float* save_mean, float* save_invstd, const float* moments, const BnEpilogue& epi) {
  normalise_train(N, C, HW, x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean, save_invstd,
                  moments);
  if (N * HW != 0) apply_epilogue(N * C * HW, epi, y);
}

void batchnorm_forward_eval(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y,
                            const BnEpilogue& epi) {
  normalise_eval(N, C, HW, x, gamma, beta, running_mean, running_var, eps, y);
  apply_epilogue(N * C * HW, epi, y);
}

void batchnorm_leaky_backward(int64_t N, int64_t C, int64_t HW, bool training, float slope, const float* dy,
                              const float* y, const float* x, const float* gamma, const float* save_mean,
                              const float* save_invstd, float* dx, float* dgamma, float* dbeta) {
  // LeakyReLU's backward takes its input's sign, which its output has (slope >= 0)
  const size_t n = static_cast<size_t>(N * C * HW);
  const HostFloats dz(n);
  unary_backward(UnaryOp::LeakyRelu, n, dy, y, y, slope, dz.get());
  batchnorm_backward(N, C, HW, training, dz.get(), x, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}

void batchnorm_backward(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                        float* dgamma, float* dbeta) {
  if (C == 0) return;
  if (N * HW == 0) {
    for (int64_t c = 0; c < C; ++c) {
      if (dgamma) dgamma[c] = 0.0f;
      if (dbeta) dbeta[c] = 0.0f;
    }
    return;
  }
  const GradArgs t{training, gamma, save_mean, save_invstd, dgamma, dbeta};
  (HW >= kShortHW ? backward_rows : backward_columns)(N, C, HW, dy, x, t, dx);
}

// ---- the plain loops

void batchnorm_forward_train_reference(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma,
                                       const float* beta, float* running_mean, float* running_var, float momentum,
                                       float eps, float* y, float* save_mean, float* save_invstd) {
  const int64_t count = N * HW;
  if (count == 0) return;
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, sq = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s += x[(n * C + c) * HW + i];
    const double mean = s / count;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double d = x[(n * C + c) * HW + i] - mean;
        sq += d * d;
      }
    const double var = sq / count, invstd = 1.0 / std::sqrt(var + eps);
    if (save_mean) save_mean[c] = static_cast<float>(mean);
    if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
    if (running_mean) running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean);
    if (running_var) {
      const double unbiased = count > 1 ? var * count / (count - 1) : var;
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
    const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    const float a = static_cast<float>(g * invstd), k = static_cast<float>(b - mean * g * invstd);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        y[j] = x[j] * a + k;
      }
  }
}

void batchnorm_forward_eval_reference(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma,
                                      const float* beta, const float* running_mean, const float* running_var,
                                      float eps, float* y) {
  for (int64_t c = 0; c < C; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    const float a = static_cast<float>(g * invstd), k = static_cast<float>(b - running_mean[c] * g * invstd);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        y[j] = x[j] * a + k;
      }
  }
}

void batchnorm_backward_reference(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                                  const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                                  float* dgamma, float* dbeta) {
  const double count = static_cast<double>(N * HW);
  for (int64_t c = 0; c < C; ++c) {
    double sum_dy = 0, sum_dy_dev = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        sum_dy += dy[j];
        sum_dy_dev += dy[j] * (static_cast<double>(x[j]) - save_mean[c]);
      }
    const double invstd = save_invstd[c], sum_dy_xhat = sum_dy_dev * invstd;
    if (dgamma) dgamma[c] = static_cast<float>(sum_dy_xhat);
    if (dbeta) dbeta[c] = static_cast<float>(sum_dy);
    if (!dx) continue;
    // dx = a * dy + b * (x - mean) + k: training subtracts the mean of dy and the projection on xhat
    const double ga = (gamma ? gamma[c] : 1.0) * invstd;
    const bool t = training && count > 0;
    const float a = static_cast<float>(ga), m = save_mean[c];
    const float b = t ? static_cast<float>(-ga * invstd * sum_dy_xhat / count) : 0.0f;
    const float k = t ? static_cast<float>(-ga * sum_dy / count) : 0.0f;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        dx[j] = a * dy[j] + b * (x[j] - m) + k;
      }
  }
}

}  // namespace c3::cpu
