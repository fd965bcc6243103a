// A backend is a small table of functions over raw device pointers (ggml-style). cpu/ fills one
// now, cuda/ another. Shapes are checked before a call (core/ops.cc), so kernels trust their
// arguments. Outputs are overwritten unless the name says "accumulate".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace c3 {

enum class Device : int { CPU = 0, CUDA = 1 };

constexpr int kMaxDims = 6;

// One parameter of a multi-tensor Adam step: the parameter, its gradient and moments (n elements
// each) and its own step count (from 1).
struct AdamTensor {
  float* param;
  const float* grad;
  float* m;
  float* v;
  size_t n;
  int64_t step;
};

// One gradient sum: dst (n elements) += srcs[0], then += srcs[1], ... in order, each as an axpy
// with alpha 1 (so the same bits as that chain of axpys). No src overlaps any dst of the call.
struct SumInto {
  float* dst;
  const float* const* srcs;
  size_t count;
  size_t n;
};

struct Conv2dParams {
  int64_t N, C, H, W;   // input
  int64_t K, R, S;      // output channels, kernel height, kernel width
  int64_t OH, OW;       // output spatial size
  int64_t stride, pad;  // same in both directions
};

// Broadcast description: an output of `ndim` dims and, per input, element strides in that output
// space (0 where the input is broadcast along a dim).
struct BroadcastIndex {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t stride_a[kMaxDims];
  int64_t stride_b[kMaxDims];
};

enum class UnaryOp : int { Relu = 0, LeakyRelu, Tanh, Sigmoid, Exp, Log, Neg, Square, Sqrt, Abs };
enum class BinaryOp : int { Add = 0, Sub, Mul, Div };

// What batch norm's normalising pass writes besides bn(x): z = bn(x) + residual (when not null,
// x's shape; a residual block's sum), then LeakyReLU(z) with `slope` (>= 0) when `leaky`; each
// rounded as the separate op would round it.
struct BnEpilogue {
  const float* residual = nullptr;
  bool leaky = false;
  float slope = 0.0f;
};

struct Backend {
  const char* name;

  // memory (bytes); alloc throws OutOfMemory on failure
  void* (*alloc)(size_t bytes);
  void (*free)(void* p);
  void (*upload)(float* dst, const float* host, size_t n);
  void (*download)(float* host, const float* src, size_t n);
  void (*copy)(float* dst, const float* src, size_t n);
  void (*fill)(float* x, size_t n, float v);
  void (*synchronize)();
  // bytes the device's allocator holds from the system: in use plus cached. What V8 is told (the
  // addon's external memory): flat once a loop's blocks are cached, where the bytes in use swing
  // by gigabytes within each training iteration and each swing would start a V8 collection
  int64_t (*held_bytes)();

  // random numbers: Philox4x32-10 stream `key`, element i uses counter `offset + i`
  void (*rand_normal)(float* y, size_t n, uint64_t key, uint64_t offset, float mean, float std);
  void (*rand_uniform)(float* y, size_t n, uint64_t key, uint64_t offset, float lo, float hi);

  // y += alpha * x
  void (*axpy)(size_t n, float alpha, const float* x, float* y);
  // many SumInto at once (a backward pass's parameter gradients: one launch on CUDA)
  void (*sum_into)(const SumInto* ts, size_t count);
  // y = scale * x + shift
  void (*affine)(size_t n, const float* x, float scale, float shift, float* y);

  // C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(A) is M x K, op(B) is K x N
  void (*gemm)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               const float* B, float beta, float* C);

  // conv2d, NCHW input, KCRS weight; bias may be null. moments, when not null, receives (K, 2):
  // per output channel the mean and the biased variance of y over N, OH and OW (the values as
  // stored), for a batch norm in training right after the conv (batchnorm_forward_train's
  // moments); a backend may compute them in the conv's epilogue.
  void (*conv2d_forward)(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                         float* moments);
  // conv2d_forward (no moments) then LeakyReLU(slope >= 0) of y, with the bits of the two ops
  void (*conv2d_forward_leaky)(const Conv2dParams& p, const float* x, const float* w, const float* bias, float slope,
                               float* y);
  void (*conv2d_backward_data)(const Conv2dParams& p, const float* dy, const float* w, float* dx);
  // dx += the gradient above, with the bits of conv2d_backward_data then axpy (alpha 1): for an
  // input whose gradient is already partly summed (a residual block's input)
  void (*conv2d_backward_data_accumulate)(const Conv2dParams& p, const float* dy, const float* w, float* dx);
  void (*conv2d_backward_weight)(const Conv2dParams& p, const float* dy, const float* x, float* dw);
  // The same conv of x upsampled 2x (nearest) first, without the upsampled tensor: p describes
  // the conv on x itself (3x3, stride 1, pad 1; x (N, C, H, W), y (N, K, 2H, 2W), OH = H, OW = W).
  // moments as conv2d_forward's.
  void (*conv2d_up_forward)(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                            float* moments);
  void (*conv2d_up_backward_data)(const Conv2dParams& p, const float* dy, const float* w, float* dx);
  void (*conv2d_up_backward_weight)(const Conv2dParams& p, const float* dy, const float* x, float* dw);

  // batch norm over (N, C, HW): statistics per channel across N and HW; y may be null (the
  // statistics only, for bn_glu_forward). moments, when not null, are x's own per-channel mean
  // and biased variance (C, 2), as conv2d_forward gives them: x is then read only for y.
  // epi: what the pass adds to y (BnEpilogue), without a pass of its own.
  void (*batchnorm_forward_train)(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma,
                                  const float* beta, float* running_mean, float* running_var, float momentum,
                                  float eps, float* y, float* save_mean, float* save_invstd,
                                  const float* moments, const BnEpilogue& epi);
  void (*batchnorm_forward_eval)(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma,
                                 const float* beta, const float* running_mean, const float* running_var, float eps,
                                 float* y, const BnEpilogue& epi);
  // training: save_* are the batch statistics; eval: save_mean = running mean, save_invstd =
  // 1/sqrt(running var + eps) and dx is the affine-only gradient. dgamma/dbeta may be null.
  void (*batchnorm_backward)(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                             const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                             float* dgamma, float* dbeta);
  // batchnorm_backward through a LeakyReLU after the batch norm (BnEpilogue's leaky, slope >= 0):
  // y is the LeakyReLU's output, so the gradient at the normalised values is dy where y > 0 and
  // slope * dy elsewhere (LeakyReLU's backward: y > 0 exactly where its input is). A backend
  // keeps that gradient wherever it likes (the CPU in a scratch block; CUDA recomputes it in
  // each pass instead of storing it).
  void (*batchnorm_leaky_backward)(int64_t N, int64_t C, int64_t HW, bool training, float slope, const float* dy,
                                   const float* y, const float* x, const float* gamma, const float* save_mean,
                                   const float* save_invstd, float* dx, float* dgamma, float* dbeta);

  // GLU over a dim of size 2*half: x viewed as (outer, 2*half, inner); y = a * sigmoid(b)
  void (*glu_forward)(int64_t outer, int64_t half, int64_t inner, const float* x, float* y);
  void (*glu_backward)(int64_t outer, int64_t half, int64_t inner, const float* dy, const float* x, float* dx);

  // Batch norm's affine then GLU over the channels, in one pass from the statistics of the
  // C = 2 * half channels: with z = x * s[c] + t[c], s = float(gamma * invstd), t = float(beta -
  // mean * gamma * invstd) (double products, as batchnorm_glu_coefficients), y (N, half, HW) =
  // z[:, :half] * sigmoid(z[:, half:]). The backward recomputes z from x the same way, forms
  // the gradient at z, dz (N, C, HW), and goes on with batchnorm_backward's from dz (same
  // arguments; dx, dgamma, dbeta may be null): a backend may take batch norm's sums in the
  // pass that makes dz, and need not store dz (CUDA forms it again in the dx pass).
  void (*bn_glu_forward)(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                         const float* mean, const float* invstd, float* y);
  // In training: batchnorm_forward_train's statistics (moments as there, y null) into save_*, then
  // bn_glu_forward from them; a backend may do both in one pass when the moments are given.
  void (*bn_glu_forward_train)(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma,
                               const float* beta, float* running_mean, float* running_var, float momentum, float eps,
                               const float* moments, float* y, float* save_mean, float* save_invstd);
  void (*bn_glu_batchnorm_backward)(int64_t N, int64_t half, int64_t HW, bool training, const float* dy,
                                    const float* x, const float* gamma, const float* beta, const float* mean,
                                    const float* invstd, float* dx, float* dgamma, float* dbeta);

  // elementwise; alpha is LeakyReLU's slope (unused otherwise). backward gets both x and y.
  void (*unary_forward)(UnaryOp op, size_t n, const float* x, float alpha, float* y);
  void (*unary_backward)(UnaryOp op, size_t n, const float* dy, const float* x, const float* y, float alpha,
                         float* dx);
  void (*binary_forward)(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y);
  // y[out index] = x[broadcast index] (stride_a describes x in the output space)
  void (*expand)(const BroadcastIndex& idx, const float* x, float* y);
  // y (shape with 1s where reduced, strides stride_a in x's space) = sum of x over broadcast dims;
  // idx.shape is x's shape
  void (*sum_to)(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel);

  // nearest 2x upsample of (planes, H, W)
  void (*upsample2x_forward)(int64_t planes, int64_t H, int64_t W, const float* x, float* y);
  void (*upsample2x_backward)(int64_t planes, int64_t H, int64_t W, const float* dy, float* dx);

  // block copy for concat/slice: for o < outer: dst[o, dst_off + j, :] = src[o, src_off + j, :]
  // for j < len, with row lengths src_dim and dst_dim (in units of `inner` elements)
  void (*copy_block)(int64_t outer, int64_t inner, int64_t len, const float* src, int64_t src_dim, int64_t src_off,
                     float* dst, int64_t dst_dim, int64_t dst_off);

  // rows of (N, D): y = x / max(||x||, eps); norms[N] saved
  void (*l2norm_forward)(int64_t N, int64_t D, const float* x, float eps, float* y, float* norms);
  void (*l2norm_backward)(int64_t N, int64_t D, const float* dy, const float* x, const float* norms, float eps,
                          float* dx);

  // softmax (or log-softmax) of rows of (N, D)
  void (*softmax_forward)(int64_t N, int64_t D, const float* x, bool log, float* y);
  void (*softmax_backward)(int64_t N, int64_t D, const float* dy, const float* y, bool log, float* dx);

  // mean cross-entropy of rows of logits (N, D) against int targets; probs (N, D) saved
  void (*cross_entropy_forward)(int64_t N, int64_t D, const float* logits, const int32_t* targets, float* loss,
                                float* probs);
  void (*cross_entropy_backward)(int64_t N, int64_t D, const float* probs, const int32_t* targets,
                                 const float* dloss, float* dlogits);

  // NT-Xent over 2N rows of (2N, D): rows i and i+N are positives. save_z (2N, D) holds the
  // normalised rows, save_norms (2N), save_p (2N, 2N) the softmax over each row's 2N-1 others.
  void (*ntxent_forward)(int64_t N2, int64_t D, const float* x, float temperature, float* loss, float* save_z,
                         float* save_norms, float* save_p);
  void (*ntxent_backward)(int64_t N2, int64_t D, const float* dloss, const float* x, const float* save_z,
                          const float* save_norms, const float* save_p, float temperature, float* dx);

  // affine_grid (align_corners=true): theta (N, 2, 3) -> grid (N, H, W, 2)
  void (*affine_grid_forward)(int64_t N, int64_t H, int64_t W, const float* theta, float* grid);
  void (*affine_grid_backward)(int64_t N, int64_t H, int64_t W, const float* dgrid, float* dtheta);
  // grid_sample bilinear, zero padding, align_corners=true: x (N,C,H,W), grid (N,OH,OW,2)
  void (*grid_sample_forward)(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* x,
                              const float* grid, float* y);
  // dx and dgrid overwritten; either may be null when not needed
  void (*grid_sample_backward)(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW,
                               const float* dy, const float* x, const float* grid, float* dx, float* dgrid);

  // PyTorch Adam (L2 weight decay added to the gradient), in place, over `count` parameters at
  // once: one pass over the CPU's threads, one launch on CUDA (a model's ~125 parameters were as
  // many calls and launches). The hyperparameters come in double, as PyTorch holds them (Python
  // floats): 1 - beta2 and the bias corrections are formed in double and only then rounded to
  // float, as there (core/adam.h).
  void (*adam_step)(const AdamTensor* ts, size_t count, double lr, double beta1, double beta2, double eps,
                    double weight_decay);

  // Constant channels of a conv2d: of p.C input channels the last Kc hold code[n, j] (N, Kc) at
  // every position; stride 1, p.pad = (R-1)/2 = (S-1)/2 (odd square kernel, 'same' size), zero
  // padding, so at border positions only the taps inside the image see the code. w is the full
  // (K, C, R, S) weight.
  //   backward false: y (N, K, OH, OW) += the code channels' part of the conv (dy, dw, dcode unused)
  //   backward true:  dw[:, C-Kc:] = that part's weight gradient (dw[:, :C-Kc] is left alone) and
  //                   dcode (N, Kc) = the code's gradient, for dy (N, K, OH, OW); either may be null
  // Null in a backend that lacks it: ops::conv2d_const_channels then runs the plain conv on the
  // concatenated input, so a table may leave it out.
  void (*conv2d_code_channels)(bool backward, const Conv2dParams& p, int64_t Kc, const float* code, const float* w,
                               const float* dy, float* y, float* dw, float* dcode);
};

const Backend& cpu_backend();
// The CUDA backend, or null when the addon was built without CUDA. Its availability at run time
// is cuda_status().
const Backend* cuda_backend();
// "available (<device name>)" or "unavailable (<reason>)"
const char* cuda_status();
bool cuda_available();
// The GPU code the addon carries, e.g. "sm_80 sm_86 sm_89 sm_90a + compute_90 PTX", or why none.
const char* cuda_build();
// The GPU the CUDA backend runs on: device 0, or C3GAN_CUDA_DEVICE, or the one chosen here
// before the backend's first use (cuda_status and cuda_available count as use). One GPU per
// process: choosing another once it runs is an error naming both, as is an index the driver
// does not have (listing the devices it has).
void cuda_select_device(int index);
int cuda_device_index();
// Every device the driver sees, "0: NVIDIA H200, sm_90, 132 SMs, 139.8 GiB", or "none (<why>)".
std::vector<std::string> cuda_devices();

}  // namespace c3
