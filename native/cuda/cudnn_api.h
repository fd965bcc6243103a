// The part of cuDNN's legacy convolution API that c3gan calls, declared here and loaded at run
// time (cudnn_loader.cu), so the addon builds where cuDNN's headers are not (these machines, CI)
// and finds the library where it is (a PyTorch install carries it). Plain C++, no CUDA headers.
//
// The values are cuDNN's own (cudnn_graph.h, cudnn_ops.h, cudnn_cnn.h of 8.x and 9.x: these did
// not change between the two). Enums are passed as int, which is how the C ABIs of x86-64 and
// AArch64 pass them; cudaStream_t is a pointer, passed as void*.
#pragma once
#include <cstddef>
#include <string>

namespace c3::cuda::cudnn {

using Status = int;  // cudnnStatus_t: 0 is success; the rest are named by GetErrorString
using Handle = struct HandleOpaque*;
using TensorDesc = struct TensorOpaque*;
using FilterDesc = struct FilterOpaque*;
using ConvDesc = struct ConvOpaque*;

constexpr Status kSuccess = 0;
constexpr int kDataFloat = 0;         // CUDNN_DATA_FLOAT
constexpr int kNchw = 0;              // CUDNN_TENSOR_NCHW
constexpr int kCrossCorrelation = 1;  // CUDNN_CROSS_CORRELATION (PyTorch's conv, and c3gan's)
constexpr int kDefaultMath = 0;       // CUDNN_DEFAULT_MATH: TF32 tensor cores allowed (sm_80+)
constexpr int kFmaMath = 3;           // CUDNN_FMA_MATH: fp32 FMA only
constexpr int kDeterministic = 1;     // CUDNN_DETERMINISTIC

// cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t: one layout for the three passes
struct AlgoPerf {
  int algo;
  Status status;
  float time;
  size_t memory;  // workspace bytes
  int determinism;
  int math_type;
  int reserved[3];
};

// One function pointer per cuDNN function used, named as cuDNN names it without the prefix.
struct Api {
  size_t (*GetVersion)();
  const char* (*GetErrorString)(Status);
  Status (*Create)(Handle*);
  Status (*Destroy)(Handle);
  Status (*SetStream)(Handle, void* stream);
  Status (*CreateTensorDescriptor)(TensorDesc*);
  Status (*SetTensor4dDescriptor)(TensorDesc, int format, int data_type, int n, int c, int h, int w);
  Status (*DestroyTensorDescriptor)(TensorDesc);
  Status (*CreateFilterDescriptor)(FilterDesc*);
  Status (*SetFilter4dDescriptor)(FilterDesc, int data_type, int format, int k, int c, int h, int w);
  Status (*DestroyFilterDescriptor)(FilterDesc);
  Status (*CreateConvolutionDescriptor)(ConvDesc*);
  Status (*DestroyConvolutionDescriptor)(ConvDesc);
  Status (*SetConvolution2dDescriptor)(ConvDesc, int pad_h, int pad_w, int stride_h, int stride_w, int dilation_h,
                                       int dilation_w, int mode, int compute_type);
  Status (*SetConvolutionMathType)(ConvDesc, int math_type);
  Status (*GetConvolutionForwardAlgorithm_v7)(Handle, TensorDesc x, FilterDesc w, ConvDesc, TensorDesc y,
                                              int requested, int* returned, AlgoPerf* perf);
  Status (*GetConvolutionBackwardDataAlgorithm_v7)(Handle, FilterDesc w, TensorDesc dy, ConvDesc, TensorDesc dx,
                                                   int requested, int* returned, AlgoPerf* perf);
  Status (*GetConvolutionBackwardFilterAlgorithm_v7)(Handle, TensorDesc x, TensorDesc dy, ConvDesc, FilterDesc dw,
                                                     int requested, int* returned, AlgoPerf* perf);
  Status (*GetConvolutionForwardWorkspaceSize)(Handle, TensorDesc x, FilterDesc w, ConvDesc, TensorDesc y, int algo,
                                               size_t* bytes);
  Status (*GetConvolutionBackwardDataWorkspaceSize)(Handle, FilterDesc w, TensorDesc dy, ConvDesc, TensorDesc dx,
                                                    int algo, size_t* bytes);
  Status (*GetConvolutionBackwardFilterWorkspaceSize)(Handle, TensorDesc x, TensorDesc dy, ConvDesc, FilterDesc dw,
                                                      int algo, size_t* bytes);
  // output = alpha * op(inputs) + beta * output, alpha and beta pointing at host floats
  Status (*ConvolutionForward)(Handle, const void* alpha, TensorDesc x_desc, const void* x, FilterDesc w_desc,
                               const void* w, ConvDesc, int algo, void* workspace, size_t workspace_bytes,
                               const void* beta, TensorDesc y_desc, void* y);
  Status (*ConvolutionBackwardData)(Handle, const void* alpha, FilterDesc w_desc, const void* w, TensorDesc dy_desc,
                                    const void* dy, ConvDesc, int algo, void* workspace, size_t workspace_bytes,
                                    const void* beta, TensorDesc dx_desc, void* dx);
  Status (*ConvolutionBackwardFilter)(Handle, const void* alpha, TensorDesc x_desc, const void* x, TensorDesc dy_desc,
                                      const void* dy, ConvDesc, int algo, void* workspace, size_t workspace_bytes,
                                      const void* beta, FilterDesc dw_desc, void* dw);
  // C = alpha * A + beta * C, A broadcast along the dims where its size is 1 (a bias (1, K, 1, 1))
  Status (*AddTensor)(Handle, const void* alpha, TensorDesc a_desc, const void* a, const void* beta,
                      TensorDesc c_desc, void* c);
};

// The loaded library's table, or null when none could be loaded (load_error() says why). Looks
// once, on the first call: C3GAN_CUDNN (the library file, or a folder holding libcudnn.so.9 or
// .8), else libcudnn.so.9, .8 and libcudnn.so on the dynamic loader's search path.
const Api* api();
const std::string& load_error();
// "9.6.0 (/path/libcudnn.so.9)" when loaded, else "unavailable (<why>)"
std::string describe();
// "CUDNN_STATUS_BAD_PARAM (2000)": the library's name for the status and its number
std::string status_text(const Api& a, Status s);
// Whether s means that cuDNN ran out of (host or device) memory, in cuDNN 8's numbering or 9's.
bool is_out_of_memory(const Api& a, Status s);
// Whether s means that one of cuDNN 9's sub-libraries (libcudnn_cnn.so.9, ...) could not be loaded.
bool is_missing_sublibrary(const Api& a, Status s);

}  // namespace c3::cuda::cudnn
