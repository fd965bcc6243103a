#include "harness.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "../core/threadpool.h"
#include "../cpu/gemm_kernels.h"
#ifdef C3GAN_HAVE_CUDA
#include "../cuda/cuda.h"
#endif

namespace c3::test {

std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}

std::vector<float> random_vec(size_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * (Philox::uniform_at(seed, i) - 0.5f / 16777216.0f);
  return v;
}

template <typename T>
static void close_impl(const std::vector<float>& got, const std::vector<T>& want, double rtol, double atol,
                       const std::string& what) {
  if (got.size() != want.size()) {
    std::ostringstream o;
    o << what << ": size " << got.size() << " != expected " << want.size();
    throw Failure(o.str());
  }
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double g = got[i], w = static_cast<double>(want[i]);
    double excess = std::fabs(g - w) / (atol + rtol * std::fabs(w));
    if (!std::isfinite(g) && std::isfinite(w)) excess = INFINITY;
    if (excess > worst) worst = excess, wi = i;
  }
  if (worst > 1.0) {
    std::ostringstream o;
    o << what << ": element " << wi << " is " << got[wi] << ", expected " << static_cast<double>(want[wi])
      << " (rtol " << rtol << ", atol " << atol << ")";
    throw Failure(o.str());
  }
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol,
                  const std::string& what) {
  close_impl(got, want, rtol, atol, what);
}
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rtol, double atol,
                  const std::string& what) {
  close_impl(got, want, rtol, atol, what);
}

Tol product_tol(const Backend& be, double rtol, double atol, double terms) {
#ifdef C3GAN_HAVE_CUDA
  if (std::string(be.name) == "cuda" && c3::cuda_math() == c3::CudaMath::TF32)
    return {std::max(rtol, 2e-3), std::max(atol, 5e-4 * terms)};
#endif
  (void)be, (void)terms;
  return {rtol, atol};
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, Tol tol, const std::string& what) {
  close_impl(got, want, tol.rtol, tol.atol, what);
}
void expect_close(const std::vector<float>& got, const std::vector<float>& want, Tol tol, const std::string& what) {
  close_impl(got, want, tol.rtol, tol.atol, what);
}

void expect_true(bool cond, const std::string& what) {
  if (!cond) throw Failure(what);
}

std::vector<double> numeric_grad(std::vector<double> x, const std::function<double(const std::vector<double>&)>& f,
                                 double h) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double old = x[i];
    x[i] = old + h;
    double fp = f(x);
    x[i] = old - h;
    double fm = f(x);
    x[i] = old;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// whether name contains one of the comma-separated parts of list
bool matches_any(const std::string& name, const std::string& list) {
  size_t at = 0;
  while (at <= list.size()) {
    const size_t end = std::min(list.find(',', at), list.size());
    const std::string part = list.substr(at, end - at);
    if (!part.empty() && name.find(part) != std::string::npos) return true;
    at = end + 1;
  }
  return false;
}

}  // namespace c3::test

// Runs every case on the backend named by --device (cpu by default; cuda where built and present);
// --filter S keeps the cases whose names contain S, --exclude S drops them (S may list
// comma-separated alternatives); --threads N sizes the CPU thread pool (default one per core), so
// the parallel loops' splits can be checked at a laptop's thread counts on any machine.
int main(int argc, char** argv) {
  std::string device = "cpu", filter, exclude;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--device") && has_value) device = argv[++i];
    else if (!std::strcmp(argv[i], "--filter") && has_value) filter = argv[++i];
    else if (!std::strcmp(argv[i], "--exclude") && has_value) exclude = argv[++i];
    else if (!std::strcmp(argv[i], "--threads") && has_value) {
      char* end = nullptr;
      const long n = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || n < 1 || n > 256) {
        std::printf("c3gan_op_test: --threads takes a whole number from 1 to 256, got '%s'\n", argv[i]);
        return 2;
      }
      threads = static_cast<int>(n);
    } else {
      std::printf("c3gan_op_test: unknown or incomplete argument '%s' (--device cpu|cuda, --filter S, "
                  "--exclude S, --threads N)\n", argv[i]);
      return 2;
    }
  }
  if (threads > 0) {
    c3::set_num_threads(threads);
    std::printf("cpu threads: %d\n", c3::num_threads());
  }
  const c3::Backend* be = &c3::cpu_backend();
  if (device == "cuda") {
    be = c3::cuda_backend();
    if (!be || !c3::cuda_available()) {
      std::printf("cuda: %s\n", c3::cuda_status());
      return 1;
    }
  }
  if (device == "cpu") std::printf("cpu gemm kernel: %s\n", c3::cpu::gemm_micro_kernel().name);
  int passed = 0, failed = 0;
  for (auto& c : c3::test::registry()) {
    if (!filter.empty() && !c3::test::matches_any(c.name, filter)) continue;
    if (!exclude.empty() && c3::test::matches_any(c.name, exclude)) continue;
    try {
      c.fn(*be);
      ++passed;
      std::printf("ok   %s\n", c.name);
      std::fflush(stdout);  // a case that crashes the program leaves the ones before it in a piped log
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s: %s\n", c.name, e.what());
      std::fflush(stdout);
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  std::fflush(stdout);  // before a sanitizer's exit-time report
  return failed ? 1 : 0;
}
