// Constant (code) channels of a stride-1 'same' conv (conv_const.cuh has the scheme and the
// index logic). Forward: a table of tap-summed code weights per (k, border class), a warp per
// (n, k, class) for its dot with code[n, :], then y += the bias of each position's class.
// Backward: a block per (n, k) plane sums dy per class (a warp per row, interior rows added
// per warp, the warps' partials in order) and turns those into the box sums D[n, k, r, s]; then
// a thread per dw entry (n in order) and a warp per dcode entry. All sums in double.
#include <cuda_runtime.h>

#include <algorithm>

#include "conv_const.cuh"
#include "hd.cuh"
#include "reduce.cuh"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

using codech::Plan;

constexpr int kThreads = 256;
constexpr size_t kMaxShared = 48 * 1024;  // the default dynamic shared memory limit

// ---- forward ----

__global__ void code_wsum_kernel(Plan q, int n, const float* __restrict__ w, double* __restrict__ wsum) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    wsum[i] = codech::wsum_at(q, w, static_cast<int>(i));
}

// a warp per bias entry (n, k, class): code[n, :] . wsum[k, class, :], j in lane order
__global__ void code_bias_kernel(Plan q, int n, const float* __restrict__ code, const double* __restrict__ wsum,
                                 float* __restrict__ bias) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t b = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5; b < n; b += warps) {  // warp-uniform
    int64_t co, wo;
    codech::bias_rows(q, static_cast<int>(b), co, wo);
    double acc = 0.0;
    for (int j = lane; j < q.Kc; j += 32) acc += static_cast<double>(code[co + j]) * wsum[wo + j];
    acc = warp_sum(acc);
    if (lane == 0) bias[b] = static_cast<float>(acc);
  }
}

__global__ void code_bias_add_kernel(Plan q, int n, FastDiv ohw, FastDiv ow, const float* __restrict__ bias,
                                     float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[codech::bias_index(q, ohw, ow, static_cast<int>(i))];
}

// ---- backward ----

// Block (n, k): D[n, k, :] from the plane's class sums. Dynamic shared memory: per-warp sums of
// the interior rows (warps x column classes) and the class sums E (row classes x column classes).
__global__ void code_tap_sums_kernel(Plan q, const float* __restrict__ dy, float* __restrict__ D) {
  C3_DYNAMIC_SHARED(double, smem);
  const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int ncs = q.col.classes();
  double* part = smem;
  double* E = smem + warps * ncs;
  const int64_t plane = blockIdx.x;
  const float* src = dy + plane * q.row.out * q.col.out;
  for (int i = threadIdx.x; i < warps * ncs; i += blockDim.x) part[i] = 0.0;
  __syncthreads();
  const bool col_interior = q.col.has_interior();
  const int x0 = q.col.pad, x1 = q.col.out - q.col.pad;
  for (int h = warp; h < q.row.out; h += warps) {  // warp-uniform: every lane takes part in warp_sum
    const float* rowp = src + static_cast<int64_t>(h) * q.col.out;
    double inner = 0.0;
    if (col_interior) {
      for (int x = x0 + lane; x < x1; x += 32) inner += rowp[x];
      inner = warp_sum(inner);
    }
    const int cr = q.row.cls(h);
    const bool interior_row = q.row.has_interior() && cr == q.row.pad;
    for (int cs = lane; cs < ncs; cs += 32) {  // one lane per column class: no write conflicts
      const double v = codech::col_class_value(q.col, rowp, cs, inner);
      if (interior_row) part[warp * ncs + cs] += v;  // this warp's rows in increasing order
      else E[cr * ncs + cs] = v;                      // a border row is its class's only row
    }
  }
  __syncthreads();
  if (q.row.has_interior())
    for (int cs = threadIdx.x; cs < ncs; cs += blockDim.x) {
      double s = 0.0;
      for (int w = 0; w < warps; ++w) s += part[w * ncs + cs];
      E[q.row.pad * ncs + cs] = s;
    }
  __syncthreads();
  for (int t = threadIdx.x; t < q.RS; t += blockDim.x) D[plane * q.RS + t] = static_cast<float>(codech::tap_sum(q, E, t));
}

__global__ void code_dw_kernel(Plan q, int n, const float* __restrict__ code, const float* __restrict__ D,
                               float* __restrict__ dw) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off;
    const double v = codech::dw_at(q, code, D, static_cast<int>(i), off);
    dw[off] = static_cast<float>(v);
  }
}

// a warp per dcode entry (n, j): the K*RS terms in lane order
__global__ void code_dcode_kernel(Plan q, int n, const float* __restrict__ w, const float* __restrict__ D,
                                  float* __restrict__ dcode) {
  const int lane = threadIdx.x & 31, terms = q.K * q.RS;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t e = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5; e < n; e += warps) {  // warp-uniform
    const int ni = static_cast<int>(e / q.Kc), j = static_cast<int>(e % q.Kc);
    double acc = 0.0;
    for (int u = lane; u < terms; u += 32) acc += codech::dcode_term(q, w, D, ni, j, u);
    acc = warp_sum(acc);
    if (lane == 0) dcode[e] = static_cast<float>(acc);
  }
}

void forward(const Plan& q, const float* code, const float* w, float* y) {
  const int64_t ncls = q.classes(), OHW = int64_t(q.row.out) * q.col.out;
  const int64_t nw = q.K * ncls * q.Kc, nb = int64_t(q.N) * q.K * ncls, ny = int64_t(q.N) * q.K * OHW;
  need_int32(nw, "cuda conv2d_code_channels", "the tap-summed weight table");
  need_int32(nb * 32, "cuda conv2d_code_channels", "the bias table (x 32 lanes)");
  need_int32(ny, "cuda conv2d_code_channels", "the output");
  if (ny == 0) return;
  Scratch wsum(sizeof(double) * static_cast<size_t>(nw)), bias(sizeof(float) * static_cast<size_t>(nb));
  launch("conv2d_code_channels wsum", code_wsum_kernel, grid_for(nw, kThreads), kThreads, 0, q, static_cast<int>(nw),
         w, wsum.as<double>());
  launch("conv2d_code_channels bias", code_bias_kernel, grid_for(nb * 32, kThreads), kThreads, 0, q,
         static_cast<int>(nb), code, static_cast<const double*>(wsum.as<double>()), bias.as<float>());
  launch("conv2d_code_channels add", code_bias_add_kernel, grid_for(ny, kThreads), kThreads, 0, q,
         static_cast<int>(ny), FastDiv(OHW), FastDiv(q.col.out), static_cast<const float*>(bias.as<float>()), y);
}

void backward(const Plan& q, const float* code, const float* w, const float* dy, float* dw, float* dcode) {
  const char* op = "cuda conv2d_code_channels";
  if (q.Kc == 0 || (!dw && !dcode)) return;  // no code channels: dw's code part and dcode are empty
  const int64_t planes = int64_t(q.N) * q.K, OHW = int64_t(q.row.out) * q.col.out;
  need_int32(planes * OHW, op, "dy");
  need_int32(planes * q.RS, op, "the tap sums");
  need_int32(int64_t(q.K) * q.Kc * q.RS, op, "the code part of dw");
  need_int32(int64_t(q.N) * q.Kc * 32, op, "dcode (x 32 lanes)");
  // D (N, K, R, S); empty when there is no plane (then dw's code part and dcode are zero sums)
  Scratch D(sizeof(float) * static_cast<size_t>(planes * q.RS));
  if (planes > 0) {
    const int warps = static_cast<int>(std::min<int64_t>(8, std::max(1, q.row.out)));
    const size_t shared = sizeof(double) * static_cast<size_t>(q.col.classes()) * (warps + q.row.classes());
    c3::check(shared <= kMaxShared, op, "a ", q.row.taps, "x", q.col.taps, " kernel on a ", q.row.out, "x", q.col.out,
              " map needs ", shared, " bytes of shared memory for its border classes; the limit is ", kMaxShared);
    launch("conv2d_code_channels tap sums", code_tap_sums_kernel, static_cast<unsigned>(planes), 32 * warps, shared, q,
           dy, D.as<float>());
  }
  const float* d = D.as<float>();
  if (dw) {
    const int64_t n = int64_t(q.K) * q.Kc * q.RS;
    launch("conv2d_code_channels dw", code_dw_kernel, grid_for(n, kThreads), kThreads, 0, q, static_cast<int>(n), code,
           d, dw);
  }
  if (dcode) {
    const int64_t n = int64_t(q.N) * q.Kc;
    launch("conv2d_code_channels dcode", code_dcode_kernel, grid_for(n * 32, kThreads), kThreads, 0, q,
           static_cast<int>(n), w, d, dcode);
  }
}

}  // namespace

void conv2d_code_channels(bool backward_pass, const Conv2dParams& p, int64_t Kc, const float* code, const float* w,
                          const float* dy, float* y, float* dw, float* dcode) {
  need_int32(p.K * p.C * p.R * p.S, "cuda conv2d_code_channels", "the weight");
  const Plan q = codech::make_plan(p, Kc);
  if (backward_pass) backward(q, code, w, dy, dw, dcode);
  else if (Kc > 0) forward(q, code, w, y);
}

}  // namespace c3::cuda
