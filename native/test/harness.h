// A tiny test harness for the native op test program (no Node, no framework): C3_TEST registers a
// case; each case gets the backend under test. Buffers live on the host; helpers move them to
// the backend's memory, so the same case checks CPU kernels against float64 references and CUDA
// kernels against the same references.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/error.h"
#include "../core/rng.h"

namespace c3::test {

struct Case {
  const char* name;
  std::function<void(const Backend&)> fn;
};
std::vector<Case>& registry();

struct Registrar {
  Registrar(const char* name, std::function<void(const Backend&)> fn) { registry().push_back({name, std::move(fn)}); }
};

#define C3_CAT2(a, b) a##b
#define C3_CAT(a, b) C3_CAT2(a, b)
#define C3_TEST(name)                                                              \
  static void C3_CAT(c3test_, name)(const c3::Backend& be);                        \
  static c3::test::Registrar C3_CAT(c3reg_, name)(#name, C3_CAT(c3test_, name));   \
  static void C3_CAT(c3test_, name)(const c3::Backend& be)

// A failed expectation throws, which fails the current case and moves on to the next.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Device buffer holding n floats, filled from / read back to host vectors.
class Buf {
 public:
  Buf(const Backend& be, size_t n) : be_(be), n_(n), p_(static_cast<float*>(be.alloc(n ? n * 4 : 4))) {
    be.fill(p_, n, 0.0f);
  }
  Buf(const Backend& be, const std::vector<float>& host) : Buf(be, host.size()) { be.upload(p_, host.data(), n_); }
  ~Buf() { be_.free(p_); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  float* p() const { return p_; }
  std::vector<float> host() const {
    std::vector<float> h(n_);
    be_.synchronize();
    be_.download(h.data(), p_, n_);
    return h;
  }

 private:
  const Backend& be_;
  size_t n_;
  float* p_;
};

// Host int buffer moved to the device (for targets); CPU simply points at host memory.
class IntBuf {
 public:
  IntBuf(const Backend& be, const std::vector<int32_t>& host)
      : be_(be), p_(static_cast<int32_t*>(be.alloc(host.size() * 4 + 4))) {
    be.upload(reinterpret_cast<float*>(p_), reinterpret_cast<const float*>(host.data()), host.size());
  }
  ~IntBuf() { be_.free(p_); }
  const int32_t* p() const { return p_; }

 private:
  const Backend& be_;
  int32_t* p_;
};

// Deterministic test data: uniform in [lo, hi)
std::vector<float> random_vec(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// max |a-b| / (atol/rtol scale) check; reports the worst index
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol,
                  const std::string& what);
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rtol, double atol,
                  const std::string& what);
void expect_true(bool cond, const std::string& what);

// Tolerance of a result of matrix products (gemm, conv) summing `terms` products of this
// harness's data (uniform in [-1, 1)): rtol and atol as given on the CPU and in CUDA's exact-fp32
// mode; under TF32 (the CUDA default: operands keep 11 significant bits, so each product is off by
// up to 2^-10 of its size) rtol 2e-3 and atol at least 5e-4 per term (2^-10 of the sum of
// |products|, about terms / 4 for this data, doubled).
struct Tol {
  double rtol, atol;
};
Tol product_tol(const Backend& be, double rtol, double atol, double terms);
void expect_close(const std::vector<float>& got, const std::vector<double>& want, Tol tol, const std::string& what);
void expect_close(const std::vector<float>& got, const std::vector<float>& want, Tol tol, const std::string& what);

// Central finite difference of a scalar function f(x) at every element of x (float64 math)
std::vector<double> numeric_grad(std::vector<double> x, const std::function<double(const std::vector<double>&)>& f,
                                 double h = 1e-6);

}  // namespace c3::test
