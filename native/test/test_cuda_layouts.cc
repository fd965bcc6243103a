// The tensor-core layouts the tile kernels and the emulator assume, asked of the device
// (cuda_probe_tensor_core_layouts, native/cuda/layout_probe.cu). On a GPU this is the check
// that the PTX ISA was read right; on the emulator, which implements that reading, the probe
// agrees, and with the emulator made to read a layout otherwise the probe must say how.
#ifdef C3GAN_HAVE_CUDA
#include <cstdio>
#include <string>

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

}  // namespace
#endif
