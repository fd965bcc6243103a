// Prints a hash of the outputs of every CPU loop written on vec8.h (the direct conv loops and the
// blocked stride-2 tiles, the exp-based elementwise kernels, batch norm's sums and backward pass),
// one line per family, on fixed inputs: scripts/check-vec8-bits.sh builds it for x86-64 and for
// AArch64 and compares the two runs, which should print the same lines. The inputs are made
// without a multiply followed by an add, which a compiler may fuse on one architecture only.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../core/threadpool.h"
#include "../cpu/batchnorm_kernels.h"
#include "../cpu/conv_direct.h"
#include "../cpu/pointwise_kernels.h"

namespace {

using namespace c3::cpu;

struct Hash {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the floats' bits
  void add(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    h = (h ^ u) * 1099511628211ull;
  }
  void add(const std::vector<float>& v) {
    for (float f : v) add(f);
  }
};

// values in [-1, 1] from a linear congruential sequence, by a division only
std::vector<float> inputs(size_t n, uint32_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int32_t>(seed >> 8) % 2001 - 1000) / (1000.0f / scale);
  }
  return v;
}

void conv_loops() {
  set_direct_wide_registers(false);  // the x86-only AVX-512VL blocks are not on AArch64
  struct Case {
    int64_t N, C, H, W, K, R, stride, pad;
  } cases[] = {{2, 4, 32, 32, 8, 3, 1, 1},  {3, 1, 7, 9, 1, 3, 1, 1},    {2, 3, 5, 13, 5, 3, 1, 0},
               {2, 16, 16, 16, 16, 3, 1, 1}, {2, 64, 32, 32, 16, 3, 1, 1}, {3, 9, 16, 16, 7, 4, 2, 1},
               {2, 8, 34, 32, 13, 4, 2, 1},  {1, 8, 10, 8, 6, 4, 2, 1},    {2, 12, 8, 8, 32, 4, 2, 1},
               {2, 8, 32, 32, 40, 4, 2, 1}};
  Hash h;
  uint32_t seed = 1;
  for (const Case& c : cases) {
    const int64_t OH = (c.H + 2 * c.pad - c.R) / c.stride + 1, OW = (c.W + 2 * c.pad - c.R) / c.stride + 1;
    const c3::Conv2dParams p{c.N, c.C, c.H, c.W, c.K, c.R, c.R, OH, OW, c.stride, c.pad};
    const auto x = inputs(c.N * c.C * c.H * c.W, seed++), w = inputs(c.K * c.C * c.R * c.R, seed++),
               b = inputs(c.K, seed++), dy = inputs(c.N * c.K * OH * OW, seed++);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size());
    if (c.stride == 1) {
      direct_conv_forward(p, x.data(), w.data(), b.data(), y.data());
      direct_conv_backward_data(p, dy.data(), w.data(), dx.data());
      direct_conv_backward_weight(p, dy.data(), x.data(), dw.data());
      h.add(y), h.add(dx), h.add(dw);
      continue;
    }
    if (blocked_forward_applies(p)) blocked_forward(p, x.data(), w.data(), b.data(), y.data()), h.add(y);
    if (blocked_backward_data_applies(p)) blocked_backward_data(p, dy.data(), w.data(), dx.data()), h.add(dx);
  }
  std::printf("conv loops %016llx\n", static_cast<unsigned long long>(h.h));
}

void elementwise(const PointwiseKernels& k) {
  const int64_t n = 1 << 16;  // whole vectors: the GLU loops' scalar tails call std::exp
  auto x = inputs(n, 7, 100.0f);
  const float special[] = {0.0f, -0.0f, 1e30f, -1e30f, 88.5f, -87.5f, 0.625f, -0.625f, 44.0f, 1e-40f};
  for (int i = 0; i < 10; ++i) x[i * 13] = special[i];
  const auto a = inputs(n, 8, 37.0f), g = inputs(n, 9);
  std::vector<float> y(n), y2(n);
  Hash h;
  k.tanh_forward(n, x.data(), y.data()), h.add(y);
  k.sigmoid_forward(n, x.data(), y.data()), h.add(y);
  k.glu_forward(n, a.data(), x.data(), y.data()), h.add(y);
  k.glu_backward(n, g.data(), a.data(), x.data(), y.data(), y2.data()), h.add(y), h.add(y2);
  const std::vector<float> sa(n, 1.3f), ta(n, -0.2f), sb(n, 0.7f), tb(n, 0.1f);
  const AffinePair c{sa.data(), ta.data(), sb.data(), tb.data(), 1};
  k.affine_glu_forward(n, a.data(), x.data(), c, y.data()), h.add(y);
  k.affine_glu_backward(n, g.data(), a.data(), x.data(), c, y.data(), y2.data()), h.add(y), h.add(y2);
  std::printf("elementwise exp %016llx\n", static_cast<unsigned long long>(h.h));
}

void batch_norm(const BatchnormKernels& k) {
  const int n = 40000;
  const auto x = inputs(n, 11, 20.0f), dy = inputs(n, 12, 3.0f);
  std::vector<float> out(n + 8);
  Hash h;
  for (int len : {1, 7, 8, 15, 16, 33, 100, 2048})
    for (int rows : {1, 3, 9}) {
      float s1, s2;
      h.add(k.sum(x.data(), rows, len, len));
      k.shifted_sums(x.data(), rows, len, len, 3.0f, &s1, &s2), h.add(s1), h.add(s2);
      k.grad_sums(dy.data(), x.data(), rows, len, len, 2.5f, &s1, &s2), h.add(s1), h.add(s2);
    }
  for (int off : {0, 1, 3})
    for (int len : {5, 100, 20000, 39000}) {
      k.dx(dy.data(), x.data(), len, 0.7f, -0.3f, 1.1f, 0.05f, out.data() + off);
      for (int i = 0; i < len; ++i) h.add(out[off + i]);
    }
  std::printf("batch norm %016llx\n", static_cast<unsigned long long>(h.h));
}

}  // namespace

int main() {
  const PointwiseKernels* pk = avx2_pointwise_kernels() ? avx2_pointwise_kernels() : neon_pointwise_kernels();
  const BatchnormKernels* bk = avx2_batchnorm_kernels() ? avx2_batchnorm_kernels() : neon_batchnorm_kernels();
  if (!direct_loops_available() || !pk || !bk) {
    std::printf("no vec8 loops on this CPU (AVX2+FMA or Advanced SIMD)\n");
    return 2;
  }
  c3::set_num_threads(2);
  conv_loops();
  elementwise(*pk);
  batch_norm(*bk);
  return 0;
}
