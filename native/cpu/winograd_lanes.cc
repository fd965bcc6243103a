// The 8-lane interleave of the Winograd transforms (winograd_core.h): dst[w * 8 + l] = src[l][w]
// and its reverse, as 8x8 transposes in vector registers (vec8.h: AVX2 where the CPU has it,
// Advanced SIMD on AArch64; one per 8 pixels of 8 images), else plain loops.
#include <cstdint>

#include "vec8.h"
#include "winograd_core.h"

namespace c3::cpu::wino {
namespace {

static_assert(L == 8, "the transposes are 8x8");

void interleave_plain(const float* const* src, int64_t n, float* dst) {
  for (int64_t w = 0; w < n; ++w)
    for (int l = 0; l < L; ++l) dst[w * L + l] = src[l][w];
}

void deinterleave_plain(const float* src, int64_t n, float* const* dst) {
  for (int64_t w = 0; w < n; ++w)
    for (int l = 0; l < L; ++l) dst[l][w] = src[w * L + l];
}

#ifdef C3_VEC8
using namespace vec8;

C3_VEC8_TARGET void interleave_vec8(const float* const* src, int64_t n, float* dst) {
  int64_t w = 0;
  for (; w + 8 <= n; w += 8) {
    V8 r[8];
    for (int l = 0; l < 8; ++l) r[l] = load(src[l] + w);
    transpose8(r);
    for (int i = 0; i < 8; ++i) store(dst + (w + i) * L, r[i]);
  }
  for (; w < n; ++w)
    for (int l = 0; l < L; ++l) dst[w * L + l] = src[l][w];
}

C3_VEC8_TARGET void deinterleave_vec8(const float* src, int64_t n, float* const* dst) {
  int64_t w = 0;
  for (; w + 8 <= n; w += 8) {
    V8 r[8];
    for (int i = 0; i < 8; ++i) r[i] = load(src + (w + i) * L);
    transpose8(r);
    for (int l = 0; l < 8; ++l) store(dst[l] + w, r[l]);
  }
  for (; w < n; ++w)
    for (int l = 0; l < L; ++l) dst[l][w] = src[w * L + l];
}
#endif

}  // namespace

void interleave_lanes(const float* const* src, int64_t n, float* dst) {
#ifdef C3_VEC8
  if (vec8::available()) return interleave_vec8(src, n, dst);
#endif
  interleave_plain(src, n, dst);
}

void deinterleave_lanes(const float* src, int64_t n, float* const* dst) {
#ifdef C3_VEC8
  if (vec8::available()) return deinterleave_vec8(src, n, dst);
#endif
  deinterleave_plain(src, n, dst);
}

}  // namespace c3::cpu::wino
