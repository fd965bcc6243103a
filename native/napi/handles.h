// JS handles over native objects: NativeTensor owns one reference to a c3::Tensor's storage and
// drops it on dispose() (or, as a safety net, when collected); Generator wraps the seeded RNG.
#pragma once
#include <napi.h>

#include "../core/rng.h"
#include "../core/tensor.h"

namespace c3::napi {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, c3::Tensor t);
  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

  c3::Tensor tensor;
  bool disposed = false;

 private:
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value DeviceName(const Napi::CallbackInfo& info);
  Napi::Value Numel(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
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
  Napi::FunctionReference generator_ctor;
};

// Tell V8 how much native memory tensors hold, so its GC heuristics see it.
void report_memory(Napi::Env env);

}  // namespace c3::napi
