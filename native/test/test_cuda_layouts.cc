// The tensor-core layouts the tile kernels and the emulator assume, asked of the device
// (cuda_probe_tensor_core_layouts, native/cuda/layout_probe.cu). On a GPU this is the check
// that the PTX ISA was read right; on the emulator, which implements that reading, the probe
// agrees, and with the emulator made to read a layout otherwise the probe must say how.
#ifdef C3GAN_HAVE_CUDA
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../cuda/cuda.h"
#include "../core/backend.h"
#include "harness.h"
#ifdef C3GAN_CUDA_EMULATION
#include <cuda_runtime.h>  // the emulator's (native/cuda/emu): c3emu::set_tensor_core_reading
#endif

namespace {

using namespace c3;
using namespace c3::test;

#ifdef C3GAN_CUDA_EMULATION
void expect_mentions(const std::string& report, const char* part, const char* what) {
  if (report.find(part) == std::string::npos)
    throw Failure(std::string(what) + ": the probe's report does not say '" + part + "': '" + report + "'");
}
#endif

C3_TEST(cuda_tensor_core_layouts_match_the_kernels) {
  if (!cuda_available()) {
    std::printf("     note: skipped, cuda %s\n", cuda_status());
    return;
  }
  const CudaLayoutProbe p = cuda_probe_tensor_core_layouts();
  if (!p.mma.empty()) throw Failure(p.mma);
  if (!p.wgmma.empty()) throw Failure(p.wgmma);
  if (!p.wgmma_ran) std::printf("     note: no sm_90a code on this device: wgmma not probed (never used here)\n");
#ifdef C3GAN_CUDA_EMULATION
  // hardware that read the layouts otherwise: the report says what it did
  struct Reset {
    ~Reset() { c3emu::set_tensor_core_reading({}); }
  } reset;
  c3emu::set_tensor_core_reading({true, false});
  const CudaLayoutProbe swapped = cuda_probe_tensor_core_layouts();
  if (!swapped.mma.empty()) throw Failure("mma.sync reported with only wgmma's reading changed: " + swapped.mma);
  expect_mentions(swapped.wgmma, "with the descriptors' LBO and SBO swapped the product is right", "strides swapped");
  c3emu::set_tensor_core_reading({false, true});
  const CudaLayoutProbe rows = cuda_probe_tensor_core_layouts();
  // lane 0's register 0 is row 0, col 0; the hardware of this reading puts row 8 there
  expect_mentions(rows.mma, "lane 0 register 0 should hold (row 0, col 0), holds (row 8, col 0)", "rows swapped");
  expect_mentions(rows.mma, "[128 of 128 registers differ", "rows swapped");
  if (!rows.wgmma.empty()) throw Failure("wgmma reported with only mma.sync's reading changed: " + rows.wgmma);
#endif
}

#ifdef C3GAN_CUDA_EMULATION
// The largest |difference| between the backend's gemm and the CPU's on one product
double gemm_gap(const Backend& be, int M, int N, int K) {
  std::vector<float> A(size_t(M) * K), B(size_t(K) * N), want(size_t(M) * N);
  for (size_t i = 0; i < A.size(); ++i) A[i] = static_cast<float>((i * 7) % 11) - 5.0f;
  for (size_t i = 0; i < B.size(); ++i) B[i] = static_cast<float>((i * 5) % 13) - 6.0f;
  cpu_backend().gemm(false, false, M, N, K, 1.0f, A.data(), B.data(), 0.0f, want.data());
  const Buf dA(be, A), dB(be, B), dC(be, want.size());
  be.gemm(false, false, M, N, K, 1.0f, dA.p(), dB.p(), 0.0f, dC.p());
  const std::vector<float> got = dC.host();
  double gap = 0;
  for (size_t i = 0; i < got.size(); ++i) gap = std::max(gap, std::fabs(double(got[i]) - want[i]));
  return gap;
}
#endif

// Before its first product on an instruction the backend asks the device the same (once a
// process); where the tensor cores read otherwise, the products still come out right, in exact
// fp32 (mma.sync) or on the register pipeline (wgmma), and cuda_tensor_core_fallback says why.
// Shown on the emulator, made to read otherwise; on a GPU the fallback stays empty.
C3_TEST(cuda_products_give_way_where_the_tensor_cores_disagree) {
  if (!cuda_available()) {
    std::printf("     note: skipped, cuda %s\n", cuda_status());
    return;
  }
  const Backend& gpu = *cuda_backend();
  (void)be, (void)gpu;
  struct Restore {
    CudaMath math = cuda_math();
    CudaTile tile = cuda_tile();
    ~Restore() {
#ifdef C3GAN_CUDA_EMULATION
      c3emu::set_tensor_core_reading({});
#endif
      cuda_set_math(math);
      cuda_set_tile(tile);
      cuda_recheck_tensor_cores();
    }
  } restore;
  cuda_set_math(CudaMath::TF32);
  cuda_recheck_tensor_cores();
  if (!cuda_tensor_core_fallback().empty()) throw Failure("a fallback before any product: " + cuda_tensor_core_fallback());
#ifdef C3GAN_CUDA_EMULATION
  // small integers: every product and sum is exact in TF32 and fp32 alike, so only a wrong
  // layout makes a difference
  const int M = 64, N = 48, K = 40;
  if (const double g = gemm_gap(gpu, M, N, K); g != 0) throw Failure("tf32 gemm differs from the CPU's by " + std::to_string(g));
  if (!cuda_tensor_core_fallback().empty()) throw Failure("a fallback on the right reading: " + cuda_tensor_core_fallback());

  c3emu::set_tensor_core_reading({false, true});  // mma.sync's row halves exchanged
  cuda_recheck_tensor_cores();
  if (const double g = gemm_gap(gpu, M, N, K); g != 0) throw Failure("with mma.sync misread, the gemm is off by " + std::to_string(g));
  expect_mentions(cuda_tensor_core_fallback(), "TF32 products run in exact fp32 instead", "mma.sync misread");
  expect_mentions(cuda_tensor_core_fallback(), "holds (row 8, col 0)", "mma.sync misread");
  if (cuda_math() != CudaMath::TF32) throw Failure("cuda_math() should stay the mode chosen (tf32)");

  if (cuda_probe_tensor_core_layouts().wgmma_ran) {
    // wgmma chosen, its strides misread: the register pipeline (mma.sync, read right) runs instead
    c3emu::set_tensor_core_reading({true, false});
    cuda_recheck_tensor_cores();
    cuda_set_tile(CudaTile::Wgmma);
    const int Mw = 256, Nw = 128, Kw = 64;  // the 128-row tile, where wgmma would run
    if (const double g = gemm_gap(gpu, Mw, Nw, Kw); g != 0)
      throw Failure("with wgmma misread, the gemm is off by " + std::to_string(g));
    expect_mentions(cuda_tensor_core_fallback(), "the wgmma pipeline gives way to the register one", "wgmma misread");
    if (cuda_tensor_core_fallback().find("fp32") != std::string::npos)
      throw Failure("mma.sync reported with only wgmma misread: " + cuda_tensor_core_fallback());
    if (cuda_tile() != CudaTile::Wgmma) throw Failure("cuda_tile() should stay the pipeline chosen (wgmma)");
  }
#endif
}

}  // namespace
#endif
