// Argument reading for the binding: every bad argument becomes a TypeError/RangeError that names
// the op and the argument; native c3::Error becomes an Error with the op's message.
#pragma once
#include <napi.h>

#include <initializer_list>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "handles.h"

namespace c3::napi {

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op) : info_(info), op_(op) {}
  Napi::Env env() const { return info_.Env(); }
  const char* op() const { return op_; }

  [[noreturn]] void type_error(const std::string& msg) const {
    throw Napi::TypeError::New(env(), std::string("c3gan ") + op_ + ": " + msg);
  }
  [[noreturn]] void range_error(const std::string& msg) const {
    throw Napi::RangeError::New(env(), std::string("c3gan ") + op_ + ": " + msg);
  }

  Napi::Value at(size_t i, const char* name) const {
    if (i >= info_.Length()) type_error(std::string("missing argument '") + name + "'");
    return info_[i];
  }

  c3::Tensor& tensor(size_t i, const char* name) const {
    TensorHandle::Kind kind;
    c3::Tensor* t = TensorHandle::Get(env(), at(i, name), &kind);
    if (!t)
      type_error(std::string("argument '") + name +
                 (kind == TensorHandle::Kind::Disposed ? "' is a disposed tensor" : "' must be a tensor"));
    return *t;
  }

  // null/undefined -> nullptr
  const c3::Tensor* optional_tensor(size_t i, const char* name) const {
    if (i >= info_.Length() || info_[i].IsNull() || info_[i].IsUndefined()) return nullptr;
    return &tensor(i, name);
  }

  std::vector<c3::Tensor> tensors(size_t i, const char* name) const {
    Napi::Value v = at(i, name);
    if (!v.IsArray()) type_error(std::string("argument '") + name + "' must be an array of tensors");
    Napi::Array a = v.As<Napi::Array>();
    std::vector<c3::Tensor> out;
    for (uint32_t k = 0; k < a.Length(); ++k) {
      TensorHandle::Kind kind;
      c3::Tensor* t = TensorHandle::Get(env(), a.Get(k), &kind);
      if (!t)
        type_error(std::string("element ") + std::to_string(k) + " of '" + name +
                   (kind == TensorHandle::Kind::Disposed ? "' is disposed" : "' is not a tensor"));
      out.push_back(*t);
    }
    return out;
  }

  double number(size_t i, const char* name) const {
    Napi::Value v = at(i, name);
    if (!v.IsNumber()) type_error(std::string("argument '") + name + "' must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }

  float finite(size_t i, const char* name) const { return static_cast<float>(finite_double(i, name)); }
  // null/undefined -> none
  std::optional<float> optional_finite(size_t i, const char* name) const {
    if (i >= info_.Length() || info_[i].IsNull() || info_[i].IsUndefined()) return std::nullopt;
    return finite(i, name);
  }

  // for hyperparameters that PyTorch keeps as Python floats (Adam's): no rounding to float here
  double finite_double(size_t i, const char* name) const {
    double d = number(i, name);
    if (!std::isfinite(d)) range_error(std::string("argument '") + name + "' must be finite, got " + std::to_string(d));
    return d;
  }

  int64_t integer(size_t i, const char* name, int64_t lo, int64_t hi) const {
    double d = number(i, name);
    if (!(d == std::floor(d)) || d < double(lo) || d > double(hi))
      range_error(std::string("argument '") + name + "' must be an integer in [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "], got " + std::to_string(d));
    return static_cast<int64_t>(d);
  }

  bool boolean(size_t i, const char* name) const {
    Napi::Value v = at(i, name);
    if (!v.IsBoolean()) type_error(std::string("argument '") + name + "' must be a boolean");
    return v.As<Napi::Boolean>().Value();
  }

  c3::Shape shape(size_t i, const char* name) const {
    Napi::Value v = at(i, name);
    if (!v.IsArray()) type_error(std::string("argument '") + name + "' must be an array of sizes");
    Napi::Array a = v.As<Napi::Array>();
    if (a.Length() > static_cast<uint32_t>(c3::kMaxDims))
      range_error(std::string("'") + name + "' has rank " + std::to_string(a.Length()) + ", above " +
                  std::to_string(c3::kMaxDims));
    c3::Shape s;
    for (uint32_t k = 0; k < a.Length(); ++k) {
      Napi::Value e = a.Get(k);
      double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
      if (!(d == std::floor(d)) || d < -1 || d > 1e15)
        range_error(std::string("'") + name + "' must hold non-negative integers, got element " +
                    std::to_string(k) + " = " + (e.IsNumber() ? std::to_string(d) : std::string("not a number")));
      s.push_back(static_cast<int64_t>(d));
    }
    return s;
  }

  std::vector<int> ints(size_t i, const char* name) const {
    Napi::Value v = at(i, name);
    if (!v.IsArray()) type_error(std::string("argument '") + name + "' must be an array of integers");
    Napi::Array a = v.As<Napi::Array>();
    std::vector<int> out;
    for (uint32_t k = 0; k < a.Length(); ++k) {
      Napi::Value e = a.Get(k);
      double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
      if (!(d == std::floor(d)) || std::fabs(d) > 64) range_error(std::string("'") + name + "' holds a bad dim");
      out.push_back(static_cast<int>(d));
    }
    return out;
  }

  // one of the given strings
  std::string choice(size_t i, const char* name, std::initializer_list<const char*> allowed) const {
    Napi::Value v = at(i, name);
    const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    std::string list;
    for (const char* c : allowed) {
      if (s == c) return s;
      list += std::string(list.empty() ? "\"" : ", \"") + c + "\"";
    }
    type_error(std::string("argument '") + name + "' must be one of " + list);
  }

  c3::Device device(size_t i, const char* name) const {
    Napi::Value v = at(i, name);
    std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    if (s == "cpu") return c3::Device::CPU;
    if (s == "cuda") return c3::Device::CUDA;
    type_error(std::string("argument '") + name + "' must be \"cpu\" or \"cuda\"");
  }

  c3::Generator& generator(size_t i, const char* name) const {
    Napi::Value v = at(i, name);
    if (!v.IsObject() ||
        !v.As<Napi::Object>().InstanceOf(env().GetInstanceData<AddonData>()->generator_ctor.Value()))
      type_error(std::string("argument '") + name + "' must be a Generator");
    return GeneratorHandle::Unwrap(v.As<Napi::Object>())->gen;
  }

 private:
  const Napi::CallbackInfo& info_;
  const char* op_;
};

// Runs fn, turning native exceptions into JS errors (the c3::Error message names op and shapes).
template <typename Fn>
Napi::Value guarded(const Napi::CallbackInfo& info, Fn&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c3::OutOfMemory& e) {
    Napi::Error err = Napi::Error::New(info.Env(), std::string("c3gan ") + e.what());
    err.Set("code", Napi::String::New(info.Env(), "C3GAN_OUT_OF_MEMORY"));
    throw err;
  } catch (const c3::Error& e) {
    throw Napi::Error::New(info.Env(), std::string("c3gan ") + e.what());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "c3gan: out of host memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("c3gan: ") + e.what());
  }
}

}  // namespace c3::napi
