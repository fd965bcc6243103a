// CUDA runtime probing: whether a usable device and driver are present. cudart is linked
// statically, so the addon loads on machines without a driver; there the probe reports why.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "../core/backend.h"

namespace c3 {

namespace {

struct Probe {
  bool device_found = false;
  std::string status;
  Probe() {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      // 35 insufficient driver, 100 no device, 34 stub library, 3 init error: all mean "no CUDA here"
      status = std::string("unavailable (") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err) + ")";
      cudaGetLastError();  // clear the error so it is not reported later
      return;
    }
    if (count == 0) {
      status = "unavailable (no CUDA device)";
      return;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
      status = "unavailable (could not read device 0 properties)";
      cudaGetLastError();
      return;
    }
    device_found = true;
    char buf[256];
    std::snprintf(buf, sizeof buf, "unavailable (found %s, sm_%d%d, but this build has no CUDA op kernels)",
                  prop.name, prop.major, prop.minor);
    status = buf;
  }
};

const Probe& probe() {
  static Probe p;
  return p;
}

}  // namespace

// The op kernels are not part of this build yet, so no backend table is offered even when a
// device is present; cuda_status() says so.
const Backend* cuda_backend() { return nullptr; }
const char* cuda_status() { return probe().status.c_str(); }
bool cuda_available() { return false; }

}  // namespace c3
