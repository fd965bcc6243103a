// Addon entry point: registers the handle classes and the op functions.
#include <napi.h>

#include "handles.h"

namespace c3::napi {
void register_ops(Napi::Env env, Napi::Object exports);
void register_bench(Napi::Env env, Napi::Object exports);
void register_linalg(Napi::Env env, Napi::Object exports);
void register_memory(Napi::Env env, Napi::Object exports);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new c3::napi::AddonData();
  Napi::Function tensor = c3::napi::TensorHandle::Init(env);
  Napi::Function gen = c3::napi::GeneratorHandle::Init(env);
  c3::napi::TensorHandle::Register(*data, tensor);
  data->generator_ctor = Napi::Persistent(gen);
  env.SetInstanceData(data);
  exports.Set("NativeTensor", tensor);
  exports.Set("Generator", gen);
  exports.Set("version", Napi::String::New(env, C3GAN_VERSION));
  c3::napi::register_ops(env, exports);
  c3::napi::register_bench(env, exports);
  c3::napi::register_linalg(env, exports);
  c3::napi::register_memory(env, exports);
  return exports;
}

NODE_API_MODULE(c3gan, Init)
