// JS handles over native objects: NativeTensor owns one reference to a c3::Tensor's storage and
// drops it on dispose() (or, as a safety net, when collected); Generator wraps the seeded RNG.
#pragma once
#include <napi.h>

#include "../core/rng.h"
#include "../core/tensor.h"

namespace c3::napi {

// NativeTensor objects, written on plain N-API rather than Napi::ObjectWrap: an op call makes one
// per result, so their life cycle is the binding's largest host cost. dispose() unwraps the
// object and frees its box at once, so only tensors dropped without dispose wait for V8's
// finalizer queue (which a GPU iteration's ~1,700 results used to go through one by one).
struct TensorBox {
  c3::Tensor tensor;
};

class TensorHandle {
 public:
  static Napi::Function Init(Napi::Env env);
  // keeps the constructor and its prototype in the addon's data
  static void Register(struct AddonData& data, Napi::Function ctor);
  static Napi::Value Wrap(Napi::Env env, c3::Tensor t);
  enum class Kind { Live, Disposed, NotATensor };
  // The tensor inside v, or nullptr with kind saying why not.
  static c3::Tensor* Get(napi_env env, napi_value v, Kind* kind);
};

class GeneratorHandle : public Napi::ObjectWrap<GeneratorHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit GeneratorHandle(const Napi::CallbackInfo& info);
  c3::Generator gen;

 private:
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
};

// Per-addon-instance data: the constructors, so handles can be created and recognised.
struct AddonData {
  Napi::FunctionReference tensor_ctor;
  Napi::ObjectReference tensor_proto;  // NativeTensor.prototype: how a handle is recognised
  Napi::FunctionReference generator_ctor;
};

// Tell V8 how much native memory tensors hold, so its GC heuristics see it.
void report_memory(Napi::Env env);

}  // namespace c3::napi
