// Benchmark helpers exported to JS: the measured fp32 peak and the CPU's SIMD features, so
// benchmarks can print each op's throughput as a share of what this machine can do.
#include <napi.h>

#include "../cpu/peak.h"
#include "args.h"

namespace c3::napi {

namespace {

// peakGflops(seconds, threads): blocks the calling thread for about `seconds`.
Napi::Value PeakGflops(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "peakGflops");
    const double seconds = a.number(0, "seconds");
    if (!(seconds > 0 && seconds <= 60)) a.range_error("argument 'seconds' must be in (0, 60], got " + std::to_string(seconds));
    const int threads = static_cast<int>(a.integer(1, "threads", 1, 1024));
    return Napi::Number::New(info.Env(), c3::cpu::measure_peak_gflops(seconds, threads));
  });
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value { return Napi::String::New(info.Env(), c3::cpu::cpu_features()); });
}

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  exports.Set("peakGflops", Napi::Function::New(env, PeakGflops, "peakGflops"));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
}

}  // namespace c3::napi
