#include "thread_scratch.h"

namespace c3::cpu {

std::atomic<int64_t>& scratch_bytes_counter() {
  // never destroyed: threads' buffers may be freed after static destruction began
  static auto* c = new std::atomic<int64_t>(0);
  return *c;
}

}  // namespace c3::cpu
