// The emulated CUDA device (see cuda_runtime.h): a launch runs its blocks one after another on
// the calling host thread; within a block every CUDA thread is a fiber (fiber.h) that runs
// until it meets a barrier (__syncthreads, a warp shuffle, an mma) or returns, then the next
// fiber runs. Launches are serialised process-wide, so a function-local static is the one
// block's shared memory. Device memory is host memory, tracked so that copies and frees can be
// checked and a capacity enforced. Everything is synchronous: streams and events only order
// what already happened.
#include "cuda_runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fiber.h"
#include "mma_fragment.h"
#include "wgmma_layout.h"
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace c3emu {
namespace {

constexpr size_t kStackBytes = size_t(256) << 10;
constexpr size_t kMaxDynamicShared = size_t(48) << 10;  // without a cudaFuncSetAttribute opt-in
constexpr size_t kMaxOptInShared = size_t(227) << 10;   // with it (sm_90)

enum class Wait { None, Block, Warp, Done };

struct Fiber {
  Context ctx;
  uint3 tid;
  int linear = 0;  // x + y bx + z bx by: the lane is linear % 32, the warp linear / 32
  Wait wait = Wait::None;
};

struct WarpState {
  unsigned present = 0;  // lanes that exist (a partial last warp has fewer)
  unsigned live = 0;     // lanes that have not returned
  unsigned arrived = 0;  // lanes waiting at the current meeting
  unsigned mask = 0;     // the mask of the current meeting
  // Posted values, double-buffered: a lane alternates buffers meeting by meeting, and it can
  // write a buffer again only after the next meeting, which every lane of a full-warp mask
  // reaches after reading, so no second meeting is needed to protect the reads.
  uint64_t slot[2][32];
  uint32_t fa[2][32 * 4], fb[2][32 * 2];  // posted mma fragments
  uint8_t phase[32];                      // per lane: the buffer of its next meeting
};

// The order in which ready fibers (and the blocks of a grid) run: C3GAN_CUDA_EMU_ORDER. Fibers
// switch only at barriers, so a result that changes with the order is a race: reverse and shuffle
// run readers before writers that forward order happens to run first.
enum class Order { Forward, Reverse, Shuffle };

Order order_from_env() {
  const char* v = std::getenv("C3GAN_CUDA_EMU_ORDER");
  if (!v || !*v || !std::strcmp(v, "forward")) return Order::Forward;
  if (!std::strcmp(v, "reverse")) return Order::Reverse;
  if (!std::strcmp(v, "shuffle")) return Order::Shuffle;
  std::fprintf(stderr, "c3gan CUDA emulator: C3GAN_CUDA_EMU_ORDER must be forward, reverse or shuffle; using forward\n");
  return Order::Forward;
}

Order run_order() {
  static const Order o = order_from_env();
  return o;
}

// 0..n-1 in the run order; shuffles are a fixed function of seed (splitmix64 + Fisher-Yates).
void fill_order(std::vector<uint32_t>& v, uint32_t n, uint64_t seed) {
  v.resize(n);
  for (uint32_t i = 0; i < n; ++i) v[i] = run_order() == Order::Reverse ? n - 1 - i : i;
  if (run_order() != Order::Shuffle) return;
  uint64_t st = seed * 0x9e3779b97f4a7c15ull + 1;
  for (uint32_t i = n; i > 1; --i) {
    uint64_t z = (st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::swap(v[i - 1], v[static_cast<uint32_t>(z % i)]);
  }
}


// The launch running on this host thread.
struct Run {
  dim3 grid, block;
  uint3 bidx{0, 0, 0};
  int threads = 0;
  std::vector<Fiber> fibers;
  std::vector<WarpState> warps;
  int live = 0, at_block = 0;
  Fiber* cur = nullptr;
  Context sched;
  std::string fault;
  void (*run)(const void*) = nullptr;
  const void* body = nullptr;
  std::vector<unsigned char> smem;
  std::vector<uint32_t> order;  // this sweep's fiber order
  uint64_t seed = 0;
};

thread_local Run* g_run = nullptr;

std::mutex& launch_mutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}

// Fiber stacks, reused by every launch (under launch_mutex); a guard page below each.
std::vector<char*>& stacks() {
  static std::vector<char*>* s = new std::vector<char*>();
  return *s;
}
char* stack_at(size_t i) {
  std::vector<char*>& s = stacks();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  while (s.size() <= i) {
    void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("CUDA emulator: no memory for fiber stacks");
    mprotect(p, page, PROT_NONE);
    s.push_back(static_cast<char*>(p) + page);
  }
  return s[i];
}

Run& current(const char* what) {
  if (!g_run) throw std::logic_error(std::string("CUDA emulator: ") + what + " called outside a kernel");
  return *g_run;
}

std::string where(const Run& r) {
  char b[160];
  const uint3 t = r.cur ? r.cur->tid : uint3{0, 0, 0};
  std::snprintf(b, sizeof b, " (block (%u,%u,%u), thread (%u,%u,%u))", r.bidx.x, r.bidx.y, r.bidx.z, t.x, t.y, t.z);
  return b;
}

// Back to the scheduler; the fiber runs on when released.
void yield(Run& r) { switch_context(r.cur->ctx, r.sched); }

// Stops the launch: the scheduler never resumes this block's fibers. C strings only: the frames
// of a faulting fiber are never unwound, so temporaries built by callers would never be freed.
[[noreturn]] void fault(Run& r, const char* what, const char* detail = "") {
  if (r.fault.empty()) r.fault = std::string(what) + detail + where(r);
  exit_to(r.cur->ctx, r.sched);  // a faulted fiber is never switched back to
}

void release(Run& r, Wait kind, int warp) {
  for (Fiber& f : r.fibers)
    if (f.wait == kind && (warp < 0 || f.linear / 32 == warp)) f.wait = Wait::None;
}

// The lanes of mask meet; the last to arrive releases the others.
void meet(Run& r, WarpState& w, unsigned mask, int lane, const char* what) {
  if (!((mask >> lane) & 1u)) fault(r, what, " with a mask that leaves out the calling lane");
  if (mask & ~w.present) fault(r, what, " names lanes past the block's last thread");
  if (mask & ~w.live) fault(r, what, " waits for lanes that have returned");
  if (w.arrived && w.mask != mask) fault(r, what, ": lanes of one warp meet with different masks");
  w.mask = mask;
  w.arrived |= 1u << lane;
  if (w.arrived == mask) {
    w.arrived = 0;
    release(r, Wait::Warp, r.cur->linear / 32);
    return;
  }
  r.cur->wait = Wait::Warp;
  yield(r);
}

void fiber_main(void*) {
  fiber_entered();
  Run& r = *g_run;
  r.run(r.body);
  Fiber& f = *r.cur;
  const int lane = f.linear % 32;
  WarpState& w = r.warps[static_cast<size_t>(f.linear / 32)];
  if (r.at_block) fault(r, "a thread returned while others wait at __syncthreads");
  if (w.arrived && ((w.mask >> lane) & 1u)) fault(r, "a lane returned while its warp waits for it in a shuffle or mma");
  w.live &= ~(1u << lane);
  --r.live;
  f.wait = Wait::Done;
  exit_to(f.ctx, r.sched);
}

std::string deadlock_text(const Run& r) {
  int blk = 0, warp = 0;
  for (const Fiber& f : r.fibers) {
    blk += f.wait == Wait::Block;
    warp += f.wait == Wait::Warp;
  }
  return "deadlock: " + std::to_string(blk) + " threads wait at __syncthreads and " + std::to_string(warp) +
         " in warp shuffles or mma, none can go on";
}

// Runs one block to the end; false with r.fault set when it faulted.
bool run_block(Run& r) {
  const int T = r.threads;
  for (int i = 0; i < T; ++i) {
    Fiber& f = r.fibers[static_cast<size_t>(i)];
    make_context(f.ctx, stack_at(static_cast<size_t>(i)), kStackBytes, fiber_main, nullptr);
    f.wait = Wait::None;
  }
  for (size_t w = 0; w < r.warps.size(); ++w) {
    const int n = std::min(32, T - static_cast<int>(w) * 32);
    WarpState& ws = r.warps[w];
    ws.present = ws.live = n == 32 ? 0xffffffffu : ((1u << n) - 1u);
    ws.arrived = ws.mask = 0;
    std::memset(ws.phase, 0, sizeof ws.phase);
  }
  r.live = T;
  r.at_block = 0;
  if (!r.smem.empty()) std::memset(r.smem.data(), 0xff, r.smem.size());
  for (uint64_t sweep = 0; r.live > 0; ++sweep) {
    bool ran = false;
    // index and reverse order never change; a shuffle is drawn anew each sweep
    if (sweep == 0 || run_order() == Order::Shuffle) fill_order(r.order, static_cast<uint32_t>(T), r.seed * 1000003u + sweep);
    for (uint32_t i : r.order) {
      Fiber& f = r.fibers[i];
      if (f.wait != Wait::None) continue;
      r.cur = &f;
      switch_context(r.sched, f.ctx);
      r.cur = nullptr;
      ran = true;
      if (!r.fault.empty()) return false;
    }
    if (!ran) {
      r.fault = deadlock_text(r) + " (block (" + std::to_string(r.bidx.x) + "," + std::to_string(r.bidx.y) + "," +
                std::to_string(r.bidx.z) + "))";
      return false;
    }
  }
  return true;
}

// ---- device memory and errors ----

struct DeviceState {
  std::mutex mu;
  std::map<uintptr_t, size_t> device;  // live cudaMalloc blocks
  std::map<uintptr_t, size_t> pinned;  // live cudaMallocHost blocks
  size_t in_use = 0, capacity = 0;
  int sms = 2;
  cudaError_t sticky = cudaSuccess;
  std::string sticky_text;
  // devices the driver reports (C3GAN_CUDA_EMU_DEVICES, default 1), all this one emulated device:
  // for the device choice's checks
  int devices = 1;
  // the driver's CUDA version (C3GAN_CUDA_EMU_DRIVER: 0 = no driver installed, or e.g. 12040 for a
  // driver too old for this build): below 13000, no device is reported, as cudart reports it
  int driver = 13000;

  DeviceState() {
    capacity = size_t(8) << 30;
    if (const char* m = std::getenv("C3GAN_CUDA_EMU_MEMORY")) {
      char* end = nullptr;
      const double v = std::strtod(m, &end);
      double mul = 1;
      if (end && (*end == 'k' || *end == 'K')) mul = 1024.0;
      if (end && (*end == 'm' || *end == 'M')) mul = 1024.0 * 1024;
      if (end && (*end == 'g' || *end == 'G')) mul = 1024.0 * 1024 * 1024;
      if (v > 0) capacity = static_cast<size_t>(v * mul);
    }
    if (const char* s = std::getenv("C3GAN_CUDA_EMU_SMS")) {
      const int v = std::atoi(s);
      if (v > 0) sms = v;
    }
    if (const char* s = std::getenv("C3GAN_CUDA_EMU_DEVICES")) {
      const int v = std::atoi(s);
      if (v > 0 && v <= 16) devices = v;
    }
    if (const char* s = std::getenv("C3GAN_CUDA_EMU_DRIVER")) {
      const int v = std::atoi(s);
      if (v >= 0) driver = v;
    }
  }
};

DeviceState& dev() {
  static DeviceState* d = new DeviceState();
  return *d;
}

thread_local cudaError_t t_last = cudaSuccess;
// The emulator's words for the last error it returned on this thread (kept after
// cudaGetLastError clears t_last, since the caller asks for the text after that).
thread_local cudaError_t t_text_code = cudaSuccess;
thread_local std::string t_text;

cudaError_t fail(cudaError_t e, const std::string& text = std::string()) {
  t_last = e;
  t_text_code = e;
  t_text = text;
  return e;
}

cudaError_t sticky() { return dev().sticky; }

// true when [p, p + n) lies inside one block of m (caller holds dev().mu)
bool inside(const std::map<uintptr_t, size_t>& m, const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = m.upper_bound(a);
  if (it == m.begin()) return false;
  --it;
  return a >= it->first && a + n <= it->first + it->second;
}

bool overlaps_device(const void* p, size_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const std::map<uintptr_t, size_t>& m = dev().device;
  auto it = m.upper_bound(a + (n ? n - 1 : 0));
  if (it == m.begin()) return false;
  --it;
  return it->first + it->second > a;
}

}  // namespace

// C3GAN_CUDA_EMU_KERNELS=skip: launches are checked (configuration, shared memory) but no block
// runs (the first launch, the runtime's probe, excepted), and device-side copies and fills move
// no bytes (reads back to the host still do). Results are garbage; what is left is the host's
// own path (JS, binding, allocator, staging, launch set-up), so an iteration's host time at a
// GPU-sized config can be measured on a CPU machine.
bool skip_kernels() {
  static const bool skip = [] {
    const char* v = std::getenv("C3GAN_CUDA_EMU_KERNELS");
    if (!v || !*v || !std::strcmp(v, "run")) return false;
    if (!std::strcmp(v, "skip")) return true;
    std::fprintf(stderr, "c3gan CUDA emulator: C3GAN_CUDA_EMU_KERNELS must be run or skip; running them\n");
    return false;
  }();
  return skip;
}

// ---- device side ----

const uint3& thread_idx() { return current("threadIdx").cur->tid; }
const uint3& block_idx() { return current("blockIdx").bidx; }
const dim3& block_dim() { return current("blockDim").block; }
const dim3& grid_dim() { return current("gridDim").grid; }
int lane_id() { return current("a warp built-in").cur->linear % 32; }
void* dynamic_shared() { return current("extern __shared__").smem.data(); }

void syncthreads() {
  Run& r = current("__syncthreads");
  if (r.live < r.threads) fault(r, "__syncthreads after some of the block's threads returned");
  ++r.at_block;
  if (r.at_block == r.threads) {
    r.at_block = 0;
    release(r, Wait::Block, -1);
    return;
  }
  r.cur->wait = Wait::Block;
  yield(r);
}

uint64_t warp_exchange(unsigned mask, uint64_t mine, int src) {
  Run& r = current("a warp shuffle");
  const int lane = r.cur->linear % 32;
  WarpState& w = r.warps[static_cast<size_t>(r.cur->linear / 32)];
  if (src < 0 || src > 31 || !((mask >> src) & 1u)) fault(r, "a shuffle reads a lane outside its mask");
  const int p = w.phase[lane];
  w.phase[lane] ^= 1;
  w.slot[p][lane] = mine;
  meet(r, w, mask, lane, "a warp shuffle");
  const uint64_t v = w.slot[p][src];
  // a partial mask: lanes outside it do not wait at this warp's next meeting, so wait here
  if (mask != 0xffffffffu) meet(r, w, mask, lane, "a warp shuffle");
  return v;
}

// C3GAN_CUDA_EMU_TENSOR_CORES=mma-rows-swapped,wgmma-strides-swapped: the emulated tensor cores
// read as the listed misreadings, from the start (a whole program sees a device whose tensor
// cores disagree with the kernels); unset: as the PTX ISA says
TensorCoreReading reading_from_environment() {
  TensorCoreReading r;
  const char* v = std::getenv("C3GAN_CUDA_EMU_TENSOR_CORES");
  if (!v || !*v) return r;
  std::string list(v);
  for (size_t at = 0; at <= list.size();) {
    const size_t end = std::min(list.find(',', at), list.size());
    const std::string part = list.substr(at, end - at);
    if (part == "mma-rows-swapped") r.mma_row_halves_swapped = true;
    else if (part == "wgmma-strides-swapped") r.wgmma_strides_swapped = true;
    else if (!part.empty())
      std::fprintf(stderr, "c3gan CUDA emulator: C3GAN_CUDA_EMU_TENSOR_CORES: unknown '%s' (mma-rows-swapped, "
                           "wgmma-strides-swapped); ignored\n", part.c_str());
    at = end + 1;
  }
  return r;
}

// the layout probe's test sets it between launches; the environment gives its first value
TensorCoreReading g_reading = reading_from_environment();

void set_tensor_core_reading(const TensorCoreReading& r) { g_reading = r; }

void mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  Run& r = current("mma.sync");
  const int lane = r.cur->linear % 32;
  WarpState& w = r.warps[static_cast<size_t>(r.cur->linear / 32)];
  const int p = w.phase[lane];
  w.phase[lane] ^= 1;
  for (int q = 0; q < 4; ++q) w.fa[p][lane * 4 + q] = a[q];
  w.fb[p][lane * 2] = b[0];
  w.fb[p][lane * 2 + 1] = b[1];
  meet(r, w, 0xffffffffu, lane, "mma.sync");
  if (!g_reading.mma_row_halves_swapped) return mma_m16n8k8_lane(d, lane, w.fa[p], w.fb[p]);
  float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  mma_m16n8k8_lane(z, lane, w.fa[p], w.fb[p]);
  for (int q = 0; q < 4; ++q) d[q] += z[q ^ 2];
}

// The block's dynamic shared memory sits at this address of the shared window, not at 0 (on the
// GPU static and reserved shared memory come first), so a kernel that hands a generic pointer or
// an offset where a shared address belongs is caught.
constexpr uint32_t kSharedBase = 0x400;

uint32_t shared_address(const void* p) {
  Run& r = current("__cvta_generic_to_shared");
  const char* base = reinterpret_cast<const char*>(r.smem.data());
  const char* q = static_cast<const char*>(p);
  if (q < base || q > base + r.smem.size()) fault(r, "a shared address taken of memory outside the dynamic shared memory");
  return kSharedBase + static_cast<uint32_t>(q - base);
}

void wgmma_tf32(float* d, int n, uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  Run& r = current("wgmma.mma_async");
  if (r.threads % 128) fault(r, "wgmma in a block whose threads are not whole warpgroups");
  SmemDesc a = decode_desc(desc_a), b = decode_desc(desc_b);
  if (g_reading.wgmma_strides_swapped) std::swap(a.lbo, a.sbo), std::swap(b.lbo, b.sbo);
  if (a.swizzle || b.swizzle || a.base_offset || b.base_offset)
    fault(r, "wgmma descriptor with a swizzle or base offset (the emulator knows the non-swizzled K-major layout only)");
  // tf32 operands: the tensor core reads the top 19 bits of each float
  const auto read = [&](uint32_t addr) {
    const uint32_t off = addr - kSharedBase;
    if (addr < kSharedBase || (addr & 3u) || off + 4 > r.smem.size())
      fault(r, "wgmma operand outside the dynamic shared memory");
    uint32_t u;
    std::memcpy(&u, r.smem.data() + off, 4);
    u &= 0xffffe000u;
    float x;
    std::memcpy(&x, &u, 4);
    return x;
  };
  const int warp = (r.cur->linear / 32) % 4, lane = r.cur->linear % 32;
  for (int v = 0; v < n / 2; ++v) {
    const int row = wgmma_row(warp, lane, v), col = wgmma_col(lane, v);
    float s = accumulate ? d[v] : 0.0f;
    for (int k = 0; k < 8; ++k) s = std::fma(read(kmajor_at(a, row, k)), read(kmajor_at(b, col, k)), s);
    d[v] = s;
  }
}

// per kernel: the dynamic shared memory it opted into (cudaFuncSetAttribute)
std::mutex& optin_mutex() {
  static std::mutex m;
  return m;
}
std::map<const void*, size_t>& optins() {
  static std::map<const void*, size_t> m;
  return m;
}

size_t dynamic_shared_limit(const void* func) {
  if (!func) return kMaxDynamicShared;
  std::lock_guard<std::mutex> g(optin_mutex());
  const auto it = optins().find(func);
  return it == optins().end() ? kMaxDynamicShared : std::max(kMaxDynamicShared, it->second);
}

void launch(const void* func, dim3 grid, dim3 block, size_t smem, void (*run)(const void*), const void* body) {
  if (sticky() != cudaSuccess) {
    fail(sticky());
    return;
  }
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    char b[200];
    std::snprintf(b, sizeof b, "invalid configuration argument (CUDA emulator: grid (%u,%u,%u), block (%u,%u,%u))",
                  grid.x, grid.y, grid.z, block.x, block.y, block.z);
    fail(cudaErrorInvalidConfiguration, b);
    return;
  }
  const size_t limit = dynamic_shared_limit(func);
  if (smem > limit) {
    fail(cudaErrorInvalidValue, "invalid argument (CUDA emulator: " + std::to_string(smem) +
                                    " bytes of dynamic shared memory, over the " + std::to_string(limit >> 10) +
                                    " KiB this kernel may use" + (limit == kMaxDynamicShared ? " without opt-in)" : ")"));
    return;
  }
  std::lock_guard<std::mutex> g(launch_mutex());
  static uint64_t launches = 0;  // under launch_mutex
  // the process's first launch, the runtime's probe kernel, runs even when skipping: its result is checked
  if (launches > 0 && skip_kernels()) return;
  const uint64_t seed = ++launches;
  Run r;
  r.grid = grid;
  r.block = block;
  r.threads = static_cast<int>(threads);
  r.run = run;
  r.body = body;
  r.smem.resize(smem);
  r.fibers.resize(threads);
  r.warps.resize((threads + 31) / 32);
  for (unsigned z = 0, i = 0; z < block.z; ++z)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x, ++i) {
        r.fibers[i].tid = uint3{x, y, z};
        r.fibers[i].linear = static_cast<int>(i);
      }
  init_thread_context(r.sched);
  Run* outer = g_run;
  g_run = &r;
  bool ok = true;
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  std::vector<uint32_t> block_order;
  if (blocks <= 0xffffffffu) fill_order(block_order, static_cast<uint32_t>(blocks), seed);
  for (uint64_t i = 0; i < blocks && ok; ++i) {
    const uint64_t b = block_order.empty() ? i : block_order[i];
    r.bidx = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                   static_cast<unsigned>(b / (uint64_t(grid.x) * grid.y))};
    r.seed = seed * 0x100000001b3ull + b;
    ok = run_block(r);
  }
  g_run = outer;
  if (!ok) {
    DeviceState& d = dev();
    std::lock_guard<std::mutex> lk(d.mu);
    d.sticky = cudaErrorLaunchFailure;
    d.sticky_text = "unspecified launch failure (CUDA emulator: " + r.fault + ")";
  }
}

bool kernel_pointers_ok(const ArgumentPointers* args, int n) {
  // skipped kernels time the host's own path (host-cost.sh): an emulator-only check has no place in it
  if (skip_kernels()) return true;
  DeviceState& d = dev();
  std::lock_guard<std::mutex> lk(d.mu);
  for (int i = 0; i < n; ++i)
    for (const void* p : {args[i].p, args[i].bias}) {
      if (!p || inside(d.device, p, 0) || inside(d.pinned, p, 0)) continue;
      char b[220];
      std::snprintf(b, sizeof b,
                    "an illegal memory access was encountered (CUDA emulator: kernel argument %d%s, %p, is not device "
                    "or pinned memory)",
                    i, p == args[i].p ? "" : " (its bias)", p);
      d.sticky = cudaErrorIllegalAddress;
      d.sticky_text = b;
      return false;
    }
  return true;
}

void clear_sticky_error() {
  std::lock_guard<std::mutex> g(dev().mu);
  dev().sticky = cudaSuccess;
  dev().sticky_text.clear();
  t_last = cudaSuccess;
}

}  // namespace c3emu

// ---- runtime API ----

using c3emu::dev;
using c3emu::fail;
using c3emu::sticky;

struct CUstream_st {
  unsigned flags;
};
struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;
  std::chrono::steady_clock::time_point at;
};

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > c3emu::kMaxOptInShared)
    return fail(cudaErrorInvalidValue, "invalid argument (CUDA emulator: cudaFuncSetAttribute " + std::to_string(value) +
                                           " bytes; the most a block may opt into is 227 KiB)");
  std::lock_guard<std::mutex> g(c3emu::optin_mutex());
  c3emu::optins()[func] = static_cast<size_t>(value);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 0;
  if (dev().driver < 13000) return fail(cudaErrorInsufficientDriver);
  *count = dev().devices;
  return cudaSuccess;
}

// the emulated runtime is the CUDA version the real build is made with (13.0); the driver's may differ
cudaError_t cudaDriverGetVersion(int* version) {
  *version = dev().driver;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= dev().devices) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "c3gan CUDA emulator on the host CPU%s",
                c3emu::skip_kernels() ? " (kernels skipped: C3GAN_CUDA_EMU_KERNELS=skip)" : "");
  prop->totalGlobalMem = dev().capacity;
  prop->sharedMemPerBlock = c3emu::kMaxDynamicShared;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = dev().sms;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  return device >= 0 && device < dev().devices ? cudaSuccess : fail(cudaErrorInvalidDevice);
}
cudaError_t cudaDeviceSynchronize() { return sticky(); }

cudaError_t cudaGetLastError() {
  const cudaError_t s = sticky();
  if (s != cudaSuccess) return s;
  const cudaError_t e = c3emu::t_last;
  c3emu::t_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return sticky() != cudaSuccess ? sticky() : c3emu::t_last; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  if (e != cudaSuccess && e == dev().sticky && !dev().sticky_text.empty()) return dev().sticky_text.c_str();
  if (e != cudaSuccess && e == c3emu::t_text_code && !c3emu::t_text.empty()) return c3emu::t_text.c_str();
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "unknown error";
  }
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  *s = new CUstream_st{flags};
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return sticky(); }

cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  *e = new CUevent_st();
  (*e)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (sticky() != cudaSuccess) return sticky();
  if (!e) return fail(cudaErrorInvalidResourceHandle);
  e->recorded = true;
  e->at = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (!e) return fail(cudaErrorInvalidResourceHandle);
  return sticky();
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (sticky() != cudaSuccess) return sticky();
  if (!a || !b || (a->flags & cudaEventDisableTiming) || (b->flags & cudaEventDisableTiming))
    return fail(cudaErrorInvalidResourceHandle);
  if (!a->recorded || !b->recorded) return fail(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = nullptr;
  if (sticky() != cudaSuccess) return sticky();
  c3emu::DeviceState& d = dev();
  std::lock_guard<std::mutex> g(d.mu);
  if (bytes > d.capacity || d.in_use > d.capacity - bytes)
    return fail(cudaErrorMemoryAllocation, "out of memory (CUDA emulator: " + std::to_string(bytes) +
                                               " bytes asked, " + std::to_string(d.capacity - d.in_use) +
                                               " of C3GAN_CUDA_EMU_MEMORY left)");
  if (bytes == 0) return cudaSuccess;
  void* q = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!q) return fail(cudaErrorMemoryAllocation);
  d.device[reinterpret_cast<uintptr_t>(q)] = bytes;
  d.in_use += bytes;
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  c3emu::DeviceState& d = dev();
  std::lock_guard<std::mutex> g(d.mu);
  auto it = d.device.find(reinterpret_cast<uintptr_t>(p));
  if (it == d.device.end()) return fail(cudaErrorInvalidValue, "invalid argument (CUDA emulator: cudaFree of a pointer cudaMalloc did not return)");
  d.in_use -= it->second;
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(p, it->second);  // the allocator poisons what it caches
#endif
  d.device.erase(it);
  std::free(p);
  return d.sticky;
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = nullptr;
  if (sticky() != cudaSuccess) return sticky();
  void* q = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  if (!q) return fail(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> g(dev().mu);
  dev().pinned[reinterpret_cast<uintptr_t>(q)] = bytes;
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> g(dev().mu);
  if (!dev().pinned.erase(reinterpret_cast<uintptr_t>(p)))
    return fail(cudaErrorInvalidValue, "invalid argument (CUDA emulator: cudaFreeHost of a pointer cudaMallocHost did not return)");
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (sticky() != cudaSuccess) return sticky();
  std::lock_guard<std::mutex> g(dev().mu);
  *total_bytes = dev().capacity;
  *free_bytes = dev().capacity - dev().in_use;
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  if (sticky() != cudaSuccess) return sticky();
  if (!bytes) return cudaSuccess;
  {
    std::lock_guard<std::mutex> g(dev().mu);
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    const auto& m = dev().device;
    if (kind == cudaMemcpyDefault || kind == cudaMemcpyHostToHost)
      return fail(cudaErrorInvalidValue, "invalid argument (CUDA emulator: c3gan names every copy's direction)");
    if (dst_dev ? !c3emu::inside(m, dst, bytes) : c3emu::overlaps_device(dst, bytes))
      return fail(cudaErrorInvalidValue, std::string("invalid argument (CUDA emulator: cudaMemcpyAsync destination is ") +
                                             (dst_dev ? "not inside one device allocation" : "device memory") + ")");
    if (src_dev ? !c3emu::inside(m, src, bytes) : c3emu::overlaps_device(src, bytes))
      return fail(cudaErrorInvalidValue, std::string("invalid argument (CUDA emulator: cudaMemcpyAsync source is ") +
                                             (src_dev ? "not inside one device allocation" : "device memory") + ")");
  }
  if (kind == cudaMemcpyDeviceToHost || !c3emu::skip_kernels()) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  if (sticky() != cudaSuccess) return sticky();
  if (!bytes) return cudaSuccess;
  {
    std::lock_guard<std::mutex> g(dev().mu);
    if (!c3emu::inside(dev().device, dst, bytes))
      return fail(cudaErrorInvalidValue, "invalid argument (CUDA emulator: cudaMemsetAsync outside device memory)");
  }
  if (!c3emu::skip_kernels()) std::memset(dst, value, bytes);
  return cudaSuccess;
}
