// Philox4x32-10 for device code: the same constants, word order and float conversions as
// native/core/rng.cc, so element i of a CUDA draw equals element i of the CPU draw. Written as
// C3_HD so that the host tests compare it with c3::Philox word for word.
#pragma once
#include <cmath>
#include <cstdint>

#include "hd.cuh"

namespace c3::cuda {

struct PhiloxD {
  static constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  static constexpr uint32_t kBump0 = 0x9E3779B9u, kBump1 = 0xBB67AE85u;

  C3_HD static void block(uint64_t key, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0u, c3 = 0u;
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#ifdef __CUDA_ARCH__
C3_UNROLL
#endif
    for (int r = 0; r < 10; ++r) {
      if (r > 0) k0 += kBump0, k1 += kBump1;
      const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
      const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
      const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
      const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
      const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
  }

  // uniform in (0, 1]: exact in float (24-bit integer plus one, times 2^-24)
  C3_HD static float to_unit(uint32_t u) { return (static_cast<float>(u >> 8) + 1.0f) * (1.0f / 16777216.0f); }

  C3_HD static float uniform_at(uint64_t key, uint64_t i) {
    uint32_t w[4];
    block(key, i, w);
    return to_unit(w[0]);
  }

  // Box-Muller in double rounded once to float, as the CPU does. Only products and library
  // functions appear (no a*b+c), so no fused multiply-add can change the rounding.
  C3_HD static float normal_at(uint64_t key, uint64_t i) {
    uint32_t w[4];
    block(key, i, w);
    const double u1 = to_unit(w[0]), u2 = to_unit(w[1]);
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    return static_cast<float>(sqrt(-2.0 * log(u1)) * cos(kTwoPi * u2));
  }
};

}  // namespace c3::cuda
