// The machine's fp32 arithmetic peak, measured (not looked up): what the op benchmarks divide by.
#pragma once

namespace c3::cpu {

// Runs an FMA throughput loop on `threads` threads at once for about `seconds` each and returns
// the total GFLOP/s (2 flops per FMA lane). AVX2+FMA when the CPU reports both, else a portable
// loop of independent float multiply-adds. Throws c3::Error on bad arguments; never exits.
double measure_peak_gflops(double seconds, int threads);

// The SIMD features the CPU reports (__builtin_cpu_supports), space separated, e.g. "sse4.2 avx avx2 fma";
// empty on non-x86 builds.
const char* cpu_features();

}  // namespace c3::cpu
