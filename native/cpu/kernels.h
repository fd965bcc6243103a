// CPU kernels, one function per entry of the backend table (core/backend.h has the contracts).
// Each family lives in its own file; backend_cpu.cc puts them in the table.
#pragma once
#include "../core/backend.h"

namespace c3::cpu {

// memory.cc
void* alloc(size_t bytes);
void free(void* p);
void upload(float* dst, const float* host, size_t n);
void download(float* host, const float* src, size_t n);
void copy(float* dst, const float* src, size_t n);
void fill(float* x, size_t n, float v);
void synchronize();
int64_t held_bytes();  // the caching allocator's in-use plus cached bytes
void axpy(size_t n, float alpha, const float* x, float* y);
void sum_into(const SumInto* ts, size_t count);
void affine(size_t n, const float* x, float scale, float shift, float* y);

// random.cc
void rand_normal(float* y, size_t n, uint64_t key, uint64_t offset, float mean, float std);
void rand_uniform(float* y, size_t n, uint64_t key, uint64_t offset, float lo, float hi);

// gemm.cc
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
          float beta, float* C);
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    const float* B, float beta, float* C);

// conv2d.cc (fast path on gemm) and the plain loops beside it
// moments (backend.h's): the Winograd paths and the direct loops form them while each output
// plane or band is in cache, the others in a channel_moments pass after the conv
void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                    float* moments = nullptr);
void conv2d_forward_leaky(const Conv2dParams& p, const float* x, const float* w, const float* bias, float slope,
                          float* y);
void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_backward_data_accumulate(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);
void conv2d_forward_reference(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
void conv2d_backward_data_reference(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_backward_weight_reference(const Conv2dParams& p, const float* dy, const float* x, float* dw);
// conv_up.cc: the conv of x upsampled 2x (backend.h conv2d_up_*); the references upsample, then
// run the plain conv loops
bool conv2d_up_applies(const Conv2dParams& p);
void conv2d_up_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                       float* moments = nullptr);
void conv2d_up_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_up_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);
void conv2d_up_forward_reference(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
void conv2d_up_backward_data_reference(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_up_backward_weight_reference(const Conv2dParams& p, const float* dy, const float* x, float* dw);
// How conv2d_backward_data works (for tests and benchmarks): -1 chooses by shape (the default),
// 0 always by stride phases, 1 always by the fused col2im.
void set_conv2d_backward_data_path(int path);

// batchnorm.cc
void batchnorm_forward_train(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                             float* running_mean, float* running_var, float momentum, float eps, float* y,
                             float* save_mean, float* save_invstd, const float* moments = nullptr,
                             const BnEpilogue& epi = BnEpilogue{});
// per channel of x (N, C, HW): mean and biased variance into moments (C, 2), as batch norm forms them
void channel_moments(int64_t N, int64_t C, int64_t HW, const float* x, float* moments);
void batchnorm_forward_eval(int64_t N, int64_t C, int64_t HW, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y,
                            const BnEpilogue& epi = BnEpilogue{});
void batchnorm_backward(int64_t N, int64_t C, int64_t HW, bool training, const float* dy, const float* x,
                        const float* gamma, const float* save_mean, const float* save_invstd, float* dx,
                        float* dgamma, float* dbeta);
// LeakyReLU's backward from its output into a scratch dz, then batchnorm_backward from dz
void batchnorm_leaky_backward(int64_t N, int64_t C, int64_t HW, bool training, float slope, const float* dy,
                              const float* y, const float* x, const float* gamma, const float* save_mean,
                              const float* save_invstd, float* dx, float* dgamma, float* dbeta);

// bn_glu.cc (backend.h: batch norm's affine then GLU, one pass)
void bn_glu_forward(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* invstd, float* y);
// batchnorm_forward_train's statistics, then bn_glu_forward (the backend table's entry)
void bn_glu_forward_train(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma, const float* beta,
                          float* running_mean, float* running_var, float momentum, float eps, const float* moments,
                          float* y, float* save_mean, float* save_invstd);
void bn_glu_backward(int64_t N, int64_t half, int64_t HW, const float* dy, const float* x, const float* gamma,
                     const float* beta, const float* mean, const float* invstd, float* dz);
// bn_glu_backward into a scratch dz, then batchnorm_backward from it (the backend table's entry)
void bn_glu_batchnorm_backward(int64_t N, int64_t half, int64_t HW, bool training, const float* dy, const float* x,
                               const float* gamma, const float* beta, const float* mean, const float* invstd,
                               float* dx, float* dgamma, float* dbeta);
void bn_glu_forward_reference(int64_t N, int64_t half, int64_t HW, const float* x, const float* gamma,
                              const float* beta, const float* mean, const float* invstd, float* y);
void bn_glu_backward_reference(int64_t N, int64_t half, int64_t HW, const float* dy, const float* x,
                               const float* gamma, const float* beta, const float* mean, const float* invstd, float* dz);

// pointwise.cc
void glu_forward(int64_t outer, int64_t half, int64_t inner, const float* x, float* y);
void glu_backward(int64_t outer, int64_t half, int64_t inner, const float* dy, const float* x, float* dx);
void unary_forward(UnaryOp op, size_t n, const float* x, float alpha, float* y);
void unary_backward(UnaryOp op, size_t n, const float* dy, const float* x, const float* y, float alpha, float* dx);
void binary_forward(BinaryOp op, const BroadcastIndex& idx, const float* a, const float* b, float* y);
void expand(const BroadcastIndex& idx, const float* x, float* y);
void sum_to(const BroadcastIndex& idx, const float* x, float* y, size_t y_numel);

// layout.cc
void upsample2x_forward(int64_t planes, int64_t H, int64_t W, const float* x, float* y);
void upsample2x_backward(int64_t planes, int64_t H, int64_t W, const float* dy, float* dx);
void copy_block(int64_t outer, int64_t inner, int64_t len, const float* src, int64_t src_dim, int64_t src_off,
                float* dst, int64_t dst_dim, int64_t dst_off);

// rows.cc: row-wise ops over (N, D)
void l2norm_forward(int64_t N, int64_t D, const float* x, float eps, float* y, float* norms);
void l2norm_backward(int64_t N, int64_t D, const float* dy, const float* x, const float* norms, float eps, float* dx);
void softmax_forward(int64_t N, int64_t D, const float* x, bool log, float* y);
void softmax_backward(int64_t N, int64_t D, const float* dy, const float* y, bool log, float* dx);
void cross_entropy_forward(int64_t N, int64_t D, const float* logits, const int32_t* targets, float* loss,
                           float* probs);
void cross_entropy_backward(int64_t N, int64_t D, const float* probs, const int32_t* targets, const float* dloss,
                            float* dlogits);

// ntxent.cc
void ntxent_forward(int64_t N2, int64_t D, const float* x, float temperature, float* loss, float* save_z,
                    float* save_norms, float* save_p);
void ntxent_backward(int64_t N2, int64_t D, const float* dloss, const float* x, const float* save_z,
                     const float* save_norms, const float* save_p, float temperature, float* dx);

// grid_sample.cc
void affine_grid_forward(int64_t N, int64_t H, int64_t W, const float* theta, float* grid);
void affine_grid_backward(int64_t N, int64_t H, int64_t W, const float* dgrid, float* dtheta);
void grid_sample_forward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* x,
                         const float* grid, float* y);
void grid_sample_backward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW, const float* dy,
                          const float* x, const float* grid, float* dx, float* dgrid);

// conv_const.cc: the constant (code) channels of a stride-1 'same' conv
void conv2d_code_channels(bool backward, const Conv2dParams& p, int64_t Kc, const float* code, const float* w,
                          const float* dy, float* y, float* dw, float* dcode);

// adam.cc
void adam_step(const AdamTensor* ts, size_t count, double lr, double beta1, double beta2, double eps,
               double weight_decay);

}  // namespace c3::cpu
