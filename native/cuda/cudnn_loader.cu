// Finds and loads cuDNN at run time (cudnn_api.h): dlopen, then every function the convolutions
// use by dlsym. A missing library, a missing function or an unsupported version leaves the table
// null with the reason, which `c3gan info` prints and which a request for the cuDNN convolutions
// reports; nothing here fails the process.
#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "cudnn_api.h"

namespace c3::cuda::cudnn {

namespace {

struct Loaded {
  Api api{};
  bool ok = false;
  std::string path;   // the file the table came from
  std::string error;  // why there is no table
  size_t version = 0;
};

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The names to dlopen, in order: C3GAN_CUDNN's file or the sonames inside its folder, else the
// sonames on the loader's search path (LD_LIBRARY_PATH, the ld.so cache). `where` names the
// place for a message, `hint` what to do when nothing is there.
std::vector<std::string> candidates(std::string& where, std::string& hint) {
  static const char* kSonames[] = {"libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"};
  std::vector<std::string> out;
  const char* env = std::getenv("C3GAN_CUDNN");
  if (env && *env) {
    where = std::string("at C3GAN_CUDNN=") + env;
    hint = "C3GAN_CUDNN names the library file or the folder that holds it";
    std::string p = env;
    if (is_dir(p)) {
      if (p.back() != '/') p += '/';
      for (const char* s : kSonames) out.push_back(p + s);
    } else {
      out.push_back(p);
    }
    return out;
  }
  where = "on the dynamic loader's search path";
  hint = "set C3GAN_CUDNN to the library or its folder (a PyTorch install has one under nvidia/cudnn/lib)";
  for (const char* s : kSonames) out.push_back(s);
  return out;
}

// cuDNN's main library loads its sub-libraries by name when first needed; a folder named by
// C3GAN_CUDNN is not on the loader's path, so the ones beside the library are loaded first (in
// dependency order, by full path: a later load by name finds them loaded), as PyTorch preloads its
// wheel's libraries. Best effort: a sub-library that fails here is reported by cuDNN when needed.
void preload_siblings(const std::string& file) {
  const size_t slash = file.rfind('/');
  if (slash == std::string::npos) return;
  const std::string dir = file.substr(0, slash + 1);
  static const char* kSubs[] = {
      // 9.x
      "libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9", "libcudnn_engines_runtime_compiled.so.9",
      "libcudnn_heuristic.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_adv.so.9",
      // 8.x
      "libcudnn_ops_infer.so.8", "libcudnn_ops_train.so.8", "libcudnn_cnn_infer.so.8", "libcudnn_cnn_train.so.8",
      "libcudnn_adv_infer.so.8", "libcudnn_adv_train.so.8"};
  for (const char* sub : kSubs) {
    const std::string path = dir + sub;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    if (!::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) ::dlerror();  // kept loaded for the process
  }
}

template <class F>
bool bind(void* lib, const char* name, F& slot, std::string& error) {
  void* sym = ::dlsym(lib, name);
  if (!sym) {
    error = std::string("the library has no ") + name;
    return false;
  }
  slot = reinterpret_cast<F>(sym);
  return true;
}

bool bind_all(void* lib, Api& a, std::string& e) {
  return bind(lib, "cudnnGetVersion", a.GetVersion, e) && bind(lib, "cudnnGetErrorString", a.GetErrorString, e) &&
         bind(lib, "cudnnCreate", a.Create, e) && bind(lib, "cudnnDestroy", a.Destroy, e) &&
         bind(lib, "cudnnSetStream", a.SetStream, e) &&
         bind(lib, "cudnnCreateTensorDescriptor", a.CreateTensorDescriptor, e) &&
         bind(lib, "cudnnSetTensor4dDescriptor", a.SetTensor4dDescriptor, e) &&
         bind(lib, "cudnnDestroyTensorDescriptor", a.DestroyTensorDescriptor, e) &&
         bind(lib, "cudnnCreateFilterDescriptor", a.CreateFilterDescriptor, e) &&
         bind(lib, "cudnnSetFilter4dDescriptor", a.SetFilter4dDescriptor, e) &&
         bind(lib, "cudnnDestroyFilterDescriptor", a.DestroyFilterDescriptor, e) &&
         bind(lib, "cudnnCreateConvolutionDescriptor", a.CreateConvolutionDescriptor, e) &&
         bind(lib, "cudnnDestroyConvolutionDescriptor", a.DestroyConvolutionDescriptor, e) &&
         bind(lib, "cudnnSetConvolution2dDescriptor", a.SetConvolution2dDescriptor, e) &&
         bind(lib, "cudnnSetConvolutionMathType", a.SetConvolutionMathType, e) &&
         bind(lib, "cudnnGetConvolutionForwardAlgorithm_v7", a.GetConvolutionForwardAlgorithm_v7, e) &&
         bind(lib, "cudnnGetConvolutionBackwardDataAlgorithm_v7", a.GetConvolutionBackwardDataAlgorithm_v7, e) &&
         bind(lib, "cudnnGetConvolutionBackwardFilterAlgorithm_v7", a.GetConvolutionBackwardFilterAlgorithm_v7, e) &&
         bind(lib, "cudnnGetConvolutionForwardWorkspaceSize", a.GetConvolutionForwardWorkspaceSize, e) &&
         bind(lib, "cudnnGetConvolutionBackwardDataWorkspaceSize", a.GetConvolutionBackwardDataWorkspaceSize, e) &&
         bind(lib, "cudnnGetConvolutionBackwardFilterWorkspaceSize", a.GetConvolutionBackwardFilterWorkspaceSize, e) &&
         bind(lib, "cudnnConvolutionForward", a.ConvolutionForward, e) &&
         bind(lib, "cudnnConvolutionBackwardData", a.ConvolutionBackwardData, e) &&
         bind(lib, "cudnnConvolutionBackwardFilter", a.ConvolutionBackwardFilter, e) &&
         bind(lib, "cudnnAddTensor", a.AddTensor, e);
}

// cudnnGetVersion: major * 1000 + minor * 100 + patch before 9, major * 10000 + minor * 100 +
// patch from 9 on
int major_of(size_t v) { return v >= 90000 ? static_cast<int>(v / 10000) : static_cast<int>(v / 1000); }

std::string version_text(size_t v) {
  const int major = major_of(v);
  const size_t rest = major >= 9 ? v % 10000 : v % 1000;
  return std::to_string(major) + "." + std::to_string(rest / 100) + "." + std::to_string(rest % 100);
}

Loaded load() {
  Loaded l;
  std::string where, hint, tried;
  for (const std::string& name : candidates(where, hint)) {
    // RTLD_LOCAL: cuDNN's symbols stay out of the process's namespace (a PyTorch in the same
    // process may carry another cuDNN)
    void* lib = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* why = ::dlerror();
      tried += (tried.empty() ? "" : "; ") + (why ? std::string(why) : name + ": not found");
      continue;
    }
    Api a{};
    std::string e;
    if (!bind_all(lib, a, e)) {
      l.error = name + ": " + e + " (cuDNN 8 or 9 is needed)";
      ::dlclose(lib);
      return l;
    }
    const size_t v = a.GetVersion();
    const int major = major_of(v);
    if (major != 8 && major != 9) {
      l.error = name + " is cuDNN " + version_text(v) + "; c3gan calls the convolution API of cuDNN 8 and 9";
      ::dlclose(lib);
      return l;
    }
    Dl_info info{};
    l.path = ::dladdr(reinterpret_cast<void*>(a.GetVersion), &info) && info.dli_fname ? info.dli_fname : name;
    preload_siblings(l.path);
    l.api = a;
    l.version = v;
    l.ok = true;
    return l;  // the library stays loaded for the life of the process
  }
  l.error = "no cuDNN library " + where + " (" + tried + "); " + hint;
  return l;
}

const Loaded& loaded() {
  static const Loaded* l = new Loaded(load());
  return *l;
}

}  // namespace

const Api* api() { return loaded().ok ? &loaded().api : nullptr; }

const std::string& load_error() { return loaded().error; }

std::string describe() {
  const Loaded& l = loaded();
  if (!l.ok) return "unavailable (" + l.error + ")";
  return version_text(l.version) + " (" + l.path + ")";
}

std::string status_text(const Api& a, Status s) {
  const char* name = a.GetErrorString ? a.GetErrorString(s) : nullptr;
  return std::string(name ? name : "cuDNN status") + " (" + std::to_string(s) + ")";
}

bool is_out_of_memory(const Api& a, Status s) {
  // 8.x: CUDNN_STATUS_ALLOC_FAILED = 2; 9.x: the host and device allocation failures 4003, 4004
  if (major_of(a.GetVersion()) < 9) return s == 2;
  return s == 4003 || s == 4004;
}

bool is_missing_sublibrary(const Api& a, Status s) {
  // 9.x: CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED, CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE
  return major_of(a.GetVersion()) >= 9 && (s == 1008 || s == 3009);
}

}  // namespace c3::cuda::cudnn
