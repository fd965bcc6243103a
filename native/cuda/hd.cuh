// Code shared by CUDA kernels and host C++: the C3_HD qualifier (and C3_UNROLL, a loop-unroll
// hint that host compilers do not see) and fast integer division by a
// run-time constant. Plain C++ when not compiled by nvcc, so the host tests (native/test) can
// check the index arithmetic of the kernels on machines without a GPU.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define C3_HD __host__ __device__ __forceinline__
#define C3_UNROLL _Pragma("unroll")
#else
#define C3_HD inline
#define C3_UNROLL
#endif

namespace c3::cuda {

C3_HD uint32_t umulhi32(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Division of 0 <= n < 2^31 by a fixed divisor 1 <= d < 2^31 with one multiply-high and a
// shift (Granlund-Montgomery, as in CUTLASS's FastDivmod): with l = ceil(log2 d) and
// m = ceil(2^(31+l) / d), n / d = umulhi(n, m) >> (l - 1) for every n < 2^31.
struct FastDiv {
  int32_t d = 1;
  uint32_t mul = 0, shr = 0;

  FastDiv() = default;
  explicit FastDiv(int64_t divisor) : d(static_cast<int32_t>(divisor)) {
    if (d <= 1) return;  // mul == 0 marks d == 1 (callers never pass d < 1)
    uint32_t l = 0;
    while ((uint64_t(1) << l) < static_cast<uint64_t>(d)) ++l;
    const uint64_t p = uint64_t(1) << (31 + l);
    mul = static_cast<uint32_t>((p + static_cast<uint64_t>(d) - 1) / static_cast<uint64_t>(d));
    shr = l - 1;
  }
  C3_HD int32_t div(int32_t n) const {
    return mul ? static_cast<int32_t>(umulhi32(static_cast<uint32_t>(n), mul) >> shr) : n;
  }
  // q = n / d, r = n % d
  C3_HD void divmod(int32_t n, int32_t& q, int32_t& r) const {
    q = div(n);
    r = n - q * d;
  }
};

}  // namespace c3::cuda
