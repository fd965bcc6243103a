// A stand-in for libcudnn with the emulated CUDA runtime (built only with C3GAN_CUDA=EMULATE, as
// libc3gan_cudnn_mock.so): the functions of cudnn_api.h, on the host, where the emulator's device
// memory is. It lets the tests drive c3gan's cuDNN path (C3GAN_CUDNN=<this library>
// C3GAN_CUDA_CONV=cudnn) without a GPU: the loader, the descriptors, the algorithm choice, the
// workspaces and the alpha / beta contract, each checked as cuDNN documents it. The convolutions
// are plain loops summed in double. A GPU run checks the real library the same way
// (benchmarks/device-check.sh).
//
// Strictness stands in for cuDNN's own checks: a descriptor that was not set, sizes that do not
// make the convolution, a workspace smaller than asked, an algorithm other than the one offered
// as usable, a handle without a stream: each returns CUDNN_STATUS_BAD_PARAM. The heuristics
// offer a nondeterministic algorithm first and an unsupported one second, which a caller must
// pass over.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../cudnn_api.h"

// the opaque types of cudnn_api.h, defined here
namespace c3::cuda::cudnn {
struct HandleOpaque {
  void* stream = nullptr;
  bool stream_set = false;
};
struct TensorOpaque {
  bool set = false;
  int n = 0, c = 0, h = 0, w = 0;
};
struct FilterOpaque {
  bool set = false;
  int k = 0, c = 0, r = 0, s = 0;
};
struct ConvOpaque {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1;
  int math = kDefaultMath;
};
}  // namespace c3::cuda::cudnn

using namespace c3::cuda::cudnn;

namespace {

constexpr Status kBadParam = 2000, kNotSupported = 3000;
// the one algorithm each pass runs, and the workspace it asks for
constexpr int kUsableAlgo = 1;
constexpr size_t kWorkspace = 256;

bool valid_math(int m) { return m >= 0 && m <= 3; }

// cudnnCreate* and cudnnDestroy*: a new default object, and its deletion
template <class T>
Status make(T** out) {
  if (!out) return kBadParam;
  *out = new (std::nothrow) T();
  return *out ? kSuccess : 4003;
}
template <class T>
Status drop(T* d) {
  delete d;
  return kSuccess;
}

// the convolution the three descriptors make (cuDNN's output size rule), else false
bool consistent(const TensorOpaque* x, const FilterOpaque* w, const ConvOpaque* cv, const TensorOpaque* y) {
  if (!x || !w || !cv || !y || !x->set || !w->set || !cv->set || !y->set) return false;
  if (x->c != w->c || y->n != x->n || y->c != w->k) return false;
  const int oh = (x->h + 2 * cv->pad_h - w->r) / cv->u + 1, ow = (x->w + 2 * cv->pad_w - w->s) / cv->v + 1;
  return y->h == oh && y->w == ow;
}

// C3GAN_CUDNN_MOCK_OFFER=unusable: the usable algorithm is left out (a caller's error path)
Status offer(const ConvOpaque* cv, int requested, int* returned, AlgoPerf* perf) {
  if (!returned || !perf || requested < 1) return kBadParam;
  const char* mode = std::getenv("C3GAN_CUDNN_MOCK_OFFER");
  const bool unusable = mode && !std::strcmp(mode, "unusable");
  const AlgoPerf list[3] = {
      {0, kSuccess, 0.1f, 0, 0 /* nondeterministic */, cv->math, {0, 0, 0}},
      {2, kNotSupported, -1.0f, 0, kDeterministic, cv->math, {0, 0, 0}},
      {kUsableAlgo, kSuccess, 0.2f, kWorkspace, kDeterministic, cv->math == kFmaMath ? kFmaMath : 1, {0, 0, 0}},
  };
  const int n = requested < (unusable ? 2 : 3) ? requested : (unusable ? 2 : 3);
  for (int i = 0; i < n; ++i) perf[i] = list[i];
  *returned = n;
  return kSuccess;
}

// the workspace a caller passes: at least what was asked, and memory (written through)
Status use_workspace(void* ws, size_t bytes) {
  if (bytes < kWorkspace || !ws) return kBadParam;
  std::memset(ws, 0x5a, kWorkspace);
  return kSuccess;
}

// out = alpha * value + beta * out, out not read when beta is 0 (as cuDNN)
inline void blend(float* out, double value, float alpha, float beta) {
  *out = static_cast<float>(beta == 0.0f ? alpha * value : alpha * value + beta * static_cast<double>(*out));
}

// x[n, c, ih, iw] for output position (oh, ow) and tap (r, s), or 0 in the padding
inline bool tap(const TensorOpaque* x, const ConvOpaque* cv, int oh, int ow, int r, int s, int& ih, int& iw) {
  ih = oh * cv->u - cv->pad_h + r;
  iw = ow * cv->v - cv->pad_w + s;
  return ih >= 0 && ih < x->h && iw >= 0 && iw < x->w;
}

}  // namespace

extern "C" {

size_t cudnnGetVersion() { return 90000; }

const char* cudnnGetErrorString(Status s) {
  switch (s) {
    case kSuccess: return "CUDNN_STATUS_SUCCESS";
    case kBadParam: return "CUDNN_STATUS_BAD_PARAM";
    case kNotSupported: return "CUDNN_STATUS_NOT_SUPPORTED";
    default: return "CUDNN_STATUS_UNKNOWN";
  }
}

Status cudnnCreate(Handle* h) { return make(h); }

Status cudnnDestroy(Handle h) { return drop(h); }

Status cudnnSetStream(Handle h, void* stream) {
  if (!h) return kBadParam;
  h->stream = stream;
  h->stream_set = true;
  return kSuccess;
}

Status cudnnCreateTensorDescriptor(TensorDesc* d) { return make(d); }

Status cudnnSetTensor4dDescriptor(TensorDesc d, int format, int type, int n, int c, int h, int w) {
  if (!d || format != kNchw || type != kDataFloat || n <= 0 || c <= 0 || h <= 0 || w <= 0) return kBadParam;
  *d = TensorOpaque{true, n, c, h, w};
  return kSuccess;
}

Status cudnnDestroyTensorDescriptor(TensorDesc d) { return drop(d); }

Status cudnnCreateFilterDescriptor(FilterDesc* d) { return make(d); }

Status cudnnSetFilter4dDescriptor(FilterDesc d, int type, int format, int k, int c, int r, int s) {
  if (!d || format != kNchw || type != kDataFloat || k <= 0 || c <= 0 || r <= 0 || s <= 0) return kBadParam;
  *d = FilterOpaque{true, k, c, r, s};
  return kSuccess;
}

Status cudnnDestroyFilterDescriptor(FilterDesc d) { return drop(d); }

Status cudnnCreateConvolutionDescriptor(ConvDesc* d) { return make(d); }

Status cudnnDestroyConvolutionDescriptor(ConvDesc d) { return drop(d); }

Status cudnnSetConvolution2dDescriptor(ConvDesc d, int pad_h, int pad_w, int u, int v, int dil_h, int dil_w, int mode,
                                       int compute_type) {
  if (!d || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dil_h != 1 || dil_w != 1 || mode != kCrossCorrelation ||
      compute_type != kDataFloat)
    return kBadParam;
  d->set = true;
  d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v;
  return kSuccess;
}

Status cudnnSetConvolutionMathType(ConvDesc d, int math) {
  if (!d || !valid_math(math)) return kBadParam;
  d->math = math;
  return kSuccess;
}

Status cudnnGetConvolutionForwardAlgorithm_v7(Handle h, TensorDesc x, FilterDesc w, ConvDesc cv, TensorDesc y,
                                              int requested, int* returned, AlgoPerf* perf) {
  if (!h || !consistent(x, w, cv, y)) return kBadParam;
  return offer(cv, requested, returned, perf);
}

Status cudnnGetConvolutionBackwardDataAlgorithm_v7(Handle h, FilterDesc w, TensorDesc dy, ConvDesc cv, TensorDesc dx,
                                                   int requested, int* returned, AlgoPerf* perf) {
  if (!h || !consistent(dx, w, cv, dy)) return kBadParam;
  return offer(cv, requested, returned, perf);
}

Status cudnnGetConvolutionBackwardFilterAlgorithm_v7(Handle h, TensorDesc x, TensorDesc dy, ConvDesc cv, FilterDesc dw,
                                                     int requested, int* returned, AlgoPerf* perf) {
  if (!h || !consistent(x, dw, cv, dy)) return kBadParam;
  return offer(cv, requested, returned, perf);
}

Status cudnnGetConvolutionForwardWorkspaceSize(Handle h, TensorDesc x, FilterDesc w, ConvDesc cv, TensorDesc y,
                                               int algo, size_t* bytes) {
  if (!h || !bytes || algo != kUsableAlgo || !consistent(x, w, cv, y)) return kBadParam;
  *bytes = kWorkspace;
  return kSuccess;
}

Status cudnnGetConvolutionBackwardDataWorkspaceSize(Handle h, FilterDesc w, TensorDesc dy, ConvDesc cv, TensorDesc dx,
                                                    int algo, size_t* bytes) {
  if (!h || !bytes || algo != kUsableAlgo || !consistent(dx, w, cv, dy)) return kBadParam;
  *bytes = kWorkspace;
  return kSuccess;
}

Status cudnnGetConvolutionBackwardFilterWorkspaceSize(Handle h, TensorDesc x, TensorDesc dy, ConvDesc cv, FilterDesc dw,
                                                      int algo, size_t* bytes) {
  if (!h || !bytes || algo != kUsableAlgo || !consistent(x, dw, cv, dy)) return kBadParam;
  *bytes = kWorkspace;
  return kSuccess;
}

Status cudnnConvolutionForward(Handle h, const void* alpha, TensorDesc xd, const void* xv, FilterDesc wd,
                               const void* wv, ConvDesc cv, int algo, void* ws, size_t ws_bytes, const void* beta,
                               TensorDesc yd, void* yv) {
  if (!h || !h->stream_set || !alpha || !beta || !xv || !wv || !yv || algo != kUsableAlgo ||
      !consistent(xd, wd, cv, yd) || use_workspace(ws, ws_bytes) != kSuccess)
    return kBadParam;
  const float* x = static_cast<const float*>(xv);
  const float* w = static_cast<const float*>(wv);
  float* y = static_cast<float*>(yv);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  for (int n = 0; n < yd->n; ++n)
    for (int k = 0; k < yd->c; ++k)
      for (int oh = 0; oh < yd->h; ++oh)
        for (int ow = 0; ow < yd->w; ++ow) {
          double acc = 0.0;
          for (int c = 0; c < xd->c; ++c)
            for (int r = 0; r < wd->r; ++r)
              for (int s = 0; s < wd->s; ++s) {
                int ih, iw;
                if (!tap(xd, cv, oh, ow, r, s, ih, iw)) continue;
                acc += static_cast<double>(x[((int64_t(n) * xd->c + c) * xd->h + ih) * xd->w + iw]) *
                       w[((int64_t(k) * wd->c + c) * wd->r + r) * wd->s + s];
              }
          blend(&y[((int64_t(n) * yd->c + k) * yd->h + oh) * yd->w + ow], acc, a, b);
        }
  return kSuccess;
}

Status cudnnConvolutionBackwardData(Handle h, const void* alpha, FilterDesc wd, const void* wv, TensorDesc dyd,
                                    const void* dyv, ConvDesc cv, int algo, void* ws, size_t ws_bytes,
                                    const void* beta, TensorDesc dxd, void* dxv) {
  if (!h || !h->stream_set || !alpha || !beta || !wv || !dyv || !dxv || algo != kUsableAlgo ||
      !consistent(dxd, wd, cv, dyd) || use_workspace(ws, ws_bytes) != kSuccess)
    return kBadParam;
  const float* w = static_cast<const float*>(wv);
  const float* dy = static_cast<const float*>(dyv);
  float* dx = static_cast<float*>(dxv);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const int64_t nx = int64_t(dxd->n) * dxd->c * dxd->h * dxd->w;
  double* acc = new (std::nothrow) double[nx]();
  if (!acc) return 4003;
  for (int n = 0; n < dyd->n; ++n)
    for (int k = 0; k < dyd->c; ++k)
      for (int oh = 0; oh < dyd->h; ++oh)
        for (int ow = 0; ow < dyd->w; ++ow) {
          const double g = dy[((int64_t(n) * dyd->c + k) * dyd->h + oh) * dyd->w + ow];
          for (int c = 0; c < dxd->c; ++c)
            for (int r = 0; r < wd->r; ++r)
              for (int s = 0; s < wd->s; ++s) {
                int ih, iw;
                if (!tap(dxd, cv, oh, ow, r, s, ih, iw)) continue;
                acc[((int64_t(n) * dxd->c + c) * dxd->h + ih) * dxd->w + iw] +=
                    g * w[((int64_t(k) * wd->c + c) * wd->r + r) * wd->s + s];
              }
        }
  for (int64_t i = 0; i < nx; ++i) blend(&dx[i], acc[i], a, b);
  delete[] acc;
  return kSuccess;
}

Status cudnnConvolutionBackwardFilter(Handle h, const void* alpha, TensorDesc xd, const void* xv, TensorDesc dyd,
                                      const void* dyv, ConvDesc cv, int algo, void* ws, size_t ws_bytes,
                                      const void* beta, FilterDesc dwd, void* dwv) {
  if (!h || !h->stream_set || !alpha || !beta || !xv || !dyv || !dwv || algo != kUsableAlgo ||
      !consistent(xd, dwd, cv, dyd) || use_workspace(ws, ws_bytes) != kSuccess)
    return kBadParam;
  const float* x = static_cast<const float*>(xv);
  const float* dy = static_cast<const float*>(dyv);
  float* dw = static_cast<float*>(dwv);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  for (int k = 0; k < dwd->k; ++k)
    for (int c = 0; c < dwd->c; ++c)
      for (int r = 0; r < dwd->r; ++r)
        for (int s = 0; s < dwd->s; ++s) {
          double acc = 0.0;
          for (int n = 0; n < dyd->n; ++n)
            for (int oh = 0; oh < dyd->h; ++oh)
              for (int ow = 0; ow < dyd->w; ++ow) {
                int ih, iw;
                if (!tap(xd, cv, oh, ow, r, s, ih, iw)) continue;
                acc += static_cast<double>(dy[((int64_t(n) * dyd->c + k) * dyd->h + oh) * dyd->w + ow]) *
                       x[((int64_t(n) * xd->c + c) * xd->h + ih) * xd->w + iw];
              }
          blend(&dw[((int64_t(k) * dwd->c + c) * dwd->r + r) * dwd->s + s], acc, a, b);
        }
  return kSuccess;
}

Status cudnnAddTensor(Handle h, const void* alpha, TensorDesc ad, const void* av, const void* beta, TensorDesc cd,
                      void* cv) {
  if (!h || !h->stream_set || !alpha || !beta || !av || !cv || !ad || !cd || !ad->set || !cd->set) return kBadParam;
  // A broadcast along its dims of size 1; the others must equal C's
  if ((ad->n != 1 && ad->n != cd->n) || (ad->c != 1 && ad->c != cd->c) || (ad->h != 1 && ad->h != cd->h) ||
      (ad->w != 1 && ad->w != cd->w))
    return kBadParam;
  const float* A = static_cast<const float*>(av);
  float* C = static_cast<float*>(cv);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  for (int n = 0; n < cd->n; ++n)
    for (int c = 0; c < cd->c; ++c)
      for (int y = 0; y < cd->h; ++y)
        for (int x = 0; x < cd->w; ++x) {
          const int64_t ai = ((int64_t(ad->n == 1 ? 0 : n) * ad->c + (ad->c == 1 ? 0 : c)) * ad->h +
                              (ad->h == 1 ? 0 : y)) * ad->w + (ad->w == 1 ? 0 : x);
          blend(&C[((int64_t(n) * cd->c + c) * cd->h + y) * cd->w + x], A[ai], a, b);
        }
  return kSuccess;
}

}  // extern "C"
