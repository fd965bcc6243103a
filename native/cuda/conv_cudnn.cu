// conv2d through cuDNN's legacy convolution API (cudnn_api.h), for a side-by-side comparison
// with c3gan's tile kernels in one process and as the faster path where cuDNN wins.
//
// As PyTorch calls it with torch.backends.cudnn.benchmark off: NCHW float tensors, cross-
// correlation, the algorithm from cuDNN's heuristics (GetConvolution*Algorithm_v7), TF32 allowed
// (CUDNN_DEFAULT_MATH) in c3gan's tf32 mode and FMA only in fp32 mode. Unlike PyTorch's default,
// only deterministic algorithms are taken, so a run repeats bit for bit as it does on c3gan's own
// kernels. Each shape's descriptors and algorithm are made once and kept (a plan); workspaces
// come from the caching allocator in stream order, and the one cuDNN handle runs on c3gan's
// stream, so nothing here synchronises.
#include <cuda_runtime.h>

#include <array>
#include <map>
#include <mutex>
#include <string>

#include "conv_cudnn.cuh"
#include "cudnn_api.h"
#include "runtime.cuh"

namespace c3::cuda {

namespace {

using namespace cudnn;

enum Pass : int { kForward = 0, kBackwardData = 1, kBackwardFilter = 2 };
constexpr const char* kPassOp[] = {"cuda conv2d_forward (cudnn)", "cuda conv2d_backward_data (cudnn)",
                                   "cuda conv2d_backward_weight (cudnn)"};

std::string conv_text(const Conv2dParams& p) {
  auto d4 = [](int64_t a, int64_t b, int64_t c, int64_t e) {
    return std::to_string(a) + "x" + std::to_string(b) + "x" + std::to_string(c) + "x" + std::to_string(e);
  };
  return "x " + d4(p.N, p.C, p.H, p.W) + ", w " + d4(p.K, p.C, p.R, p.S) + ", y " + d4(p.N, p.K, p.OH, p.OW) +
         ", stride " + std::to_string(p.stride) + ", pad " + std::to_string(p.pad);
}

// Throws for a status other than success: the op, the cuDNN function, cuDNN's name for the
// status and the convolution's shapes; running out of memory is c3::OutOfMemory.
void ok(const Api& a, Status s, Pass pass, const char* fn, const Conv2dParams& p) {
  if (s == kSuccess) return;
  std::string msg = std::string(fn) + ": " + status_text(a, s) + " for " + conv_text(p);
  if (is_missing_sublibrary(a, s))
    msg += " (cuDNN's sub-libraries must be beside the library or on LD_LIBRARY_PATH)";
  if (is_out_of_memory(a, s)) throw OutOfMemory(kPassOp[pass], msg);
  throw Error(kPassOp[pass], msg);
}

const Api& loaded_api() {
  const Api* a = api();
  if (!a) throw Error("cuda conv2d (cudnn)", "cuDNN is " + describe());
  return *a;
}

// The process's one handle, on c3gan's stream (made at first use, kept like the stream); a
// failure names the conv that asked for it.
Handle handle(const Api& a, const Conv2dParams& p, Pass pass) {
  static std::mutex mu;
  static Handle h = nullptr;
  std::lock_guard<std::mutex> g(mu);
  if (h) return h;
  void* const on = static_cast<void*>(stream());  // first: it may throw, and nothing is made yet
  Handle made = nullptr;
  ok(a, a.Create(&made), pass, "cudnnCreate", p);
  const Status st = a.SetStream(made, on);
  if (st != kSuccess) a.Destroy(made);
  ok(a, st, pass, "cudnnSetStream", p);
  h = made;
  return h;
}

// One shape's descriptors and chosen algorithm for one pass in one math mode.
struct Plan {
  TensorDesc x = nullptr, y = nullptr, bias = nullptr;
  FilterDesc w = nullptr;
  ConvDesc conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
};

// Destroys a plan's descriptors unless released: a plan that fails halfway leaves nothing behind.
struct PlanGuard {
  const Api& a;
  Plan& pl;
  bool armed = true;
  ~PlanGuard() {
    if (!armed) return;
    for (TensorDesc t : {pl.x, pl.y, pl.bias})
      if (t) a.DestroyTensorDescriptor(t);
    if (pl.w) a.DestroyFilterDescriptor(pl.w);
    if (pl.conv) a.DestroyConvolutionDescriptor(pl.conv);
  }
};

// Algorithms that ask for more workspace than this are passed over (PyTorch tries to allocate
// and falls back; a fixed bound keeps the choice independent of what happens to be free).
constexpr size_t kMaxWorkspace = size_t(1) << 30;

int as_int(int64_t v) { return static_cast<int>(v); }

Plan make_plan(const Api& a, Handle h, const Conv2dParams& p, Pass pass, CudaMath math) {
  Plan pl;
  PlanGuard guard{a, pl};
  const char* op = kPassOp[pass];
  need_int32(p.N * p.C * p.H * p.W, op, "the input");
  need_int32(p.N * p.K * p.OH * p.OW, op, "the output");
  need_int32(p.K * p.C * p.R * p.S, op, "the weight");
  ok(a, a.CreateTensorDescriptor(&pl.x), pass, "cudnnCreateTensorDescriptor", p);
  ok(a, a.SetTensor4dDescriptor(pl.x, kNchw, kDataFloat, as_int(p.N), as_int(p.C), as_int(p.H), as_int(p.W)), pass,
     "cudnnSetTensor4dDescriptor (x)", p);
  ok(a, a.CreateTensorDescriptor(&pl.y), pass, "cudnnCreateTensorDescriptor", p);
  ok(a, a.SetTensor4dDescriptor(pl.y, kNchw, kDataFloat, as_int(p.N), as_int(p.K), as_int(p.OH), as_int(p.OW)), pass,
     "cudnnSetTensor4dDescriptor (y)", p);
  ok(a, a.CreateTensorDescriptor(&pl.bias), pass, "cudnnCreateTensorDescriptor", p);
  ok(a, a.SetTensor4dDescriptor(pl.bias, kNchw, kDataFloat, 1, as_int(p.K), 1, 1), pass,
     "cudnnSetTensor4dDescriptor (bias)", p);
  ok(a, a.CreateFilterDescriptor(&pl.w), pass, "cudnnCreateFilterDescriptor", p);
  ok(a, a.SetFilter4dDescriptor(pl.w, kDataFloat, kNchw, as_int(p.K), as_int(p.C), as_int(p.R), as_int(p.S)), pass,
     "cudnnSetFilter4dDescriptor", p);
  ok(a, a.CreateConvolutionDescriptor(&pl.conv), pass, "cudnnCreateConvolutionDescriptor", p);
  ok(a, a.SetConvolution2dDescriptor(pl.conv, as_int(p.pad), as_int(p.pad), as_int(p.stride), as_int(p.stride), 1, 1,
                                     kCrossCorrelation, kDataFloat),
     pass, "cudnnSetConvolution2dDescriptor", p);
  ok(a, a.SetConvolutionMathType(pl.conv, math == CudaMath::FP32 ? kFmaMath : kDefaultMath), pass,
     "cudnnSetConvolutionMathType", p);

  AlgoPerf perf[16];
  int count = 0;
  const char* query = "";
  if (pass == kForward) {
    query = "cudnnGetConvolutionForwardAlgorithm_v7";
    ok(a, a.GetConvolutionForwardAlgorithm_v7(h, pl.x, pl.w, pl.conv, pl.y, 16, &count, perf), pass, query, p);
  } else if (pass == kBackwardData) {
    query = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
    ok(a, a.GetConvolutionBackwardDataAlgorithm_v7(h, pl.w, pl.y, pl.conv, pl.x, 16, &count, perf), pass, query, p);
  } else {
    query = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
    ok(a, a.GetConvolutionBackwardFilterAlgorithm_v7(h, pl.x, pl.y, pl.conv, pl.w, 16, &count, perf), pass, query, p);
  }
  // the heuristics' order is fastest first: the first one that runs this shape deterministically
  // within the workspace bound
  const AlgoPerf* pick = nullptr;
  for (int i = 0; i < count && i < 16 && !pick; ++i)
    if (perf[i].status == kSuccess && perf[i].determinism == kDeterministic && perf[i].memory <= kMaxWorkspace)
      pick = &perf[i];
  if (!pick) {
    // what each offer was, so a library that cannot run anything here (a missing engine
    // sub-library, an unsupported GPU) says so
    std::string offers;
    for (int i = 0; i < count && i < 16; ++i)
      offers += std::string(i ? "; " : "") + "algo " + std::to_string(perf[i].algo) + " " +
                (perf[i].status == kSuccess ? std::string(perf[i].determinism == kDeterministic ? "deterministic" : "nondeterministic") +
                                                  ", " + std::to_string(perf[i].memory) + " bytes"
                                            : status_text(a, perf[i].status));
    throw Error(kPassOp[pass], std::string(query) + " offered no deterministic algorithm within 1 GiB of workspace for " +
                                   conv_text(p) + " (" + (count ? offers : "no offers") + ")");
  }
  pl.algo = pick->algo;
  // the algorithm's own math type, as PyTorch sets it (in fp32 mode cuDNN offers only FMA ones)
  ok(a, a.SetConvolutionMathType(pl.conv, pick->math_type), pass, "cudnnSetConvolutionMathType", p);
  if (pass == kForward)
    ok(a, a.GetConvolutionForwardWorkspaceSize(h, pl.x, pl.w, pl.conv, pl.y, pl.algo, &pl.workspace), pass,
       "cudnnGetConvolutionForwardWorkspaceSize", p);
  else if (pass == kBackwardData)
    ok(a, a.GetConvolutionBackwardDataWorkspaceSize(h, pl.w, pl.y, pl.conv, pl.x, pl.algo, &pl.workspace), pass,
       "cudnnGetConvolutionBackwardDataWorkspaceSize", p);
  else
    ok(a, a.GetConvolutionBackwardFilterWorkspaceSize(h, pl.x, pl.y, pl.conv, pl.w, pl.algo, &pl.workspace), pass,
       "cudnnGetConvolutionBackwardFilterWorkspaceSize", p);
  guard.armed = false;
  return pl;
}

// The plan for (shape, pass, math mode), made on first use and kept for the process (a model
// has a few dozen conv shapes; descriptors are small host objects).
const Plan& plan(const Api& a, Handle h, const Conv2dParams& p, Pass pass) {
  const CudaMath math = cuda::chosen_math();  // cuDNN's tensor cores read as cuDNN reads them
  using Key = std::array<int64_t, 12>;
  const Key key{p.N, p.C, p.H, p.W, p.K, p.R, p.S, p.OH, p.OW, p.stride, p.pad, pass * 2 + static_cast<int>(math)};
  static std::mutex mu;
  static std::map<Key, Plan>* plans = new std::map<Key, Plan>();
  std::lock_guard<std::mutex> g(mu);
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, make_plan(a, h, p, pass, math)).first;
  return it->second;
}

// What one pass needs: the library, the handle, the shape's plan and its workspace (freed in
// stream order when the pass's call returns).
struct PassRun {
  const Api& a;
  const Handle h;
  const Plan& pl;
  const Scratch ws;
  PassRun(const Conv2dParams& p, Pass pass)
      : a(loaded_api()), h(handle(a, p, pass)), pl(plan(a, h, p, pass)), ws(pl.workspace) {}
};

// alpha and beta, read from host memory by cuDNN
const float kOne = 1.0f, kZero = 0.0f;

}  // namespace

void cudnn_conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  const PassRun r(p, kForward);
  ok(r.a, r.a.ConvolutionForward(r.h, &kOne, r.pl.x, x, r.pl.w, w, r.pl.conv, r.pl.algo, r.ws.as<void>(), r.pl.workspace,
                                 &kZero, r.pl.y, y),
     kForward, "cudnnConvolutionForward", p);
  if (bias) ok(r.a, r.a.AddTensor(r.h, &kOne, r.pl.bias, bias, &kOne, r.pl.y, y), kForward, "cudnnAddTensor (bias)", p);
}

void cudnn_conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const PassRun r(p, kBackwardData);
  ok(r.a, r.a.ConvolutionBackwardData(r.h, &kOne, r.pl.w, w, r.pl.y, dy, r.pl.conv, r.pl.algo, r.ws.as<void>(),
                                      r.pl.workspace, &kZero, r.pl.x, dx),
     kBackwardData, "cudnnConvolutionBackwardData", p);
}

void cudnn_conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  const PassRun r(p, kBackwardFilter);
  ok(r.a, r.a.ConvolutionBackwardFilter(r.h, &kOne, r.pl.x, x, r.pl.y, dy, r.pl.conv, r.pl.algo, r.ws.as<void>(),
                                        r.pl.workspace, &kZero, r.pl.w, dw),
     kBackwardFilter, "cudnnConvolutionBackwardFilter", p);
}

}  // namespace c3::cuda
