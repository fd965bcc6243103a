// CUDA runtime: probing for a usable device, the process stream, error reporting, the math
// mode and the host<->device copies through pinned staging buffers. cudart is linked statically,
// so the addon loads on machines without a driver; there the probe reports why CUDA is off.
// Process-lifetime objects are created with new and never destroyed: freeing CUDA resources in
// static destructors races the runtime's own teardown.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <initializer_list>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "cudnn_api.h"
#include "memory.cuh"
#include "runtime.cuh"

namespace c3 {
namespace cuda {

namespace {

__global__ void probe_kernel(int* out) { *out = 0x1234abcd; }

std::string error_text(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

// Why cudaGetDeviceCount failed, in words that say what to do. cudart names a missing driver and
// an old one alike ("CUDA driver version is insufficient"); the driver's version (0 when no
// libcuda loads) tells them apart.
// CUDA's version numbers (13000) as people write them (13.0)
std::string cuda_version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

std::string no_cuda_reason(cudaError_t err) {
  if (err != cudaErrorInsufficientDriver) return error_text(err);
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  if (driver == 0) return "no NVIDIA driver: libcuda.so.1 is not installed or not on the loader's path; " + error_text(err);
  return "the NVIDIA driver supports CUDA " + cuda_version(driver) + ", this build of c3gan needs CUDA " +
         cuda_version(runtime) + ": update the driver; " + error_text(err);
}

// ", driver CUDA 13.0": what a bug report about a GPU run wants beside the device
std::string driver_text() {
  int driver = 0;
  return cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0 ? ", driver CUDA " + cuda_version(driver) : "";
}

// "NVIDIA H200, sm_90, 132 SMs, 139.8 GiB"
std::string describe(const cudaDeviceProp& prop) {
  char desc[320];
  std::snprintf(desc, sizeof desc, "%s, sm_%d%d, %d SMs, %.1f GiB", prop.name, prop.major, prop.minor,
                prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return desc;
}

// The device the backend starts on (cuda_select_device): C3GAN_CUDA_DEVICE, else 0; -1 for a
// value that is not an index (reported when the backend starts).
std::atomic<int>& device_slot() {
  static std::atomic<int>* d = [] {
    const char* env = std::getenv("C3GAN_CUDA_DEVICE");
    if (!env || !*env) return new std::atomic<int>(0);
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    return new std::atomic<int>(*end == '\0' && v >= 0 && v < 1024 ? static_cast<int>(v) : -1);
  }();
  return *d;
}
std::atomic<bool> g_started{false};  // the backend's state exists: the device is fixed

struct DeviceState {
  bool usable = false;
  std::string status;
  int index = 0;  // the device (cudaSetDevice), bound on every host thread that calls CUDA
  int sms = 0;
  cudaStream_t stream = nullptr;
  unsigned* arrivals = nullptr;  // the probe's int, kept at 0 between kernels (block_arrivals)

  DeviceState() {
    g_started = true;
    index = device_slot().load();
    if (index < 0) {
      status = std::string("unavailable (C3GAN_CUDA_DEVICE must be a device index (0, 1, ...), got '") +
               std::getenv("C3GAN_CUDA_DEVICE") + "')";
      index = 0;
      return;
    }
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      // 35 insufficient (or no) driver, 100 no device, 34 stub library, 3 init error: "no CUDA here"
      status = "unavailable (" + no_cuda_reason(err) + ")";
      cudaGetLastError();  // clear the error so it is not reported later
      return;
    }
    if (count == 0) {
      status = "unavailable (no CUDA device)";
      return;
    }
    if (index >= count) {
      status = "unavailable (device " + std::to_string(index) + " was chosen, but the driver sees " +
               std::to_string(count) + " CUDA device" + (count == 1 ? "" : "s") + ")";
      return;
    }
    cudaDeviceProp prop;
    if ((err = cudaGetDeviceProperties(&prop, index)) != cudaSuccess) {
      status = "unavailable (could not read device " + std::to_string(index) + " properties: " + error_text(err) + ")";
      cudaGetLastError();
      return;
    }
    // which of several: the index, as CUDA numbers them (after CUDA_VISIBLE_DEVICES)
    const std::string desc = describe(prop) + driver_text() +
                             (count > 1 ? ", device " + std::to_string(index) + " of " + std::to_string(count) : "");
    if (prop.major < 8) {
      // the matrix kernels use mma.sync TF32 (sm_80+); the build carries sm_80..sm_90 code
      status = std::string("unavailable (found ") + desc + ", but c3gan's CUDA kernels need compute capability 8.0 or newer)";
      return;
    }
    if ((err = cudaSetDevice(index)) != cudaSuccess ||
        (err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) != cudaSuccess) {
      status = std::string("unavailable (found ") + desc + ", but could not start it: " + error_text(err) + ")";
      cudaGetLastError();
      return;
    }
    // one tiny kernel: catches a driver too old for this build's PTX or a missing kernel image
    int* d = nullptr;
    int h = 0;
    err = cudaMalloc(&d, sizeof(int));
    if (err == cudaSuccess) {
      enqueue(probe_kernel, 1, 1, 0, stream, d);
      err = cudaGetLastError();
      if (err == cudaSuccess) err = cudaMemcpyAsync(&h, d, sizeof(int), cudaMemcpyDeviceToHost, stream);
      if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
      // kept as the block arrival counter, which starts at 0
      if (err == cudaSuccess && h == 0x1234abcd) err = cudaMemsetAsync(d, 0, sizeof(int), stream);
      if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
    }
    if (err != cudaSuccess || h != 0x1234abcd) {
      status = std::string("unavailable (found ") + desc + ", but a test kernel failed: " +
               (err != cudaSuccess ? error_text(err) : std::string("wrong result")) + ")";
      cudaGetLastError();
      if (d) cudaFree(d);
      return;
    }
    arrivals = reinterpret_cast<unsigned*>(d);
    sms = prop.multiProcessorCount;
    usable = true;
    status = std::string("available (") + desc + ")";
  }
};

const DeviceState& state() {
  static const DeviceState* s = new DeviceState();
  return *s;
}

const DeviceState& usable_state() {
  const DeviceState& s = state();
  if (!s.usable) throw Error("cuda", std::string("CUDA is ") + s.status);
  // the current device is per host thread: a thread's first CUDA call here makes it the chosen one
  thread_local bool bound = false;
  if (!bound) {
    check_cuda(cudaSetDevice(s.index), "set device");
    bound = true;
  }
  return s;
}

// The first sticky error, reported again by every later failure.
std::mutex& sticky_mutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}
std::string& first_sticky() {
  static std::string* s = new std::string();
  return *s;
}

bool is_sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorContextIsDestroyed:
    case cudaErrorUnknown:
      return true;
    default:
      return false;
  }
}

// ---- math mode ----

// A choice read once from the environment: the index of its value among names (the first when
// the variable is unset or empty), kInvalidChoice for anything else (reported at first use).
constexpr int kInvalidChoice = -1;
std::atomic<int>* env_choice(const char* var, std::initializer_list<const char*> names) {
  const char* env = std::getenv(var);
  int v = 0;
  if (env && *env) {
    v = kInvalidChoice;
    int i = 0;
    for (const char* n : names) {
      if (!std::strcmp(env, n)) v = i;
      ++i;
    }
  }
  return new std::atomic<int>(v);
}

// The slot's choice; an invalid environment value is an error naming the variable.
int chosen(const std::atomic<int>& slot, const char* var, const char* allowed) {
  const int v = slot.load();
  if (v == kInvalidChoice)
    throw Error("cuda", std::string(var) + " must be " + allowed + ", got '" + std::getenv(var) + "'");
  return v;
}

std::atomic<int>& math_slot() {  // CudaMath
  static std::atomic<int>* m = env_choice("C3GAN_CUDA_MATH", {"tf32", "fp32"});
  return *m;
}

std::atomic<int>& tile_slot() {  // CudaTile
  static std::atomic<int>* t = env_choice("C3GAN_CUDA_TILE", {"registers", "async", "wgmma"});
  return *t;
}

std::atomic<int>& conv_slot() {  // CudaConv
  static std::atomic<int>* c = env_choice("C3GAN_CUDA_CONV", {"native", "cudnn", "auto"});
  return *c;
}

// ---- pinned staging for host <-> device copies ----

constexpr size_t kStagingBytes = size_t(4) << 20;  // per buffer; two alternate
// Small uploads (a loss's targets, Adam's parameter table: ~14 per training iteration) take the
// next of kSmallSlots slots instead: one waits only for the copy kSmallSlots small uploads back,
// so the host can run about an iteration ahead of the GPU. Through the two big buffers, each
// waited for the copy two uploads back, queued behind every kernel issued before it.
constexpr size_t kSmallBytes = size_t(64) << 10;
constexpr int kSmallSlots = 32;

struct Staging {
  std::mutex mu;
  void* buf[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};  // the last copy that used buf[i]
  void* small = nullptr;                     // kSmallSlots slots of kSmallBytes
  cudaEvent_t small_done[kSmallSlots] = {};  // the last copy that used slot i
  int next_small = 0;

  static void ensure_buffer(void*& p, size_t bytes) {
    // assigned only after success, so a failed call leaves nothing half made
    if (p) return;
    void* q = nullptr;
    check_cuda(cudaMallocHost(&q, bytes), "upload (pinned staging buffer)");
    p = q;
  }
  static void ensure_event(cudaEvent_t& e) {
    if (e) return;
    cudaEvent_t q = nullptr;
    check_cuda(cudaEventCreateWithFlags(&q, cudaEventDisableTiming), "upload (staging event)");
    e = q;
  }
  void ensure() {
    for (int i = 0; i < 2; ++i) {
      ensure_buffer(buf[i], kStagingBytes);
      ensure_event(done[i]);
    }
  }
  void ensure_small() {
    ensure_buffer(small, kSmallBytes * kSmallSlots);
    for (cudaEvent_t& e : small_done) ensure_event(e);
  }
};

Staging& staging() {
  static Staging* s = new Staging();
  return *s;
}

}  // namespace

std::atomic<int64_t> g_kernel_launches{0};

cudaStream_t stream() { return usable_state().stream; }
int sm_count() { return usable_state().sms; }
unsigned* block_arrivals() { return usable_state().arrivals; }

namespace tile {
bool wgmma_built();  // tile_gemm.cuh
}

namespace {

// ---- the tensor cores, asked once before the first product that would use them ----
// Every TF32 product rests on the fragment layouts read from the PTX ISA (layout_probe.cu), which
// the emulator implements as read, so only a device can say they are right; where it disagrees,
// every result would be wrong. So the instruction is probed (a few microseconds, once a process)
// before its first use, and where the device disagrees the products go another way: exact fp32
// for mma.sync, the register pipeline for wgmma; cuda_tensor_core_fallback() says why.
struct TensorCoreVerdict {
  std::mutex mu;
  std::atomic<int> answer{0};  // 0: not asked yet, 1: the device agrees, 2: it does not
  std::string why;             // what it did instead (answer 2)
};
TensorCoreVerdict& mma_verdict() {
  static TensorCoreVerdict* v = new TensorCoreVerdict();
  return *v;
}
TensorCoreVerdict& wgmma_verdict() {
  static TensorCoreVerdict* v = new TensorCoreVerdict();
  return *v;
}

bool device_agrees(TensorCoreVerdict& v, std::string (*probe)()) {
  if (const int a = v.answer.load(std::memory_order_acquire)) return a == 1;
#ifdef C3GAN_CUDA_EMULATION
  if (c3emu::skip_kernels()) return true;  // no kernel runs, so there is nothing to ask
#endif
  std::lock_guard<std::mutex> g(v.mu);
  if (v.answer.load(std::memory_order_relaxed) == 0) {
    v.why = probe();  // a CUDA error propagates and leaves the question open
    v.answer.store(v.why.empty() ? 1 : 2, std::memory_order_release);
  }
  return v.answer.load(std::memory_order_relaxed) == 1;
}

}  // namespace

CudaMath chosen_math() {
  return static_cast<CudaMath>(chosen(math_slot(), "C3GAN_CUDA_MATH", "'tf32' or 'fp32'"));
}

CudaMath math() {
  const CudaMath m = chosen_math();
  if (m == CudaMath::TF32 && !device_agrees(mma_verdict(), probe_mma)) return CudaMath::FP32;
  return m;
}

CudaTile chosen_tile() {
  return static_cast<CudaTile>(chosen(tile_slot(), "C3GAN_CUDA_TILE", "'registers', 'async' or 'wgmma'"));
}

CudaTile tile_pipeline() {
  const CudaTile t = chosen_tile();
  if (t == CudaTile::Wgmma && tile::wgmma_built() && !device_agrees(wgmma_verdict(), probe_wgmma))
    return CudaTile::Registers;
  return t;
}

CudaConv conv_engine() {
  const auto c = static_cast<CudaConv>(chosen(conv_slot(), "C3GAN_CUDA_CONV", "'native', 'cudnn' or 'auto'"));
  if (c == CudaConv::Cudnn && !cudnn::api())
    throw Error("cuda", "C3GAN_CUDA_CONV=cudnn, but cuDNN is " + cudnn::describe());
  return c;
}

void check_cuda(cudaError_t e, const char* op) {
  if (e == cudaSuccess) return;
  const std::string where = std::string("cuda ") + op;
  std::string msg = error_text(e);
  if (is_sticky(e)) {
    std::lock_guard<std::mutex> g(sticky_mutex());
    std::string& first = first_sticky();
    if (first.empty()) first = msg;
    msg += " (sticky: the CUDA context is unusable after this error, which may come from an earlier "
           "asynchronous kernel; first sticky error: " + first + "; restart the process)";
    throw Error(where, msg);
  }
  cudaGetLastError();  // a non-sticky error is cleared so the next call does not report it again
  if (e == cudaErrorMemoryAllocation) throw OutOfMemory(where, msg);
  throw Error(where, msg);
}

void check_launch(const char* op) { check_cuda(cudaGetLastError(), op); }

unsigned grid_for(int64_t n, int threads) {
  if (n <= 0) return 0;
  const int64_t blocks = (n + threads - 1) / threads;
  // enough blocks to fill the device several times; a grid-stride loop does the rest
  return static_cast<unsigned>(std::min<int64_t>(blocks, int64_t(sm_count()) * 32));
}

void upload(float* dst, const float* host, size_t n) {
  if (!n) return;
  Staging& st = staging();
  std::lock_guard<std::mutex> g(st.mu);
  cudaStream_t s = stream();
  const size_t bytes = n * sizeof(float);
  if (bytes <= kSmallBytes) {
    st.ensure_small();
    const int slot = st.next_small;
    char* p = static_cast<char*>(st.small) + slot * kSmallBytes;
    check_cuda(cudaEventSynchronize(st.small_done[slot]), "upload");  // slot no longer read by a copy
    std::memcpy(p, host, bytes);
    check_cuda(cudaMemcpyAsync(dst, p, bytes, cudaMemcpyHostToDevice, s), "upload");
    check_cuda(cudaEventRecord(st.small_done[slot], s), "upload");
    st.next_small = (slot + 1) % kSmallSlots;
    return;
  }
  st.ensure();
  int i = 0;
  for (size_t off = 0; off < bytes; off += kStagingBytes, i ^= 1) {
    const size_t len = std::min(kStagingBytes, bytes - off);
    check_cuda(cudaEventSynchronize(st.done[i]), "upload");  // buffer i no longer read by a copy
    std::memcpy(st.buf[i], reinterpret_cast<const char*>(host) + off, len);
    check_cuda(cudaMemcpyAsync(reinterpret_cast<char*>(dst) + off, st.buf[i], len, cudaMemcpyHostToDevice, s),
               "upload");
    check_cuda(cudaEventRecord(st.done[i], s), "upload");
  }
}

void download(float* host, const float* src, size_t n) {
  if (!n) return;
  Staging& st = staging();
  std::lock_guard<std::mutex> g(st.mu);
  st.ensure();
  cudaStream_t s = stream();
  const size_t bytes = n * sizeof(float);
  const size_t chunks = (bytes + kStagingBytes - 1) / kStagingBytes;
  auto chunk_len = [&](size_t c) { return std::min(kStagingBytes, bytes - c * kStagingBytes); };
  // stream order puts each copy into buf[c & 1] after whatever used that buffer before
  auto enqueue = [&](size_t c) {
    const int b = static_cast<int>(c & 1);
    check_cuda(cudaMemcpyAsync(st.buf[b], reinterpret_cast<const char*>(src) + c * kStagingBytes, chunk_len(c),
                               cudaMemcpyDeviceToHost, s),
               "download");
    check_cuda(cudaEventRecord(st.done[b], s), "download");
  };
  enqueue(0);
  if (chunks > 1) enqueue(1);
  for (size_t c = 0; c < chunks; ++c) {
    const int b = static_cast<int>(c & 1);
    // also where errors of earlier asynchronous kernels surface
    check_cuda(cudaEventSynchronize(st.done[b]), "download");
    std::memcpy(reinterpret_cast<char*>(host) + c * kStagingBytes, st.buf[b], chunk_len(c));
    if (c + 2 < chunks) enqueue(c + 2);
  }
}

void copy(float* dst, const float* src, size_t n) {
  if (!n || dst == src) return;
  check_cuda(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream()), "copy");
}

void synchronize() { check_cuda(cudaStreamSynchronize(stream()), "synchronize"); }

}  // namespace cuda

const char* cuda_status() { return cuda::state().status.c_str(); }

// C3GAN_CUDA_ARCHS: CMake's architecture list ("80-real 90a-real 90-virtual", "90": both kinds)
const char* cuda_build() {
#ifdef C3GAN_CUDA_EMULATION
  return "the host emulator (C3GAN_CUDA=EMULATE: every CUDA thread a fiber)";
#else
  static const std::string text = [] {
    std::string sass, ptx;
    std::string list = C3GAN_CUDA_ARCHS;
    size_t at = 0;
    while (at < list.size()) {
      size_t end = list.find(' ', at);
      if (end == std::string::npos) end = list.size();
      const std::string item = list.substr(at, end - at);
      at = end + 1;
      if (item.empty()) continue;
      const size_t dash = item.find('-');
      const std::string arch = item.substr(0, dash), kind = dash == std::string::npos ? "" : item.substr(dash + 1);
      if (kind != "virtual") sass += (sass.empty() ? "sm_" : " sm_") + arch;
      if (kind != "real") ptx += (ptx.empty() ? "compute_" : " compute_") + arch;
    }
    return sass + (ptx.empty() ? "" : (sass.empty() ? "" : " + ") + ptx + " PTX");
  }();
  return text.c_str();
#endif
}
bool cuda_available() { return cuda::state().usable; }

void cuda_select_device(int index) {
  c3::check(index >= 0, "cuda_select_device", "a device index is 0 or more, got ", index);
  if (cuda::g_started) {
    const cuda::DeviceState& s = cuda::state();
    if (!s.usable)
      throw Error("cuda_select_device", "device " + std::to_string(index) + " was asked for, but CUDA is " + s.status);
    if (s.index == index) return;
    throw Error("cuda_select_device",
                "the CUDA backend already runs on device " + std::to_string(s.index) + " (" + s.status +
                    "); c3gan uses one GPU per process, so device " + std::to_string(index) +
                    " needs a process of its own (choose it before the first CUDA use: \"device\": \"cuda:" +
                    std::to_string(index) + "\", C3GAN_CUDA_DEVICE or CUDA_VISIBLE_DEVICES)");
  }
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error("cuda_select_device", "device " + std::to_string(index) + " was asked for, but CUDA is unavailable (" +
                                          cuda::error_text(err) + ")");
  }
  if (index >= count) {
    std::string seen;
    for (const std::string& d : cuda_devices()) seen += "\n  " + d;
    throw Error("cuda_select_device", "device " + std::to_string(index) + " was asked for, but the driver sees " +
                                          std::to_string(count) + " CUDA device" + (count == 1 ? "" : "s") +
                                          (seen.empty() ? "" : ":" + seen));
  }
  cuda::device_slot() = index;
}

int cuda_device_index() { return cuda::g_started ? cuda::state().index : std::max(cuda::device_slot().load(), 0); }

std::vector<std::string> cuda_devices() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return {"none (" + cuda::error_text(err) + ")"};
  }
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess) out.push_back(std::to_string(i) + ": " + cuda::describe(prop));
    else cudaGetLastError(), out.push_back(std::to_string(i) + ": (properties unreadable)");
  }
  if (out.empty()) out.push_back("none (no CUDA device)");
  return out;
}

int64_t cuda_kernel_launches() { return cuda::g_kernel_launches.load(std::memory_order_relaxed); }

CudaMath cuda_math() { return cuda::chosen_math(); }
CudaTile cuda_tile() { return cuda::chosen_tile(); }

std::string cuda_tensor_core_fallback() {
  std::string out;
  for (auto* v : {&cuda::mma_verdict(), &cuda::wgmma_verdict()}) {
    std::lock_guard<std::mutex> g(v->mu);
    if (v->answer.load() != 2) continue;
    out += out.empty() ? "" : "; ";
    out += (v == &cuda::mma_verdict() ? "TF32 products run in exact fp32 instead" : "the wgmma pipeline gives way to the register one");
    out += ", as the device's tensor cores do not read as the kernels assume (please report): " + v->why;
  }
  return out;
}

void cuda_recheck_tensor_cores() {
  for (auto* v : {&cuda::mma_verdict(), &cuda::wgmma_verdict()}) {
    std::lock_guard<std::mutex> g(v->mu);
    v->answer.store(0);
    v->why.clear();
  }
}

void cuda_set_tile(CudaTile t) {
  c3::check(t == CudaTile::Registers || t == CudaTile::Async || t == CudaTile::Wgmma, "cuda_set_tile", "unknown tile pipeline ",
            static_cast<int>(t));
  cuda::tile_slot().store(static_cast<int>(t));
}

CudaConv cuda_conv() { return cuda::conv_engine(); }
void cuda_set_conv(CudaConv c) {
  c3::check(c == CudaConv::Native || c == CudaConv::Cudnn || c == CudaConv::Auto, "cuda_set_conv",
            "unknown convolution engine ",
            static_cast<int>(c));
  if (c == CudaConv::Cudnn && !cuda::cudnn::api())
    throw Error("cuda_set_conv", "the cuDNN convolutions need cuDNN, which is " + cuda::cudnn::describe());
  cuda::conv_slot().store(static_cast<int>(c));
}
std::string cudnn_status() { return cuda::cudnn::describe(); }

void cuda_set_math(CudaMath m) {
  c3::check(m == CudaMath::TF32 || m == CudaMath::FP32, "cuda_set_math", "unknown math mode ",
            static_cast<int>(m));
  cuda::math_slot().store(static_cast<int>(m));
}

}  // namespace c3
