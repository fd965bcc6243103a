// A fixed pool of worker threads for parallel loops. One pool per process; its size defaults
// to the number of cores and can be set (c3gan leaves room for sharp's threads when loading).
#pragma once
#include <cstdint>
#include <functional>

namespace c3 {

int num_threads();
void set_num_threads(int n);

// Calls fn(begin, end) over [0, n) split into contiguous chunks of at least `grain` items, on
// the pool and the calling thread. Exceptions thrown by fn are rethrown on the caller.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace c3
