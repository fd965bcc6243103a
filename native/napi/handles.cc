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

namespace {

AddonData& addon(napi_env env) { return *Napi::Env(env).GetInstanceData<AddonData>(); }

// Raw callbacks may not throw C++ exceptions through N-API: these return after throwing in JS.
napi_value throw_type_error(napi_env env, const char* msg) {
  napi_throw_type_error(env, nullptr, msg);
  return nullptr;
}

napi_value this_of(napi_env env, napi_callback_info info) {
  napi_value self = nullptr;
  napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr);
  return self;
}

TensorBox* box_of(napi_env env, napi_value self) {
  void* data = nullptr;
  return napi_unwrap(env, self, &data) == napi_ok ? static_cast<TensorBox*>(data) : nullptr;
}

void finalize_box(napi_env, void* data, void*) {
  delete static_cast<TensorBox*>(data);
  --g_live_handles;
  // runs outside a JS call (V8's finalizer queue); the next op's report_memory settles the count
}

// `new NativeTensor()` from JS makes an empty handle, which every op refuses as disposed.
napi_value construct(napi_env env, napi_callback_info info) { return this_of(env, info); }

napi_value get_shape(napi_env env, napi_callback_info info) {
  TensorBox* b = box_of(env, this_of(env, info));
  if (!b) return throw_type_error(env, "c3gan NativeTensor.shape: the tensor was disposed");
  const c3::Shape& shape = b->tensor.shape;
  napi_value a = nullptr;
  if (napi_create_array_with_length(env, shape.size(), &a) != napi_ok) return nullptr;
  for (size_t i = 0; i < shape.size(); ++i) {
    napi_value d = nullptr;
    if (napi_create_double(env, double(shape[i]), &d) != napi_ok || napi_set_element(env, a, uint32_t(i), d) != napi_ok)
      return nullptr;
  }
  return a;
}

napi_value get_device(napi_env env, napi_callback_info info) {
  TensorBox* b = box_of(env, this_of(env, info));
  if (!b || !b->tensor.defined()) {
    napi_value none = nullptr;
    napi_create_string_utf8(env, "none", NAPI_AUTO_LENGTH, &none);
    return none;
  }
  napi_value name = nullptr;
  napi_create_string_latin1(env, c3::device_name(b->tensor.device()), NAPI_AUTO_LENGTH, &name);
  return name;
}

napi_value get_numel(napi_env env, napi_callback_info info) {
  TensorBox* b = box_of(env, this_of(env, info));
  if (!b) return throw_type_error(env, "c3gan NativeTensor.numel: the tensor was disposed");
  napi_value n = nullptr;
  napi_create_double(env, b->tensor.defined() ? double(b->tensor.numel()) : 0.0, &n);
  return n;
}

napi_value get_disposed(napi_env env, napi_callback_info info) {
  TensorBox* b = box_of(env, this_of(env, info));
  napi_value v = nullptr;
  napi_get_boolean(env, b == nullptr || !b->tensor.defined(), &v);
  return v;
}

napi_value dispose(napi_env env, napi_callback_info info) {
  void* data = nullptr;
  if (napi_remove_wrap(env, this_of(env, info), &data) == napi_ok) {
    delete static_cast<TensorBox*>(data);
    --g_live_handles;
    report_memory(Napi::Env(env));
  }
  napi_value u = nullptr;
  napi_get_undefined(env, &u);
  return u;
}

}  // namespace

Napi::Function TensorHandle::Init(Napi::Env env) {
  const napi_property_descriptor props[] = {
      {"shape", nullptr, nullptr, get_shape, nullptr, nullptr, napi_default, nullptr},
      {"device", nullptr, nullptr, get_device, nullptr, nullptr, napi_default, nullptr},
      {"numel", nullptr, nullptr, get_numel, nullptr, nullptr, napi_default, nullptr},
      {"disposed", nullptr, nullptr, get_disposed, nullptr, nullptr, napi_default, nullptr},
      {"dispose", nullptr, dispose, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value ctor = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_define_class(env, "NativeTensor", NAPI_AUTO_LENGTH, construct, nullptr,
                                              sizeof props / sizeof props[0], props, &ctor),
                       Napi::Function());
  return Napi::Function(env, ctor);
}

void TensorHandle::Register(AddonData& data, Napi::Function ctor) {
  data.tensor_ctor = Napi::Persistent(ctor);
  data.tensor_proto = Napi::Persistent(ctor.Get("prototype").As<Napi::Object>());
}

Napi::Value TensorHandle::Wrap(Napi::Env env, c3::Tensor t) {
  napi_value obj = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_new_instance(env, addon(env).tensor_ctor.Value(), 0, nullptr, &obj), Napi::Value());
  auto* box = new TensorBox{std::move(t)};
  const napi_status st = napi_wrap(env, obj, box, finalize_box, nullptr, nullptr);
  if (st != napi_ok) {
    delete box;
    NAPI_THROW_IF_FAILED(env, st, Napi::Value());
  }
  ++g_live_handles;
  report_memory(env);
  return Napi::Value(env, obj);
}

c3::Tensor* TensorHandle::Get(napi_env env, napi_value v, Kind* kind) {
  // recognised by its prototype (a map read and a compare; instanceof looked up Symbol.hasInstance
  // on every argument), then unwrapped: a recognised handle with nothing wrapped is disposed
  napi_valuetype type = napi_undefined;
  napi_value proto = nullptr;
  bool ours = false;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_object || napi_get_prototype(env, v, &proto) != napi_ok ||
      napi_strict_equals(env, proto, addon(env).tensor_proto.Value(), &ours) != napi_ok || !ours) {
    *kind = Kind::NotATensor;
    return nullptr;
  }
  TensorBox* b = box_of(env, v);
  if (!b || !b->tensor.defined()) {
    *kind = Kind::Disposed;
    return nullptr;
  }
  *kind = Kind::Live;
  return &b->tensor;
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
