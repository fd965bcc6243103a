// Counter-based random numbers (Philox4x32-10), so the same seed gives the same numbers on every
// run, every thread count and (later) every backend. A stream is (key, offset): element i of a
// draw uses counter offset + i; the Generator advances offset after each draw, and its whole
// state is two integers, which checkpoints save for resume.
#pragma once
#include <cstdint>

namespace c3 {

struct Philox {
  // four 32-bit outputs for a 64-bit counter under a 64-bit key
  static void block(uint64_t key, uint64_t counter, uint32_t out[4]);
  // uniform in (0, 1] from 32 bits; never 0, so log() is finite
  static inline float to_unit(uint32_t u) { return (static_cast<float>(u >> 8) + 1.0f) * (1.0f / 16777216.0f); }
  // element i of a stream: uniform (0,1] and standard normal (Box-Muller on the block's words)
  static float uniform_at(uint64_t key, uint64_t i);
  static float normal_at(uint64_t key, uint64_t i);
};

struct Generator {
  uint64_t key = 0;
  uint64_t offset = 0;
  explicit Generator(uint64_t seed = 0) : key(seed), offset(0) {}
  // reserve n counters for one draw; returns the draw's starting offset
  uint64_t take(uint64_t n) {
    uint64_t o = offset;
    offset += n;
    return o;
  }
};

}  // namespace c3
