// Linked when the addon is built without the CUDA backend.
#include "backend.h"
#include "error.h"

namespace c3 {
const Backend* cuda_backend() { return nullptr; }
const char* cuda_status() { return "unavailable (this build of c3gan has no CUDA backend: rebuild with nvcc present)"; }
bool cuda_available() { return false; }
const char* cuda_build() { return "none (built without the CUDA backend)"; }
void cuda_select_device(int index) {
  throw Error("cuda_select_device", "device " + std::to_string(index) +
                                        " was asked for, but this build of c3gan has no CUDA backend (rebuild with nvcc present)");
}
int cuda_device_index() { return 0; }
std::vector<std::string> cuda_devices() { return {"none (this build of c3gan has no CUDA backend)"}; }
}  // namespace c3
