// Per-thread scratch buffers: each grows to the largest request its call site makes and lives as
// long as its thread (the pool's threads live with the process), so kernels allocate nothing per
// call. Their bytes over all threads are counted (thread_scratch_bytes(), reported by
// memoryStats("cpu").scratchBytes), so a figure of native memory does not miss them.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace c3::cpu {

std::atomic<int64_t>& scratch_bytes_counter();
inline int64_t thread_scratch_bytes() { return scratch_bytes_counter().load(std::memory_order_relaxed); }

class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { count(-bytes()); }

  // at least n floats; zeroed: the buffer is all zeros after growing (as it was before)
  float* get(size_t n, bool zeroed = false) {
    if (v_.size() < n) {
      const int64_t before = bytes();
      if (zeroed) v_.assign(n, 0.0f);
      else v_.resize(n);
      count(bytes() - before);
    }
    return v_.data();
  }

 private:
  int64_t bytes() const { return static_cast<int64_t>(v_.capacity() * sizeof(float)); }
  static void count(int64_t d) { scratch_bytes_counter().fetch_add(d, std::memory_order_relaxed); }
  std::vector<float> v_;
};

}  // namespace c3::cpu
