#include "handles.h"

#include <atomic>

namespace c3::napi {

static std::atomic<int64_t> g_reported{0};
static std::atomic<int64_t> g_live_handles{0};

int64_t live_handles() { return g_live_handles.load(); }

// V8 is told the bytes the device allocators hold (in use plus cached), not the bytes of live
// tensors: a training iteration's tensors come and go by gigabytes, and each rise of the external
// memory past V8's soft limit started a full collection (87 per CUB batch-64 iteration, 158 ms of
// pauses), while the allocators' holdings stay flat once their caches are warm. Tensors dropped
// without dispose still grow the holdings, so V8 still collects them.
void report_memory(Napi::Env env) {
  const c3::Backend* cuda = c3::cuda_backend();
  int64_t now = c3::cpu_backend().held_bytes() + (cuda ? cuda->held_bytes() : 0);
  int64_t delta = now - g_reported.exchange(now);
  if (delta != 0) Napi::MemoryManagement::AdjustExternalMemory(env, delta);
}

Napi::Function TensorHandle::Init(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {
                         InstanceAccessor<&TensorHandle::Shape>("shape"),
                         InstanceAccessor<&TensorHandle::DeviceName>("device"),
                         InstanceAccessor<&TensorHandle::Numel>("numel"),
                         InstanceAccessor<&TensorHandle::Disposed>("disposed"),
                         InstanceMethod<&TensorHandle::Dispose>("dispose"),
                     });
}

Napi::Object TensorHandle::Wrap(Napi::Env env, c3::Tensor t) {
  Napi::Object obj = env.GetInstanceData<AddonData>()->tensor_ctor.New({});
  TensorHandle::Unwrap(obj)->tensor = std::move(t);
  report_memory(env);
  return obj;
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  ++g_live_handles;
}

TensorHandle::~TensorHandle() {
  if (!disposed) --g_live_handles;
  // Finalizers may run outside a JS call; the next op's report_memory settles the count.
}

Napi::Value TensorHandle::Shape(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), tensor.shape.size());
  for (size_t i = 0; i < tensor.shape.size(); ++i) a.Set(i, Napi::Number::New(info.Env(), double(tensor.shape[i])));
  return a;
}

Napi::Value TensorHandle::DeviceName(const Napi::CallbackInfo& info) {
  if (!tensor.defined()) return Napi::String::New(info.Env(), "none");
  return Napi::String::New(info.Env(), c3::device_name(tensor.device()));
}

Napi::Value TensorHandle::Numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), tensor.defined() ? double(tensor.numel()) : 0.0);
}

Napi::Value TensorHandle::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed); }

Napi::Value TensorHandle::Dispose(const Napi::CallbackInfo& info) {
  if (!disposed) {
    disposed = true;
    --g_live_handles;
    tensor.storage.reset();
    report_memory(info.Env());
  }
  return info.Env().Undefined();
}

Napi::Function GeneratorHandle::Init(Napi::Env env) {
  return DefineClass(env, "Generator",
                     {
                         InstanceMethod<&GeneratorHandle::GetState>("getState"),
                         InstanceMethod<&GeneratorHandle::SetState>("setState"),
                     });
}

static uint64_t to_u64(const Napi::Value& v, const char* what) {
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), std::string("c3gan Generator: ") + what + " must fit in 64 bits");
    return x;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != static_cast<double>(static_cast<uint64_t>(d)) || d > 9007199254740991.0)
      throw Napi::RangeError::New(v.Env(), std::string("c3gan Generator: ") + what +
                                               " must be a non-negative safe integer or a BigInt");
    return static_cast<uint64_t>(d);
  }
  throw Napi::TypeError::New(v.Env(), std::string("c3gan Generator: ") + what + " must be a number or a BigInt");
}

GeneratorHandle::GeneratorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorHandle>(info) {
  gen = c3::Generator(info.Length() > 0 ? to_u64(info[0], "seed") : 0);
}

Napi::Value GeneratorHandle::GetState(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(uint32_t(0), Napi::BigInt::New(info.Env(), gen.key));
  a.Set(uint32_t(1), Napi::BigInt::New(info.Env(), gen.offset));
  return a;
}

Napi::Value GeneratorHandle::SetState(const Napi::CallbackInfo& info) {
  if (info.Length() < 2) throw Napi::TypeError::New(info.Env(), "c3gan Generator.setState(key, offset): two values needed");
  gen.key = to_u64(info[0], "key");
  gen.offset = to_u64(info[1], "offset");
  return info.Env().Undefined();
}

}  // namespace c3::napi
