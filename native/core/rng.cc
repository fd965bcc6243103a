// Philox4x32-10 (Salmon et al., SC 2011), as in Random123 and cuRAND: the 64-bit counter fills
// words 0-1 of the 128-bit counter (words 2-3 are zero), the 64-bit key fills both key words.
#include "rng.h"

#include <cmath>

namespace c3 {
namespace {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kBump0 = 0x9E3779B9u, kBump1 = 0xBB67AE85u;

inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1) {
  uint64_t p0 = static_cast<uint64_t>(kMul0) * c[0];
  uint64_t p1 = static_cast<uint64_t>(kMul1) * c[2];
  uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
  c[0] = n0;
  c[1] = lo1;
  c[2] = n2;
  c[3] = lo0;
}

}  // namespace

void Philox::block(uint64_t key, uint64_t counter, uint32_t out[4]) {
  uint32_t c[4] = {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u};
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    if (r > 0) k0 += kBump0, k1 += kBump1;
    philox_round(c, k0, k1);
  }
  for (int i = 0; i < 4; ++i) out[i] = c[i];
}

float Philox::uniform_at(uint64_t key, uint64_t i) {
  uint32_t w[4];
  block(key, i, w);
  return to_unit(w[0]);
}

// Box-Muller in double, rounded once to float, so that another backend doing the same math in
// double reproduces these numbers (float log/cos differ by an ulp between libraries).
float Philox::normal_at(uint64_t key, uint64_t i) {
  uint32_t w[4];
  block(key, i, w);
  double u1 = to_unit(w[0]), u2 = to_unit(w[1]);
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2));
}

}  // namespace c3
