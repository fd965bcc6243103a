// CudaConv::Auto: each plain conv pass, shape and math mode timed once on the tile kernels and on
// cuDNN, the faster kept for the process (cudnn.benchmark's idea, one level up: between engines,
// each with its own algorithm choice). The trials write into scratch, so the call's own outputs
// (an accumulating backward data's held gradient among them) see exactly one run.
#include <cuda_runtime.h>

#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "conv_tune.cuh"
#include "cuda.h"
#include "cudnn_api.h"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

const char* pass_name(ConvPass pass) {
  switch (pass) {
    case ConvPass::Forward: return "forward";
    case ConvPass::ForwardMoments: return "forward+moments";
    case ConvPass::ForwardLeaky: return "forward+leaky";
    case ConvPass::BackwardData: return "backward data";
    case ConvPass::BackwardDataAccumulate: return "backward data (accumulate)";
    case ConvPass::BackwardWeight: return "backward weight";
  }
  return "?";
}

using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int>;

struct Tuner {
  std::mutex mu;
  std::map<Key, bool> chosen;  // true: cuDNN
  std::vector<CudaConvChoice> log;
  cudaEvent_t start = nullptr, stop = nullptr;
};

Tuner& tuner() {
  static Tuner* t = new Tuner();  // process lifetime (runtime.cu: no CUDA frees at exit)
  return *t;
}

std::string describe(const Conv2dParams& p) {
  char b[200];
  std::snprintf(b, sizeof b, "%lldx%lldx%lldx%lld -> %lldx%lldx%lld s%lld p%lld, %s", static_cast<long long>(p.N),
                static_cast<long long>(p.C), static_cast<long long>(p.H), static_cast<long long>(p.W),
                static_cast<long long>(p.K), static_cast<long long>(p.R), static_cast<long long>(p.S),
                static_cast<long long>(p.stride), static_cast<long long>(p.pad),
                chosen_math() == CudaMath::TF32 ? "tf32" : "fp32");
  return b;
}

// The best of two timed runs (ms) after a warm-up (plans, workspaces, first launches)
double time_trial(Tuner& t, const ConvTrial& trial, bool cudnn, float* out, float* moments) {
  if (!t.start) {
    cudaEvent_t a = nullptr, b = nullptr;
    check_cuda(cudaEventCreate(&a), "conv autotune (events)");
    if (const cudaError_t e = cudaEventCreate(&b); e != cudaSuccess) {
      cudaEventDestroy(a);
      check_cuda(e, "conv autotune (events)");
    }
    t.start = a, t.stop = b;
  }
  trial(cudnn, out, moments);
  double best = std::numeric_limits<double>::infinity();
  for (int run = 0; run < 2; ++run) {
    check_cuda(cudaEventRecord(t.start, stream()), "conv autotune");
    trial(cudnn, out, moments);
    check_cuda(cudaEventRecord(t.stop, stream()), "conv autotune");
    check_cuda(cudaEventSynchronize(t.stop), "conv autotune");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, t.start, t.stop), "conv autotune");
    best = std::min(best, static_cast<double>(ms));
  }
  return best;
}

}  // namespace

bool auto_conv_on_cudnn(ConvPass pass, const Conv2dParams& p, size_t out_floats, size_t moments_floats,
                        const ConvTrial& trial) {
  if (!cudnn::api()) return false;
  Tuner& t = tuner();
  std::lock_guard<std::mutex> g(t.mu);
  const Key key{static_cast<int>(pass), p.N, p.C, p.H, p.W, p.K, p.R, p.S, p.OH, p.OW, p.stride, p.pad,
                static_cast<int>(chosen_math())};
  if (const auto it = t.chosen.find(key); it != t.chosen.end()) return it->second;

  const Scratch out(out_floats * sizeof(float)), moments(moments_floats * sizeof(float));
  CudaConvChoice c;
  c.pass = pass_name(pass);
  c.conv = describe(p);
  c.native_ms = time_trial(t, trial, false, out.as<float>(), moments.as<float>());
  try {
    c.cudnn_ms = time_trial(t, trial, true, out.as<float>(), moments.as<float>());
  } catch (const Error& e) {
    // a shape cuDNN cannot run (no usable algorithm, its workspace out of memory) stays on the tile
    // kernels; an error that spoiled the context (sticky) is the caller's
    check_launch("conv autotune (cuDNN trial)");
    c.cudnn_ms = -1;
    c.note = e.what();
  }
  c.cudnn = c.cudnn_ms >= 0 && c.cudnn_ms < c.native_ms;
  t.chosen.emplace(key, c.cudnn);
  t.log.push_back(c);
  return c.cudnn;
}

}  // namespace c3::cuda

namespace c3 {

std::vector<CudaConvChoice> cuda_conv_choices() {
  cuda::Tuner& t = cuda::tuner();
  std::lock_guard<std::mutex> g(t.mu);
  return t.log;
}

}  // namespace c3
