// The op functions exported to JS: read arguments, call c3::ops, wrap results as handles.
#include <napi.h>

#include <cstring>

#include "../core/ops.h"
#include "../core/threadpool.h"
#include "args.h"
#ifdef C3GAN_HAVE_CUDA
#include "../cuda/cuda.h"
#endif

namespace c3::napi {

int64_t live_handles();

namespace {

using c3::Tensor;
namespace ops = c3::ops;

Napi::Value wrap(Napi::Env env, Tensor t) { return TensorHandle::Wrap(env, std::move(t)); }

Napi::Value wrap_list(Napi::Env env, std::initializer_list<Tensor> ts) {
  Napi::Array a = Napi::Array::New(env, ts.size());
  uint32_t i = 0;
  for (const Tensor& t : ts) a.Set(i++, t.defined() ? wrap(env, t) : env.Null());
  return a;
}

c3::UnaryOp unary_op(const Args& a, size_t i) {
  Napi::Value v = a.at(i, "op");
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  static const std::pair<const char*, c3::UnaryOp> names[] = {
      {"relu", c3::UnaryOp::Relu}, {"leaky_relu", c3::UnaryOp::LeakyRelu}, {"tanh", c3::UnaryOp::Tanh},
      {"sigmoid", c3::UnaryOp::Sigmoid}, {"exp", c3::UnaryOp::Exp}, {"log", c3::UnaryOp::Log},
      {"neg", c3::UnaryOp::Neg}, {"square", c3::UnaryOp::Square}, {"sqrt", c3::UnaryOp::Sqrt},
      {"abs", c3::UnaryOp::Abs}};
  for (auto& n : names)
    if (s == n.first) return n.second;
  a.type_error("unknown unary op '" + s + "'");
}

c3::BinaryOp binary_op(const Args& a, size_t i) {
  Napi::Value v = a.at(i, "op");
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "add") return c3::BinaryOp::Add;
  if (s == "sub") return c3::BinaryOp::Sub;
  if (s == "mul") return c3::BinaryOp::Mul;
  if (s == "div") return c3::BinaryOp::Div;
  a.type_error("unknown binary op '" + s + "'");
}

std::vector<int32_t> int_targets(const Args& a, size_t i) {
  Napi::Value v = a.at(i, "targets");
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    a.type_error("argument 'targets' must be an Int32Array");
  Napi::Int32Array t = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(t.Data(), t.Data() + t.ElementLength());
}

constexpr int64_t kMaxSize = int64_t(1) << 30;

#define C3_OP(fname, opname) \
  Napi::Value fname(const Napi::CallbackInfo& info) { \
    return guarded(info, [&]() -> Napi::Value { \
      Args a(info, opname); \
      Napi::Env env = info.Env(); \
      (void)env;
#define C3_END \
    }); \
  }

// ---- creation and copies ----
C3_OP(Empty, "empty")
  return wrap(env, ops::empty(a.device(1, "device"), a.shape(0, "shape")));
C3_END

C3_OP(Full, "full")
  return wrap(env, ops::full(a.device(2, "device"), a.shape(0, "shape"), a.finite(1, "value")));
C3_END

C3_OP(FromFloat32, "fromFloat32")
  Napi::Value v = a.at(0, "data");
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    a.type_error("argument 'data' must be a Float32Array");
  Napi::Float32Array d = v.As<Napi::Float32Array>();
  return wrap(env, ops::from_host(a.device(2, "device"), a.shape(1, "shape"), d.Data(), d.ElementLength()));
C3_END

C3_OP(ToFloat32, "toFloat32")
  Tensor& t = a.tensor(0, "tensor");
  Napi::Float32Array out = Napi::Float32Array::New(env, t.numel());
  ops::to_host(t, out.Data(), out.ElementLength());
  return out;
C3_END

C3_OP(ToDevice, "toDevice")
  return wrap(env, ops::to_device(a.tensor(0, "tensor"), a.device(1, "device")));
C3_END

C3_OP(Clone, "clone")
  return wrap(env, ops::clone(a.tensor(0, "tensor")));
C3_END

// share(x): a second handle on x's storage (what a tape node keeps; disposing either handle
// leaves the other as it was)
C3_OP(Share, "share")
  return wrap(env, a.tensor(0, "x"));
C3_END

C3_OP(Reshape, "reshape")
  return wrap(env, ops::reshape(a.tensor(0, "tensor"), a.shape(1, "shape")));
C3_END

C3_OP(Fill, "fill")
  ops::fill_(a.tensor(0, "tensor"), a.finite(1, "value"));
  return env.Undefined();
C3_END

C3_OP(Copy, "copy")
  ops::copy_(a.tensor(0, "dst"), a.tensor(1, "src"));
  return env.Undefined();
C3_END

C3_OP(Axpy, "axpy")
  ops::axpy_(a.tensor(0, "y"), a.finite(1, "alpha"), a.tensor(2, "x"));
  return env.Undefined();
C3_END

// addInto(dsts, srcs): dsts[i] += srcs[i] for each pair, in order, in one backend call
C3_OP(AddInto, "addInto")
  std::vector<Tensor> d = a.tensors(0, "dsts"), s = a.tensors(1, "srcs");
  if (d.size() != s.size())
    a.range_error("dsts and srcs must pair up, got " + std::to_string(d.size()) + " and " + std::to_string(s.size()));
  std::vector<Tensor*> dp;
  std::vector<const Tensor*> sp;
  for (size_t i = 0; i < d.size(); ++i) {
    dp.push_back(&d[i]);
    sp.push_back(&s[i]);
  }
  ops::add_into_(dp, sp);
  return env.Undefined();
C3_END

C3_OP(Randn, "randn")
  return wrap(env, ops::randn(a.device(1, "device"), a.shape(0, "shape"), a.generator(2, "generator"),
                              a.finite(3, "mean"), a.finite(4, "std")));
C3_END

C3_OP(Rand, "rand")
  return wrap(env, ops::rand(a.device(1, "device"), a.shape(0, "shape"), a.generator(2, "generator"),
                             a.finite(3, "lo"), a.finite(4, "hi")));
C3_END

// ---- elementwise ----
C3_OP(Affine, "affine")
  return wrap(env, ops::affine(a.tensor(0, "x"), a.finite(1, "scale"), a.finite(2, "shift")));
C3_END

C3_OP(AffineInPlace, "affineInPlace")
  ops::affine_(a.tensor(0, "x"), a.finite(1, "scale"), a.finite(2, "shift"));
  return env.Undefined();
C3_END

C3_OP(Unary, "unary")
  return wrap(env, ops::unary(unary_op(a, 0), a.tensor(1, "x"), a.finite(2, "alpha")));
C3_END

C3_OP(UnaryBackward, "unaryBackward")
  return wrap(env, ops::unary_backward(unary_op(a, 0), a.tensor(1, "dy"), a.tensor(2, "x"), a.tensor(3, "y"),
                                       a.finite(4, "alpha")));
C3_END

C3_OP(Binary, "binary")
  return wrap(env, ops::binary(binary_op(a, 0), a.tensor(1, "a"), a.tensor(2, "b")));
C3_END

C3_OP(Expand, "expand")
  return wrap(env, ops::expand(a.tensor(0, "x"), a.shape(1, "shape")));
C3_END

C3_OP(SumTo, "sumTo")
  return wrap(env, ops::sum_to(a.tensor(0, "x"), a.shape(1, "shape")));
C3_END

C3_OP(Sum, "sum")
  return wrap(env, ops::sum(a.tensor(0, "x"), a.ints(1, "dims"), a.boolean(2, "keepdim")));
C3_END

// ---- layers ----
// conv2d(x, w, bias, stride, padding, leakySlope?): with a slope, LeakyReLU(conv) in one pass
C3_OP(Conv2d, "conv2d")
  return wrap(env, ops::conv2d(a.tensor(0, "input"), a.tensor(1, "weight"), a.optional_tensor(2, "bias"),
                               a.integer(3, "stride", 1, 1024), a.integer(4, "padding", 0, 1024), nullptr,
                               a.optional_finite(5, "leakySlope")));
C3_END

// conv2d that also gives its output's per-channel moments (K, 2): [y, moments]
C3_OP(Conv2dMoments, "conv2dMoments")
  Tensor moments;
  Tensor y = ops::conv2d(a.tensor(0, "input"), a.tensor(1, "weight"), a.optional_tensor(2, "bias"),
                         a.integer(3, "stride", 1, 1024), a.integer(4, "padding", 0, 1024), &moments);
  return wrap_list(env, {y, moments});
C3_END

C3_OP(Conv2dBackwardData, "conv2dBackwardData")
  return wrap(env, ops::conv2d_backward_data(a.tensor(0, "dy"), a.tensor(1, "weight"), a.shape(2, "xShape"),
                                             a.integer(3, "stride", 1, 1024), a.integer(4, "padding", 0, 1024)));
C3_END

// conv2dBackwardDataAdd(into, dy, weight, stride, padding): into += the input gradient
C3_OP(Conv2dBackwardDataAdd, "conv2dBackwardDataAdd")
  ops::conv2d_backward_data_add_(a.tensor(0, "into"), a.tensor(1, "dy"), a.tensor(2, "weight"),
                                 a.integer(3, "stride", 1, 1024), a.integer(4, "padding", 0, 1024));
  return env.Undefined();
C3_END

C3_OP(Conv2dBackwardWeight, "conv2dBackwardWeight")
  return wrap(env, ops::conv2d_backward_weight(a.tensor(0, "dy"), a.tensor(1, "input"), a.shape(2, "wShape"),
                                               a.integer(3, "stride", 1, 1024), a.integer(4, "padding", 0, 1024)));
C3_END

C3_OP(Conv2dUp, "conv2dUp")
  return wrap(env, ops::conv2d_up(a.tensor(0, "input"), a.tensor(1, "weight"), a.optional_tensor(2, "bias")));
C3_END

C3_OP(Conv2dUpMoments, "conv2dUpMoments")
  Tensor moments;
  Tensor y = ops::conv2d_up(a.tensor(0, "input"), a.tensor(1, "weight"), a.optional_tensor(2, "bias"), &moments);
  return wrap_list(env, {y, moments});
C3_END

C3_OP(Conv2dUpBackwardData, "conv2dUpBackwardData")
  return wrap(env, ops::conv2d_up_backward_data(a.tensor(0, "dy"), a.tensor(1, "weight"), a.shape(2, "xShape")));
C3_END

C3_OP(Conv2dUpBackwardWeight, "conv2dUpBackwardWeight")
  return wrap(env, ops::conv2d_up_backward_weight(a.tensor(0, "dy"), a.tensor(1, "input"), a.shape(2, "wShape")));
C3_END

C3_OP(Linear, "linear")
  return wrap(env, ops::linear(a.tensor(0, "input"), a.tensor(1, "weight"), a.optional_tensor(2, "bias")));
C3_END

C3_OP(LinearBackwardData, "linearBackwardData")
  return wrap(env, ops::linear_backward_data(a.tensor(0, "dy"), a.tensor(1, "weight")));
C3_END

C3_OP(LinearBackwardWeight, "linearBackwardWeight")
  return wrap(env, ops::linear_backward_weight(a.tensor(0, "dy"), a.tensor(1, "input")));
C3_END

C3_OP(Matmul, "matmul")
  return wrap(env, ops::matmul(a.tensor(0, "a"), a.tensor(1, "b"), a.boolean(2, "transA"), a.boolean(3, "transB")));
C3_END

C3_OP(BatchNorm, "batchNorm")
  ops::BatchNormOut o = ops::batchnorm_forward(a.tensor(0, "input"), a.tensor(1, "weight"), a.tensor(2, "bias"),
                                               a.tensor(3, "runningMean"), a.tensor(4, "runningVar"),
                                               a.boolean(5, "training"), a.finite(6, "momentum"), a.finite(7, "eps"),
                                               a.optional_tensor(8, "moments"), a.optional_tensor(9, "residual"),
                                               a.optional_finite(10, "leakySlope"));
  return wrap_list(env, {o.y, o.save_mean, o.save_invstd});
C3_END

C3_OP(BatchNormBackward, "batchNormBackward")
  ops::BatchNormGrads g = ops::batchnorm_backward(a.tensor(0, "dy"), a.tensor(1, "input"), a.tensor(2, "weight"),
                                                  a.tensor(3, "saveMean"), a.tensor(4, "saveInvstd"),
                                                  a.boolean(5, "training"));
  return wrap_list(env, {g.dx, g.dgamma, g.dbeta});
C3_END

C3_OP(BatchNormLeakyBackward, "batchNormLeakyBackward")
  ops::BatchNormGrads g = ops::batchnorm_leaky_backward(a.tensor(0, "dy"), a.tensor(1, "output"),
                                                        a.finite(2, "slope"), a.tensor(3, "input"),
                                                        a.tensor(4, "weight"), a.tensor(5, "saveMean"),
                                                        a.tensor(6, "saveInvstd"), a.boolean(7, "training"));
  return wrap_list(env, {g.dx, g.dgamma, g.dbeta});
C3_END

C3_OP(BatchNormGlu, "batchNormGlu")
  ops::BatchNormOut o = ops::batchnorm_glu_forward(a.tensor(0, "input"), a.tensor(1, "weight"), a.tensor(2, "bias"),
                                                   a.tensor(3, "runningMean"), a.tensor(4, "runningVar"),
                                                   a.boolean(5, "training"), a.finite(6, "momentum"), a.finite(7, "eps"),
                                                   a.optional_tensor(8, "moments"));
  return wrap_list(env, {o.y, o.save_mean, o.save_invstd});
C3_END

C3_OP(BatchNormGluBackward, "batchNormGluBackward")
  ops::BatchNormGrads g = ops::batchnorm_glu_backward(a.tensor(0, "dy"), a.tensor(1, "input"), a.tensor(2, "weight"),
                                                      a.tensor(3, "bias"), a.tensor(4, "saveMean"),
                                                      a.tensor(5, "saveInvstd"), a.boolean(6, "training"));
  return wrap_list(env, {g.dx, g.dgamma, g.dbeta});
C3_END

C3_OP(Glu, "glu")
  return wrap(env, ops::glu(a.tensor(0, "input"), static_cast<int>(a.integer(1, "dim", -6, 5))));
C3_END

C3_OP(GluBackward, "gluBackward")
  return wrap(env, ops::glu_backward(a.tensor(0, "dy"), a.tensor(1, "input"), static_cast<int>(a.integer(2, "dim", -6, 5))));
C3_END

C3_OP(Upsample2x, "upsample2x")
  return wrap(env, ops::upsample2x(a.tensor(0, "input")));
C3_END

C3_OP(Upsample2xBackward, "upsample2xBackward")
  return wrap(env, ops::upsample2x_backward(a.tensor(0, "dy")));
C3_END

C3_OP(Concat, "concat")
  return wrap(env, ops::concat(a.tensors(0, "tensors"), static_cast<int>(a.integer(1, "dim", -6, 5))));
C3_END

C3_OP(Slice, "slice")
  return wrap(env, ops::slice(a.tensor(0, "input"), static_cast<int>(a.integer(1, "dim", -6, 5)),
                              a.integer(2, "start", 0, kMaxSize * 1024), a.integer(3, "end", 0, kMaxSize * 1024)));
C3_END

C3_OP(SliceBackward, "sliceBackward")
  return wrap(env, ops::slice_backward(a.tensor(0, "dy"), a.shape(1, "xShape"),
                                       static_cast<int>(a.integer(2, "dim", -6, 5)),
                                       a.integer(3, "start", 0, kMaxSize * 1024)));
C3_END

C3_OP(L2Normalize, "normalize")
  ops::L2NormOut o = ops::l2normalize(a.tensor(0, "input"), a.finite(1, "eps"));
  return wrap_list(env, {o.y, o.norms});
C3_END

C3_OP(L2NormalizeBackward, "normalizeBackward")
  return wrap(env, ops::l2normalize_backward(a.tensor(0, "dy"), a.tensor(1, "input"), a.tensor(2, "norms"),
                                             a.finite(3, "eps")));
C3_END

C3_OP(Softmax, "softmax")
  return wrap(env, ops::softmax(a.tensor(0, "input"), a.boolean(1, "log")));
C3_END

C3_OP(SoftmaxBackward, "softmaxBackward")
  return wrap(env, ops::softmax_backward(a.tensor(0, "dy"), a.tensor(1, "y"), a.boolean(2, "log")));
C3_END

C3_OP(CrossEntropy, "crossEntropy")
  ops::CrossEntropyOut o = ops::cross_entropy(a.tensor(0, "logits"), int_targets(a, 1));
  return wrap_list(env, {o.loss, o.probs});
C3_END

C3_OP(CrossEntropyBackward, "crossEntropyBackward")
  return wrap(env, ops::cross_entropy_backward(a.tensor(0, "dloss"), a.tensor(1, "probs"), int_targets(a, 2)));
C3_END

C3_OP(NtXent, "ntXent")
  ops::NtXentOut o = ops::ntxent(a.tensor(0, "features"), a.finite(1, "temperature"));
  return wrap_list(env, {o.loss, o.z, o.norms, o.p});
C3_END

C3_OP(NtXentBackward, "ntXentBackward")
  ops::NtXentOut s{Tensor(), a.tensor(2, "z"), a.tensor(3, "norms"), a.tensor(4, "p")};
  return wrap(env, ops::ntxent_backward(a.tensor(0, "dloss"), a.tensor(1, "features"), s, a.finite(5, "temperature")));
C3_END

C3_OP(AffineGrid, "affineGrid")
  return wrap(env, ops::affine_grid(a.tensor(0, "theta"), a.integer(1, "H", 1, 65536), a.integer(2, "W", 1, 65536)));
C3_END

C3_OP(AffineGridBackward, "affineGridBackward")
  return wrap(env, ops::affine_grid_backward(a.tensor(0, "dgrid")));
C3_END

C3_OP(GridSample, "gridSample")
  return wrap(env, ops::grid_sample(a.tensor(0, "input"), a.tensor(1, "grid")));
C3_END

C3_OP(GridSampleBackward, "gridSampleBackward")
  ops::GridSampleGrads g = ops::grid_sample_backward(a.tensor(0, "dy"), a.tensor(1, "input"), a.tensor(2, "grid"),
                                                     a.boolean(3, "needDx"), a.boolean(4, "needDgrid"));
  return wrap_list(env, {g.dx, g.dgrid});
C3_END

// forward (dy null): [y]; backward: [dx, dw, dcode], null where not asked for
C3_OP(Conv2dConstChannels, "conv2dConstChannels")
  const c3::Tensor* dy = a.optional_tensor(3, "dy");
  if (!dy) return wrap_list(env, {ops::conv2d_const_channels(a.tensor(0, "input"), a.tensor(1, "weight"), a.tensor(2, "code"))});
  ops::ConstChannelsGrads g = ops::conv2d_const_channels_backward(
      *dy, a.tensor(0, "input"), a.tensor(1, "weight"), a.tensor(2, "code"), a.boolean(4, "needDx"),
      a.boolean(5, "needDw"), a.boolean(6, "needDcode"));
  return wrap_list(env, {g.dx, g.dw, g.dcode});
C3_END

// adamSteps(params, grads, ms, vs, steps, lr, beta1, beta2, eps, weightDecay): one call (one
// launch on CUDA) for a whole parameter list; steps[k] is parameter k's own count
C3_OP(AdamSteps, "adamSteps")
  std::vector<Tensor> p = a.tensors(0, "params"), g = a.tensors(1, "grads"), m = a.tensors(2, "ms"), v = a.tensors(3, "vs");
  Napi::Value sv = a.at(4, "steps");
  if (!sv.IsArray()) a.type_error("argument 'steps' must be an array of integers");
  Napi::Array steps = sv.As<Napi::Array>();
  if (g.size() != p.size() || m.size() != p.size() || v.size() != p.size() || steps.Length() != p.size())
    a.range_error("params, grads, ms, vs and steps must have one entry per parameter, got " + std::to_string(p.size()) + ", " +
                  std::to_string(g.size()) + ", " + std::to_string(m.size()) + ", " + std::to_string(v.size()) + " and " +
                  std::to_string(steps.Length()));
  std::vector<ops::AdamParam> ps(p.size());
  for (uint32_t k = 0; k < p.size(); ++k) {
    Napi::Value e = steps.Get(k);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    if (!(d >= 1 && d <= 9007199254740991.0 && d == std::floor(d)))
      a.range_error("steps[" + std::to_string(k) + "] must be an integer >= 1, got " + (e.IsNumber() ? std::to_string(d) : "not a number"));
    ps[k] = {&p[k], &g[k], &m[k], &v[k], static_cast<int64_t>(d)};
  }
  ops::adam_steps_(ps, a.finite_double(5, "lr"), a.finite_double(6, "beta1"), a.finite_double(7, "beta2"),
                   a.finite_double(8, "eps"), a.finite_double(9, "weightDecay"));
  return env.Undefined();
C3_END

// ---- runtime ----
C3_OP(CudaStatus, "cudaStatus")
  return Napi::String::New(env, c3::cuda_status());
C3_END

C3_OP(CudaAvailable, "cudaAvailable")
  return Napi::Boolean::New(env, c3::cuda_available());
C3_END

// selectCudaDevice(index): the GPU the CUDA backend starts on (before its first use: cudaStatus
// and cudaAvailable count); cudaDevice(): the one chosen or in use; cudaDevices(): every device
// the driver sees, one line each
C3_OP(SelectCudaDevice, "selectCudaDevice")
  c3::cuda_select_device(static_cast<int>(a.integer(0, "index", 0, 1023)));
  return env.Undefined();
C3_END

C3_OP(CudaDeviceIndex, "cudaDevice")
  return Napi::Number::New(env, c3::cuda_device_index());
C3_END

C3_OP(CudaDeviceList, "cudaDevices")
  const std::vector<std::string> list = c3::cuda_devices();
  Napi::Array out = Napi::Array::New(env, list.size());
  for (uint32_t i = 0; i < list.size(); ++i) out.Set(i, Napi::String::New(env, list[i]));
  return out;
C3_END

// cudaMath(): "tf32" (the default) or "fp32", the mode of the CUDA matrix products (gemm and conv);
// C3GAN_CUDA_MATH sets it at start, setCudaMath(mode) later
C3_OP(CudaMathMode, "cudaMath")
#ifdef C3GAN_HAVE_CUDA
  if (c3::cuda_available()) return Napi::String::New(env, c3::cuda_math() == c3::CudaMath::FP32 ? "fp32" : "tf32");
#endif
  throw c3::Error("cudaMath", std::string("CUDA is ") + c3::cuda_status());
C3_END

// cudaTile(): how the tile GEMM stages and multiplies ("registers", the default; "async": cp.async
// stages; "wgmma": Hopper's warpgroup MMA for TF32, sm_90a builds on compute capability 9.0);
// C3GAN_CUDA_TILE sets it at start, setCudaTile(name) later
C3_OP(CudaTileMode, "cudaTile")
#ifdef C3GAN_HAVE_CUDA
  static constexpr const char* kTileNames[] = {"registers", "async", "wgmma"};
  if (c3::cuda_available()) return Napi::String::New(env, kTileNames[static_cast<int>(c3::cuda_tile())]);
#endif
  throw c3::Error("cudaTile", std::string("CUDA is ") + c3::cuda_status());
C3_END

C3_OP(SetCudaTileMode, "setCudaTile")
  const std::string t = a.choice(0, "pipeline", {"registers", "async", "wgmma"});
#ifdef C3GAN_HAVE_CUDA
  if (c3::cuda_available()) {
    c3::cuda_set_tile(t == "wgmma" ? c3::CudaTile::Wgmma : t == "async" ? c3::CudaTile::Async : c3::CudaTile::Registers);
    return env.Undefined();
  }
#endif
  throw c3::Error("setCudaTile", std::string("CUDA is ") + c3::cuda_status());
C3_END

// cudaConv(): who runs the plain convolutions on CUDA ("native", c3gan's tile kernels, the
// default; "cudnn": cuDNN, loaded at run time; "auto": per pass and shape the faster, timed once);
// C3GAN_CUDA_CONV sets it at start, setCudaConv later; cudaConvChoices(): auto's choices so far
#ifdef C3GAN_HAVE_CUDA
static constexpr const char* kConvNames[] = {"native", "cudnn", "auto"};
#endif

C3_OP(CudaConvEngine, "cudaConv")
#ifdef C3GAN_HAVE_CUDA
  if (c3::cuda_available()) return Napi::String::New(env, kConvNames[static_cast<int>(c3::cuda_conv())]);
#endif
  throw c3::Error("cudaConv", std::string("CUDA is ") + c3::cuda_status());
C3_END

C3_OP(SetCudaConvEngine, "setCudaConv")
  const std::string c = a.choice(0, "engine", {"native", "cudnn", "auto"});
#ifdef C3GAN_HAVE_CUDA
  if (c3::cuda_available()) {
    c3::cuda_set_conv(c == "cudnn" ? c3::CudaConv::Cudnn : c == "auto" ? c3::CudaConv::Auto : c3::CudaConv::Native);
    return env.Undefined();
  }
#endif
  throw c3::Error("setCudaConv", std::string("CUDA is ") + c3::cuda_status());
C3_END

C3_OP(CudaConvChoices, "cudaConvChoices")
  Napi::Array out = Napi::Array::New(env);
#ifdef C3GAN_HAVE_CUDA
  const std::vector<c3::CudaConvChoice> list = c3::cuda_conv_choices();
  for (uint32_t i = 0; i < list.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("pass", list[i].pass);
    o.Set("conv", list[i].conv);
    o.Set("engine", list[i].cudnn ? "cudnn" : "native");
    o.Set("nativeMs", list[i].native_ms);
    o.Set("cudnnMs", list[i].cudnn_ms < 0 ? env.Null() : Napi::Number::New(env, list[i].cudnn_ms));
    o.Set("note", list[i].note);
    out.Set(i, o);
  }
#endif
  return out;
C3_END

// cudnnStatus(): "9.6.0 (/path/libcudnn.so.9)" or "unavailable (<why>)"; looks for the library
// on the first call (C3GAN_CUDNN, else the loader's search path)
C3_OP(CudnnStatus, "cudnnStatus")
#ifdef C3GAN_HAVE_CUDA
  return Napi::String::New(env, c3::cudnn_status());
#else
  return Napi::String::New(env, "unavailable (this build of c3gan has no CUDA backend)");
#endif
C3_END

// cudaLayoutProbe(): { mma, wgmmaRan, wgmma }: the tensor-core layouts the kernels assume, asked of
// the device (native/cuda/layout_probe.cu); "" where the device agrees, else what it did instead
C3_OP(CudaLayoutProbe, "cudaLayoutProbe")
#ifdef C3GAN_HAVE_CUDA
  if (c3::cuda_available()) {
    const c3::CudaLayoutProbe p = c3::cuda_probe_tensor_core_layouts();
    Napi::Object out = Napi::Object::New(env);
    out.Set("mma", p.mma);
    out.Set("wgmmaRan", p.wgmma_ran);
    out.Set("wgmma", p.wgmma);
    return out;
  }
#endif
  throw c3::Error("cudaLayoutProbe", std::string("CUDA is ") + c3::cuda_status());
C3_END

// cudaTensorCoreFallback(): "" while the products run as chosen; else which gave way (exact fp32
// for mma.sync, the register pipeline for wgmma) because the device's tensor cores disagreed with
// the kernels' layouts, asked before the first product on each instruction
C3_OP(CudaTensorCoreFallback, "cudaTensorCoreFallback")
#ifdef C3GAN_HAVE_CUDA
  if (c3::cuda_available()) return Napi::String::New(env, c3::cuda_tensor_core_fallback());
#endif
  return Napi::String::New(env, "");
C3_END

// cudaLaunches(): kernels launched since the process started (0 without a CUDA backend)
C3_OP(CudaLaunches, "cudaLaunches")
#ifdef C3GAN_HAVE_CUDA
  return Napi::Number::New(env, double(c3::cuda_kernel_launches()));
#else
  return Napi::Number::New(env, 0.0);
#endif
C3_END

// cudaBuild(): the GPU code this addon carries ("sm_80 sm_86 ... compute_90 PTX"), or why none
C3_OP(CudaBuild, "cudaBuild")
  return Napi::String::New(env, c3::cuda_build());
C3_END

C3_OP(SetCudaMathMode, "setCudaMath")
  const std::string m = a.choice(0, "mode", {"tf32", "fp32"});
#ifdef C3GAN_HAVE_CUDA
  if (c3::cuda_available()) {
    c3::cuda_set_math(m == "fp32" ? c3::CudaMath::FP32 : c3::CudaMath::TF32);
    return env.Undefined();
  }
#endif
  throw c3::Error("setCudaMath", std::string("CUDA is ") + c3::cuda_status());
C3_END

C3_OP(NumThreads, "numThreads")
  return Napi::Number::New(env, c3::num_threads());
C3_END

C3_OP(SetNumThreads, "setNumThreads")
  c3::set_num_threads(static_cast<int>(a.integer(0, "n", 1, 1024)));
  return env.Undefined();
C3_END

C3_OP(LiveBytes, "liveBytes")
  report_memory(env);
  return Napi::Number::New(env, double(c3::live_bytes(a.device(0, "device"))));
C3_END

C3_OP(LiveTensors, "liveTensors")
  return Napi::Number::New(env, double(live_handles()));
C3_END

}  // namespace

void register_ops(Napi::Env env, Napi::Object exports) {
  struct Entry {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  };
  static const Entry entries[] = {
      {"empty", Empty}, {"full", Full}, {"fromFloat32", FromFloat32}, {"toFloat32", ToFloat32},
      {"toDevice", ToDevice}, {"clone", Clone}, {"share", Share}, {"reshape", Reshape}, {"fill", Fill}, {"copy", Copy},
      {"axpy", Axpy}, {"addInto", AddInto}, {"randn", Randn}, {"rand", Rand}, {"affine", Affine}, {"affineInPlace", AffineInPlace}, {"unary", Unary},
      {"unaryBackward", UnaryBackward}, {"binary", Binary}, {"expand", Expand}, {"sumTo", SumTo}, {"sum", Sum},
      {"conv2d", Conv2d}, {"conv2dBackwardData", Conv2dBackwardData}, {"conv2dBackwardDataAdd", Conv2dBackwardDataAdd}, {"conv2dBackwardWeight", Conv2dBackwardWeight}, {"conv2dUp", Conv2dUp},
      {"conv2dMoments", Conv2dMoments}, {"conv2dUpMoments", Conv2dUpMoments},
      {"conv2dUpBackwardData", Conv2dUpBackwardData}, {"conv2dUpBackwardWeight", Conv2dUpBackwardWeight},
      {"linear", Linear}, {"linearBackwardData", LinearBackwardData}, {"linearBackwardWeight", LinearBackwardWeight},
      {"matmul", Matmul}, {"batchNorm", BatchNorm}, {"batchNormBackward", BatchNormBackward},
      {"batchNormLeakyBackward", BatchNormLeakyBackward},
      {"batchNormGlu", BatchNormGlu}, {"batchNormGluBackward", BatchNormGluBackward}, {"glu", Glu},
      {"gluBackward", GluBackward}, {"upsample2x", Upsample2x}, {"upsample2xBackward", Upsample2xBackward},
      {"concat", Concat}, {"slice", Slice}, {"sliceBackward", SliceBackward}, {"l2normalize", L2Normalize},
      {"l2normalizeBackward", L2NormalizeBackward}, {"softmax", Softmax}, {"softmaxBackward", SoftmaxBackward},
      {"crossEntropy", CrossEntropy}, {"crossEntropyBackward", CrossEntropyBackward}, {"ntXent", NtXent},
      {"ntXentBackward", NtXentBackward}, {"affineGrid", AffineGrid}, {"affineGridBackward", AffineGridBackward},
      {"gridSample", GridSample}, {"gridSampleBackward", GridSampleBackward}, {"adamSteps", AdamSteps},
      {"conv2dConstChannels", Conv2dConstChannels},
      {"cudaStatus", CudaStatus}, {"cudaAvailable", CudaAvailable},
      {"selectCudaDevice", SelectCudaDevice}, {"cudaDevice", CudaDeviceIndex}, {"cudaDevices", CudaDeviceList}, {"cudaMath", CudaMathMode},
      {"setCudaMath", SetCudaMathMode}, {"cudaTile", CudaTileMode}, {"setCudaTile", SetCudaTileMode},
      {"cudaConv", CudaConvEngine}, {"setCudaConv", SetCudaConvEngine}, {"cudnnStatus", CudnnStatus},
      {"cudaLayoutProbe", CudaLayoutProbe}, {"cudaTensorCoreFallback", CudaTensorCoreFallback},
      {"cudaConvChoices", CudaConvChoices},
      {"cudaBuild", CudaBuild}, {"cudaLaunches", CudaLaunches}, {"numThreads", NumThreads},
      {"setNumThreads", SetNumThreads}, {"liveBytes", LiveBytes}, {"liveTensors", LiveTensors},
  };
  for (const Entry& e : entries) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
}

}  // namespace c3::napi
