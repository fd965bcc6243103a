// Host-side linear algebra exported for initialisers.
#include <napi.h>

#include "../core/linalg.h"
#include "args.h"

namespace c3::napi {

namespace {

// (a: Float64Array, m, n) with a.length == m * n, in place: rows = true orthonormalises the m
// rows of the row-major m x n matrix (m <= n), else its n columns (m >= n); see core/linalg.h
Napi::Value Orthonormal(const Napi::CallbackInfo& info, const char* name, bool rows) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, name);
    Napi::Value v = a.at(0, "a");
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      a.type_error("argument 'a' must be a Float64Array");
    Napi::Float64Array arr = v.As<Napi::Float64Array>();
    int64_t m = a.integer(1, "m", 1, int64_t(1) << 31);
    int64_t n = a.integer(2, "n", 1, int64_t(1) << 31);
    if (static_cast<int64_t>(arr.ElementLength()) != m * n)
      a.range_error("'a' has " + std::to_string(arr.ElementLength()) + " elements, m x n needs " + std::to_string(m * n));
    if (rows) c3::orthonormal_vectors(arr.Data(), m, n);
    else c3::orthonormal_columns(arr.Data(), m, n);
    return info.Env().Undefined();
  });
}

Napi::Value OrthonormalColumns(const Napi::CallbackInfo& info) {
  return Orthonormal(info, "orthonormalColumns", false);
}
Napi::Value OrthonormalRows(const Napi::CallbackInfo& info) { return Orthonormal(info, "orthonormalRows", true); }

}  // namespace

void register_linalg(Napi::Env env, Napi::Object exports) {
  exports.Set("orthonormalColumns", Napi::Function::New(env, OrthonormalColumns, "orthonormalColumns"));
  exports.Set("orthonormalRows", Napi::Function::New(env, OrthonormalRows, "orthonormalRows"));
}

}  // namespace c3::napi
