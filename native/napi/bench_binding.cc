// Benchmark helpers exported to JS: the measured fp32 peak and the CPU's SIMD features, so
// benchmarks can print each op's throughput as a share of what this machine can do, and the CPU
// conv path switches, so one process can time one path against another in alternation.
#include <napi.h>

#include "../cpu/conv_direct.h"
#include "../cpu/gemm_kernels.h"
#include "../cpu/kernels.h"
#include "../cpu/peak.h"
#include "../cpu/winograd.h"
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

Napi::Value GemmKernel(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value { return Napi::String::New(info.Env(), c3::cpu::gemm_micro_kernel().name); });
}

// setConvPath(name, value): "winograd" 0|1, "winogradTile" 0 (by shape)|2|4, "winogradS2" 0|1,
// "direct" 0|1, "directWide" 0|1 (AVX-512VL's register blocks in the direct loops, where the CPU
// has them), "dataPath" -1 (by shape)|0 (stride phases)|1 (fused col2im). Process-wide, not
// thread-safe against running convs: for benchmarks and tests.
Napi::Value SetConvPath(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "setConvPath");
    if (info.Length() < 1 || !info[0].IsString()) a.type_error("argument 'name' must be a string");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    const int v = static_cast<int>(a.integer(1, "value", -1, 4));
    if (name == "winograd") c3::cpu::set_winograd_enabled(v != 0);
    else if (name == "winogradTile") c3::cpu::set_winograd_tile(v);
    else if (name == "winogradS2") c3::cpu::set_winograd_s2_enabled(v != 0);
    else if (name == "direct") c3::cpu::set_direct_conv_enabled(v != 0);
    else if (name == "directWide") c3::cpu::set_direct_wide_registers(v != 0);
    else if (name == "dataPath") c3::cpu::set_conv2d_backward_data_path(v);
    else a.range_error("unknown conv path '" + name + "' (winograd, winogradTile, winogradS2, direct, directWide, dataPath)");
    return info.Env().Undefined();
  });
}

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  exports.Set("peakGflops", Napi::Function::New(env, PeakGflops, "peakGflops"));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
  exports.Set("gemmKernel", Napi::Function::New(env, GemmKernel, "gemmKernel"));
  exports.Set("setConvPath", Napi::Function::New(env, SetConvPath, "setConvPath"));
}

}  // namespace c3::napi
