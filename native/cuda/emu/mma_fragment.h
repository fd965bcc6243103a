// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 for one lane, computed from the fragments
// the whole warp posted, in the PTX ISA's fragment layout. Plain C++: used by the emulated
// CUDA build (emu.cc) and by the host test of the tile kernel (native/test).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace c3emu {

// A (row, k) is register (row >= 8) + 2 (k >= 4) of lane (row % 8) * 4 + k % 4;
// B (k, n) is register (k >= 4) of lane n * 4 + k % 4; D q of a lane is row g + 8 (q / 2),
// column 2 t + q % 2, where g = lane / 4 and t = lane % 4.
// A: 32 lanes x 4 registers, B: 32 lanes x 2 registers, as posted.
inline void mma_m16n8k8_lane(float d[4], int lane, const uint32_t* A, const uint32_t* B) {
  auto f = [](uint32_t u) {
    float x;
    std::memcpy(&x, &u, 4);
    return x;
  };
  const int g = lane >> 2, t = lane & 3;
  for (int q = 0; q < 4; ++q) {
    const int row = g + 8 * (q >> 1), col = 2 * t + (q & 1);
    float s = d[q];
    for (int k = 0; k < 8; ++k) {
      const float av = f(A[((row % 8) * 4 + k % 4) * 4 + (row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]);
      const float bv = f(B[(col * 4 + k % 4) * 2 + (k >= 4 ? 1 : 0)]);
      s = std::fma(av, bv, s);
    }
    d[q] = s;
  }
}

}  // namespace c3emu
