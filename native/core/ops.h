// The checked op layer: validates shapes and arguments (throwing c3::Error naming the op, the
// argument and the shapes), allocates outputs on the inputs' device and calls the backend.
// Forward and backward are separate calls; the autograd tape lives in TypeScript.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "rng.h"
#include "tensor.h"

namespace c3::ops {

// creation and copies
Tensor empty(Device d, const Shape& s);
Tensor full(Device d, const Shape& s, float v);
Tensor from_host(Device d, const Shape& s, const float* host, size_t n);
void to_host(const Tensor& t, float* host, size_t n);
Tensor to_device(const Tensor& t, Device d);
Tensor clone(const Tensor& t);
Tensor reshape(const Tensor& t, const Shape& s);  // shares storage; one dim may be -1
void fill_(Tensor& t, float v);
void copy_(Tensor& dst, const Tensor& src);                          // same numel
void axpy_(Tensor& y, float alpha, const Tensor& x);                 // y += alpha x, same numel
// dsts[i] += srcs[i] for each pair in order (the bits of those axpys), in one backend call; the
// pairs of one dst are summed in one pass over it. A src may not overlap any dst.
void add_into_(const std::vector<Tensor*>& dsts, const std::vector<const Tensor*>& srcs);
Tensor randn(Device d, const Shape& s, Generator& g, float mean, float std);
Tensor rand(Device d, const Shape& s, Generator& g, float lo, float hi);

// elementwise
Tensor affine(const Tensor& x, float scale, float shift);  // scale * x + shift
void affine_(Tensor& x, float scale, float shift);         // x = scale * x + shift, in place
Tensor unary(UnaryOp op, const Tensor& x, float alpha);
Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y, float alpha);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);  // numpy broadcasting
Tensor expand(const Tensor& x, const Shape& s);               // broadcast x to s
Tensor sum_to(const Tensor& x, const Shape& s);               // reverse of expand
Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim);  // empty dims: all
// shape of sum(x, dims, keepdim=true)
Shape reduced_shape(const Shape& s, const std::vector<int>& dims);

// layers
Conv2dParams conv2d_params(const Shape& x, const Shape& w, int64_t stride, int64_t pad, const char* op);
// moments, when not null, receives the output's per-channel mean and biased variance (K, 2) for
// a batch norm in training after it (batchnorm_forward's moments); leaky_slope (>= 0, not with
// moments): LeakyReLU(conv) in the same pass (D's first layer)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, int64_t stride, int64_t pad,
              Tensor* moments = nullptr, std::optional<float> leaky_slope = std::nullopt);
Tensor conv2d_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape, int64_t stride, int64_t pad);
// dx += conv2d_backward_data(dy, w, dx.shape, ...), without the gradient's own tensor on CUDA
void conv2d_backward_data_add_(Tensor& dx, const Tensor& dy, const Tensor& w, int64_t stride, int64_t pad);
Tensor conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& w_shape, int64_t stride, int64_t pad);
// conv2d(upsample2x(x), w, bias, 1, 1) for a 3x3 w, without the upsampled tensor
Tensor conv2d_up(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* moments = nullptr);
Tensor conv2d_up_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape);
Tensor conv2d_up_backward_weight(const Tensor& dy, const Tensor& x, const Shape& w_shape);

// y = x W^T + b for x (M, K), W (N, K)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias);
Tensor linear_backward_data(const Tensor& dy, const Tensor& w);
Tensor linear_backward_weight(const Tensor& dy, const Tensor& x);
// C = op(A) op(B) for 2-D tensors
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);

struct BatchNormOut {
  Tensor y, save_mean, save_invstd;
};
// x (N, C) or (N, C, H, W). Training updates running stats in place (momentum, unbiased var).
// moments (training only): x's own per-channel statistics from the conv that made it (conv2d's
// moments), so x is not read again for them; they are not checked against x. residual (x's
// shape) and leaky_slope (>= 0): y = leaky_relu(batch_norm(x) + residual, slope) in the same pass
// (a residual block's sum, the discriminator's activation).
BatchNormOut batchnorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                               Tensor& running_var, bool training, float momentum, float eps,
                               const Tensor* moments = nullptr, const Tensor* residual = nullptr,
                               std::optional<float> leaky_slope = std::nullopt);
struct BatchNormGrads {
  Tensor dx, dgamma, dbeta;
};
BatchNormGrads batchnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                                  const Tensor& save_invstd, bool training);
// the backward of batchnorm_forward with a leaky_slope: y is its output
BatchNormGrads batchnorm_leaky_backward(const Tensor& dy, const Tensor& y, float slope, const Tensor& x,
                                        const Tensor& gamma, const Tensor& save_mean, const Tensor& save_invstd,
                                        bool training);
// glu(batch_norm(x), 1) in one pass over x: y (N, C/2, ...) and the statistics (as batchnorm_forward's)
BatchNormOut batchnorm_glu_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                                   Tensor& running_var, bool training, float momentum, float eps,
                                   const Tensor* moments = nullptr);
// its gradients from dy (N, C/2, ...), recomputing the normalised values from x
BatchNormGrads batchnorm_glu_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& save_mean, const Tensor& save_invstd, bool training);

Tensor glu(const Tensor& x, int dim);
Tensor glu_backward(const Tensor& dy, const Tensor& x, int dim);

Tensor upsample2x(const Tensor& x);
Tensor upsample2x_backward(const Tensor& dy);

Tensor concat(const std::vector<Tensor>& xs, int dim);
Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end);
// dx of slice: zeros of x_shape with dy placed at [start, start + len) along dim
Tensor slice_backward(const Tensor& dy, const Shape& x_shape, int dim, int64_t start);

struct L2NormOut {
  Tensor y, norms;
};
L2NormOut l2normalize(const Tensor& x, float eps);  // rows of (N, D)
Tensor l2normalize_backward(const Tensor& dy, const Tensor& x, const Tensor& norms, float eps);

Tensor softmax(const Tensor& x, bool log);  // rows of (N, D)
Tensor softmax_backward(const Tensor& dy, const Tensor& y, bool log);

struct CrossEntropyOut {
  Tensor loss, probs;  // loss is shape [] (one element)
};
CrossEntropyOut cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets);
Tensor cross_entropy_backward(const Tensor& dloss, const Tensor& probs, const std::vector<int32_t>& targets);

struct NtXentOut {
  Tensor loss, z, norms, p;
};
NtXentOut ntxent(const Tensor& x, float temperature);  // x (2N, D)
Tensor ntxent_backward(const Tensor& dloss, const Tensor& x, const NtXentOut& saved, float temperature);

Tensor affine_grid(const Tensor& theta, int64_t H, int64_t W);  // theta (N, 2, 3) -> (N, H, W, 2)
Tensor affine_grid_backward(const Tensor& dgrid);
Tensor grid_sample(const Tensor& x, const Tensor& grid);
struct GridSampleGrads {
  Tensor dx, dgrid;
};
GridSampleGrads grid_sample_backward(const Tensor& dy, const Tensor& x, const Tensor& grid, bool need_dx,
                                     bool need_dgrid);

// Adam over many parameters in one backend call; each has its own step count (from 1).
struct AdamParam {
  Tensor* param;
  const Tensor* grad;
  Tensor* m;
  Tensor* v;
  int64_t step;
};
void adam_steps_(const std::vector<AdamParam>& ps, double lr, double beta1, double beta2, double eps,
                 double weight_decay);

// conv2d(concat(x, code tiled over H x W) along channels, w), stride 1, 'same' padding, without
// the tiled input: x (N, Cx, H, W), code (N, Kc), w (K, Cx + Kc, R, R), R odd, pad (R-1)/2. The
// code channels become a per-position bias (backend conv2d_code_channels); backends without that
// entry run the plain conv on the concatenated input.
Tensor conv2d_const_channels(const Tensor& x, const Tensor& w, const Tensor& code);
struct ConstChannelsGrads {
  Tensor dx, dw, dcode;  // each undefined unless asked for
};
ConstChannelsGrads conv2d_const_channels_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                                  const Tensor& code, bool need_dx, bool need_dw, bool need_dcode);

}  // namespace c3::ops
