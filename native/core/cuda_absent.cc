// Linked when the addon is built without the CUDA backend.
#include "backend.h"

namespace c3 {
const Backend* cuda_backend() { return nullptr; }
const char* cuda_status() { return "unavailable (this build of c3gan has no CUDA backend: rebuild with nvcc present)"; }
bool cuda_available() { return false; }
const char* cuda_build() { return "none (built without the CUDA backend)"; }
}  // namespace c3
