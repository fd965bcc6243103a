// Host-side linear algebra exported for initialisers.
#include <napi.h>

#include "../core/linalg.h"
#include "args.h"

namespace c3::napi {

namespace {

// orthonormalColumns(a: Float64Array, m, n): in place, see core/linalg.h
Napi::Value OrthonormalColumns(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "orthonormalColumns");
    Napi::Value v = a.at(0, "a");
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      a.type_error("argument 'a' must be a Float64Array");
    Napi::Float64Array arr = v.As<Napi::Float64Array>();
    int64_t m = a.integer(1, "m", 1, int64_t(1) << 31);
    int64_t n = a.integer(2, "n", 1, int64_t(1) << 31);
    if (static_cast<int64_t>(arr.ElementLength()) != m * n)
      a.range_error("'a' has " + std::to_string(arr.ElementLength()) + " elements, m x n needs " + std::to_string(m * n));
    c3::orthonormal_columns(arr.Data(), m, n);
    return info.Env().Undefined();
  });
}

}  // namespace

void register_linalg(Napi::Env env, Napi::Object exports) {
  exports.Set("orthonormalColumns", Napi::Function::New(env, OrthonormalColumns, "orthonormalColumns"));
}

}  // namespace c3::napi
