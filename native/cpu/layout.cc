// Data movement kernels: nearest 2x upsampling and the block copy behind concat and slice.
#include <algorithm>
#include <cstring>

#include "../core/threadpool.h"
#include "kernels.h"

namespace c3::cpu {

namespace {
// items per work chunk so that a chunk moves at least ~16K floats
int64_t grain_for(int64_t floats_per_item) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, floats_per_item)); }
}  // namespace

void upsample2x_forward(int64_t planes, int64_t H, int64_t W, const float* x, float* y) {
  const int64_t OW = 2 * W;
  parallel_for(planes * H, grain_for(4 * W), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r = plane * H + i: input row i feeds output rows 2i, 2i+1
      const float* src = x + r * W;
      float* dst = y + r * 2 * OW;
      for (int64_t j = 0; j < W; ++j) dst[2 * j] = dst[2 * j + 1] = src[j];
      std::memcpy(dst + OW, dst, OW * sizeof(float));
    }
  });
}

void upsample2x_backward(int64_t planes, int64_t H, int64_t W, const float* dy, float* dx) {
  const int64_t OW = 2 * W;
  parallel_for(planes * H, grain_for(4 * W), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* a = dy + r * 2 * OW;
      const float* b = a + OW;
      float* dst = dx + r * W;
      for (int64_t j = 0; j < W; ++j) dst[j] = (a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]);
    }
  });
}

void copy_block(int64_t outer, int64_t inner, int64_t len, const float* src, int64_t src_dim, int64_t src_off,
                float* dst, int64_t dst_dim, int64_t dst_off) {
  const int64_t run = len * inner;  // the len rows of one outer index are contiguous on both sides
  if (run <= 0) return;
  parallel_for(outer, grain_for(run), [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      std::memcpy(dst + (o * dst_dim + dst_off) * inner, src + (o * src_dim + src_off) * inner, run * sizeof(float));
  });
}

}  // namespace c3::cpu
