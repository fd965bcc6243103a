// c3gan_cuda_bench --bench [--out FILE] [--reps N]: times the CUDA backend's GEMM (4096^3) and
// conv2d passes on CUB-sized shapes, in TF32 and exact-FP32 modes, prints TFLOP/s beside the
// H200's datasheet peaks, and spot-checks each timed result against float64 sums on the host
// (so a fast wrong kernel cannot pass). --out writes "name<TAB>ms<TAB>tflops" lines for the
// device-check script's PyTorch comparison.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../core/backend.h"
#include "../../core/error.h"
#include "../cuda.h"
#include "../runtime.cuh"

namespace {

// datasheet peaks of the H200 SXM (the same chip as the H100 SXM): dense TF32 tensor, FP32 FFMA
constexpr double kPeakTF32 = 494.7, kPeakFP32 = 66.9;

const c3::Backend& gpu() { return *c3::cuda_backend(); }

struct DevBuf {
  float* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count, uint64_t seed) : p(static_cast<float*>(gpu().alloc(count * 4))), n(count) {
    gpu().rand_uniform(p, n, seed, 0, -1.0f, 1.0f);
  }
  ~DevBuf() { gpu().free(p); }
  std::vector<float> host() const {
    std::vector<float> h(n);
    gpu().synchronize();
    gpu().download(h.data(), p, n);
    return h;
  }
};

// median over 5 batches of the mean time per call, in ms (after warm-up calls)
template <class F>
double time_ms(F f, int reps) {
  f();
  f();
  gpu().synchronize();
  cudaEvent_t a, b;
  c3::cuda::check_cuda(cudaEventCreate(&a), "bench event");
  c3::cuda::check_cuda(cudaEventCreate(&b), "bench event");
  std::vector<double> t;
  const int per = std::max(1, reps / 5);
  for (int batch = 0; batch < 5; ++batch) {
    c3::cuda::check_cuda(cudaEventRecord(a, c3::cuda::stream()), "bench event");
    for (int i = 0; i < per; ++i) f();
    c3::cuda::check_cuda(cudaEventRecord(b, c3::cuda::stream()), "bench event");
    c3::cuda::check_cuda(cudaEventSynchronize(b), "bench event");
    float ms = 0;
    c3::cuda::check_cuda(cudaEventElapsedTime(&ms, a, b), "bench event");
    t.push_back(ms / per);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[2];
}

FILE* g_out = nullptr;
int g_failures = 0;

void report(const std::string& name, double ms, double flops, bool tf32, const std::string& check) {
  const double tflops = flops / (ms * 1e-3) / 1e12;
  const double peak = tf32 ? kPeakTF32 : kPeakFP32;
  std::printf("%-44s %9.3f ms %8.1f TFLOP/s  (%4.1f%% of the %s peak %.0f)  %s\n", name.c_str(), ms, tflops,
              100.0 * tflops / peak, tf32 ? "TF32" : "FP32", peak, check.c_str());
  if (g_out) std::fprintf(g_out, "%s\t%.6f\t%.3f\n", name.c_str(), ms, tflops);
}

// Compares sampled outputs with float64 sums: |got - want| <= tol * sum |terms|.
struct Checker {
  double tol;
  double worst = 0;
  int bad = 0;
  void add(double got, double want, double scale) {
    const double r = std::fabs(got - want) / (tol * scale + 1e-30);
    if (!(r <= 1.0)) ++bad;
    worst = std::max(worst, r == r ? r : INFINITY);
  }
  std::string verdict() {
    char b[96];
    if (bad) ++g_failures;
    std::snprintf(b, sizeof b, "check %s (worst error %.2f of bound)", bad ? "FAILED" : "ok", worst);
    return b;
  }
};

double check_tol(bool tf32, int64_t K) { return (tf32 ? 1.0e-3 + 3.0 * K * 6e-8 : 2.0 * K * 6e-8) + 1e-6; }

void bench_gemm(int64_t n, bool tf32, int reps) {
  c3::cuda_set_math(tf32 ? c3::CudaMath::TF32 : c3::CudaMath::FP32);
  DevBuf A(n * n, 1), B(n * n, 2), C(n * n, 3);
  const double ms = time_ms([&] { gpu().gemm(false, false, n, n, n, 1.0f, A.p, B.p, 0.0f, C.p); }, reps);
  std::vector<float> a = A.host(), b = B.host(), c = C.host();
  Checker chk{check_tol(tf32, n)};
  for (int s = 0; s < 48; ++s) {
    const int64_t i = (s * 977 + 13) % n, j = (s * 1543 + 7) % n;
    double want = 0, scale = 0;
    for (int64_t k = 0; k < n; ++k) {
      const double t = static_cast<double>(a[i * n + k]) * b[k * n + j];
      want += t, scale += std::fabs(t);
    }
    chk.add(c[i * n + j], want, scale);
  }
  report("gemm " + std::to_string(n) + "^3 " + (tf32 ? "tf32" : "fp32"), ms, 2.0 * n * n * n, tf32, chk.verdict());
}

struct ConvShape {
  const char* name;
  int64_t N, C, H, W, K, R, S, stride, pad;
};

// The conv -> batch-norm statistics: the conv, then batch norm summing its output, against the
// conv's epilogue handing the moments over (backend.h conv2d_forward's moments), side by side.
void bench_conv_bn_statistics(const c3::Conv2dParams& p, const float* x, const float* w, float* y,
                              const std::string& tag, int reps) {
  const int64_t C = p.K, HW = p.OH * p.OW;
  DevBuf g(C, 21), b(C, 22), rm(C, 23), rv(C, 24), mean(C, 25), invstd(C, 26), moments(2 * C, 27);
  const double t_two = time_ms([&] {
    gpu().conv2d_forward(p, x, w, nullptr, y, nullptr);
    gpu().batchnorm_forward_train(p.N, C, HW, y, g.p, b.p, rm.p, rv.p, 0.1f, 1e-5f, nullptr, mean.p, invstd.p, nullptr,
                                  c3::BnEpilogue{});
  }, reps);
  const std::vector<float> m_two = mean.host(), i_two = invstd.host();
  const double t_fused = time_ms([&] {
    gpu().conv2d_forward(p, x, w, nullptr, y, moments.p);
    gpu().batchnorm_forward_train(p.N, C, HW, y, g.p, b.p, rm.p, rv.p, 0.1f, 1e-5f, nullptr, mean.p, invstd.p,
                                  moments.p, c3::BnEpilogue{});
  }, reps);
  const std::vector<float> m_fused = mean.host(), i_fused = invstd.host();
  double worst = 0;  // the two ways' statistics agree to float rounding
  for (int64_t c = 0; c < C; ++c)
    worst = std::fmax(worst, std::fabs(static_cast<double>(i_fused[c]) - i_two[c]) / std::fabs(i_two[c]) +
                                 std::fabs(static_cast<double>(m_fused[c]) - m_two[c]) * i_two[c]);
  std::printf("%-44s %9.3f ms   (conv, then batch norm's statistics pass %.3f ms: %.2fx) %s\n",
              (tag + " fwd+BN stats, fused").c_str(), t_fused, t_two, t_two / t_fused,
              worst <= 1e-4 ? "ok" : "MISMATCH");
  if (!(worst <= 1e-4)) ++g_failures;
  if (g_out) std::fprintf(g_out, "%s\t%.6f\t%.6f\n", (tag + " fwd+BN stats (fused, two-pass ms)").c_str(), t_fused, t_two);
}

void bench_conv(const ConvShape& cs, bool tf32, int reps) {
  c3::cuda_set_math(tf32 ? c3::CudaMath::TF32 : c3::CudaMath::FP32);
  c3::Conv2dParams p{cs.N, cs.C, cs.H, cs.W, cs.K, cs.R, cs.S, 0, 0, cs.stride, cs.pad};
  p.OH = (p.H + 2 * p.pad - p.R) / p.stride + 1;
  p.OW = (p.W + 2 * p.pad - p.S) / p.stride + 1;
  DevBuf x(p.N * p.C * p.H * p.W, 11), w(p.K * p.C * p.R * p.S, 12), y(p.N * p.K * p.OH * p.OW, 13),
      dy(p.N * p.K * p.OH * p.OW, 14), dx(p.N * p.C * p.H * p.W, 15), dw(p.K * p.C * p.R * p.S, 16);
  const double flops = 2.0 * p.N * p.K * p.OH * p.OW * p.C * p.R * p.S;
  const std::string tag = std::string("conv ") + cs.name + (tf32 ? " tf32" : " fp32");
  const double t_fwd = time_ms([&] { gpu().conv2d_forward(p, x.p, w.p, nullptr, y.p, nullptr); }, reps);
  const double t_bd = time_ms([&] { gpu().conv2d_backward_data(p, dy.p, w.p, dx.p); }, reps);
  const double t_bw = time_ms([&] { gpu().conv2d_backward_weight(p, dy.p, x.p, dw.p); }, reps);
  const std::vector<float> hx = x.host(), hw = w.host(), hy = y.host(), hdy = dy.host(), hdx = dx.host(), hdw = dw.host();
  auto X = [&](int64_t n, int64_t c, int64_t h, int64_t ww) { return hx[((n * p.C + c) * p.H + h) * p.W + ww]; };
  auto Wt = [&](int64_t k, int64_t c, int64_t r, int64_t s) { return hw[((k * p.C + c) * p.R + r) * p.S + s]; };
  auto DY = [&](int64_t n, int64_t k, int64_t oh, int64_t ow) { return hdy[((n * p.K + k) * p.OH + oh) * p.OW + ow]; };
  Checker cf{check_tol(tf32, p.C * p.R * p.S)}, cd{check_tol(tf32, p.K * p.R * p.S)},
      cw{check_tol(tf32, p.N * p.OH * p.OW)};
  for (int s = 0; s < 24; ++s) {
    const int64_t n = (s * 7) % p.N, k = (s * 13) % p.K, c = (s * 5) % p.C;
    const int64_t oh = (s * 11) % p.OH, ow = (s * 17 + 3) % p.OW, h = (s * 19 + 1) % p.H, ww = (s * 23) % p.W;
    const int64_t r = s % p.R, q = (s / 2) % p.S;
    double want = 0, scale = 0;  // forward y[n, k, oh, ow]
    for (int64_t cc = 0; cc < p.C; ++cc)
      for (int64_t rr = 0; rr < p.R; ++rr)
        for (int64_t qq = 0; qq < p.S; ++qq) {
          const int64_t ih = oh * p.stride - p.pad + rr, iw = ow * p.stride - p.pad + qq;
          if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
          const double t = static_cast<double>(X(n, cc, ih, iw)) * Wt(k, cc, rr, qq);
          want += t, scale += std::fabs(t);
        }
    cf.add(hy[((n * p.K + k) * p.OH + oh) * p.OW + ow], want, scale);
    want = 0, scale = 0;  // backward data dx[n, c, h, ww]
    for (int64_t kk = 0; kk < p.K; ++kk)
      for (int64_t rr = 0; rr < p.R; ++rr)
        for (int64_t qq = 0; qq < p.S; ++qq) {
          const int64_t th = h + p.pad - rr, tw = ww + p.pad - qq;
          if (th < 0 || tw < 0 || th % p.stride || tw % p.stride) continue;
          const int64_t o1 = th / p.stride, o2 = tw / p.stride;
          if (o1 >= p.OH || o2 >= p.OW) continue;
          const double t = static_cast<double>(DY(n, kk, o1, o2)) * Wt(kk, c, rr, qq);
          want += t, scale += std::fabs(t);
        }
    cd.add(hdx[((n * p.C + c) * p.H + h) * p.W + ww], want, scale);
    want = 0, scale = 0;  // backward weight dw[k, c, r, q]
    for (int64_t nn = 0; nn < p.N; ++nn)
      for (int64_t o1 = 0; o1 < p.OH; ++o1)
        for (int64_t o2 = 0; o2 < p.OW; ++o2) {
          const int64_t ih = o1 * p.stride - p.pad + r, iw = o2 * p.stride - p.pad + q;
          if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
          const double t = static_cast<double>(DY(nn, k, o1, o2)) * X(nn, c, ih, iw);
          want += t, scale += std::fabs(t);
        }
    cw.add(hdw[((k * p.C + c) * p.R + r) * p.S + q], want, scale);
  }
  report(tag + " forward", t_fwd, flops, tf32, cf.verdict());
  report(tag + " backward_data", t_bd, flops, tf32, cd.verdict());
  report(tag + " backward_weight", t_bw, flops, tf32, cw.verdict());
  bench_conv_bn_statistics(p, x.p, w.p, y.p, tag, reps);
}

// The generator's upsample-then-3x3 conv (conv_up.cu): x (N, C, H, W) -> y (N, K, 2H, 2W). Its
// TFLOP/s count the FLOPs of the 3x3 conv over the upsampled map (what PyTorch runs), so they
// compare with the conv rows and with cuDNN directly; the kernels do 16/36 of that work.
void bench_conv_up(const char* name, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, bool tf32, int reps) {
  c3::cuda_set_math(tf32 ? c3::CudaMath::TF32 : c3::CudaMath::FP32);
  const c3::Conv2dParams p{N, C, H, W, K, 3, 3, H, W, 1, 1};
  const int64_t ny = N * K * 4 * H * W;
  DevBuf x(N * C * H * W, 31), w(K * C * 9, 32), y(ny, 33), dy(ny, 34), dx(N * C * H * W, 35), dw(K * C * 9, 36);
  const double flops = 2.0 * N * K * 4 * H * W * C * 9;
  const std::string tag = std::string("conv up ") + name + (tf32 ? " tf32" : " fp32");
  const double t_fwd = time_ms([&] { gpu().conv2d_up_forward(p, x.p, w.p, nullptr, y.p, nullptr); }, reps);
  const double t_bd = time_ms([&] { gpu().conv2d_up_backward_data(p, dy.p, w.p, dx.p); }, reps);
  const double t_bw = time_ms([&] { gpu().conv2d_up_backward_weight(p, dy.p, x.p, dw.p); }, reps);
  const std::vector<float> hx = x.host(), hw = w.host(), hy = y.host();
  Checker cf{check_tol(tf32, C * 9)};
  for (int s = 0; s < 24; ++s) {  // y[n, k, Y, X] = sum w[k, c, r, q] x[n, c, (Y + r - 1) / 2, (X + q - 1) / 2]
    const int64_t n = (s * 7) % N, k = (s * 13) % K, Y = (s * 11) % (2 * H), X = (s * 17 + 3) % (2 * W);
    double want = 0, scale = 0;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t q = 0; q < 3; ++q) {
          const int64_t uy = Y + r - 1, ux = X + q - 1;
          if (uy < 0 || uy >= 2 * H || ux < 0 || ux >= 2 * W) continue;
          const double t = static_cast<double>(hx[((n * C + c) * H + uy / 2) * W + ux / 2]) * hw[((k * C + c) * 3 + r) * 3 + q];
          want += t, scale += std::fabs(t);
        }
    cf.add(hy[((n * K + k) * 2 * H + Y) * 2 * W + X], want, scale);
  }
  report(tag + " forward", t_fwd, flops, tf32, cf.verdict());
  report(tag + " backward_data", t_bd, flops, tf32, "(checked by the op tests)");
  report(tag + " backward_weight", t_bw, flops, tf32, "(checked by the op tests)");
}

void bench_copy(int reps) {
  const size_t n = size_t(1) << 28;  // 1 GiB
  float* a = static_cast<float*>(gpu().alloc(n * 4));
  float* b = static_cast<float*>(gpu().alloc(n * 4));
  gpu().fill(a, n, 1.0f);
  const double ms = time_ms([&] { gpu().copy(b, a, n); }, reps);
  const double ms_axpy = time_ms([&] { gpu().axpy(n, 0.5f, a, b); }, reps);
  std::printf("%-44s %9.3f ms %8.2f TB/s (read + write)\n", "copy 1 GiB (cudaMemcpyAsync)", ms, 2.0 * n * 4 / (ms * 1e-3) / 1e12);
  std::printf("%-44s %9.3f ms %8.2f TB/s (2 reads + write)\n", "axpy 1 GiB", ms_axpy, 3.0 * n * 4 / (ms_axpy * 1e-3) / 1e12);
  gpu().free(a);
  gpu().free(b);
}

}  // namespace

int main(int argc, char** argv) {
  bool bench = false;
  int reps = 20;
  const char* out = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--bench")) bench = true;
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(5, std::atoi(argv[++i]));
  }
  if (!bench) {
    std::printf("usage: c3gan_cuda_bench --bench [--out FILE] [--reps N]\n");
    return 2;
  }
  std::printf("cuda: %s\n", c3::cuda_status());
  if (!c3::cuda_backend() || !c3::cuda_available()) return 1;
  if (out) g_out = std::fopen(out, "w");
  try {
    bench_copy(reps);
    for (bool tf32 : {true, false}) bench_gemm(4096, tf32, tf32 ? reps : std::max(5, reps / 4));
    const ConvShape convs[] = {{"3x3 s1 64->128 64x64 N64", 64, 64, 64, 64, 128, 3, 3, 1, 1},
                               {"4x4 s2 64->128 64x64 N64", 64, 64, 64, 64, 128, 4, 4, 2, 1},
                               {"3x3 s1 32->16 128x128 N64", 64, 32, 128, 128, 16, 3, 3, 1, 1}};
    for (bool tf32 : {true, false})
      for (const ConvShape& cs : convs) bench_conv(cs, tf32, tf32 ? reps : std::max(5, reps / 4));
    // the CUB generator's (ngf 512) 32 px up block (128 channels in, 2 x 64 out) and its 128 px one
    bench_conv_up("128->128 16x16 N64", 64, 128, 16, 16, 128, true, reps);
    bench_conv_up("16->32 64x64 N64", 64, 16, 64, 64, 32, true, reps);
    const c3::CudaMemoryStats st = c3::cuda_memory_stats();
    std::printf("allocator: peak in use %.1f MiB, cached %.1f MiB, %lld cudaMalloc calls, %lld cache hits\n",
                st.peak_in_use_bytes / 1048576.0, st.cached_bytes / 1048576.0, (long long)st.device_allocs,
                (long long)st.cache_hits);
  } catch (const std::exception& e) {
    std::printf("bench failed: %s\n", e.what());
    if (g_out) std::fclose(g_out);
    return 1;
  }
  if (g_out) std::fclose(g_out);
  // the TF32 rows above timed exact fp32 where the tensor cores disagreed with the kernels
  if (const std::string f = c3::cuda_tensor_core_fallback(); !f.empty()) std::printf("WARNING: %s\n", f.c_str());
  std::printf("bench: %s\n", g_failures ? "SOME CHECKS FAILED" : "all spot checks ok");
  return g_failures ? 1 : 0;
}
