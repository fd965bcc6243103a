// Shape checks, output allocation and dispatch for every op. Kernels trust what passes here.
#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <unordered_map>

namespace c3::ops {

namespace {

void need_defined(const Tensor& t, const char* op, const char* arg) {
  check(t.defined(), op, "argument '", arg, "' is not a tensor");
}

void same_device(const Tensor& a, const Tensor& b, const char* op) {
  check(a.device() == b.device(), op, "tensors on different devices (", device_name(a.device()), " ",
        shape_str(a.shape), " and ", device_name(b.device()), " ", shape_str(b.shape), ")");
}

// whether the two tensors' elements share memory (handles on one storage, or views into it)
bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0) return false;
  const float *a0 = a.data(), *b0 = b.data();
  return a0 < b0 + b.numel() && b0 < a0 + a.numel();
}

// a LeakyReLU fused into an op takes its gradient from the output, which needs slope >= 0
void need_leaky_slope(float slope, const char* op) {
  check(std::isfinite(slope) && slope >= 0.0f, op, "the LeakyReLU slope must be finite and >= 0, got ", slope);
}

void need_rank(const Tensor& t, int rank, const char* op, const char* arg) {
  check(t.ndim() == rank, op, "'", arg, "' must have rank ", rank, ", got shape ", shape_str(t.shape));
}

void need_finite(float v, const char* op, const char* arg) {
  check(std::isfinite(v), op, "'", arg, "' must be finite, got ", v);
}

int norm_dim(int dim, int ndim, const char* op, const Shape& s) {
  int d = dim < 0 ? dim + ndim : dim;
  check(d >= 0 && d < ndim, op, "dim ", dim, " out of range for shape ", shape_str(s));
  return d;
}

int64_t prod(const Shape& s, int from, int to) {
  int64_t n = 1;
  for (int i = from; i < to; ++i) n *= s[i];
  return n;
}

// Broadcast `in` (right-aligned) into `out`; strides of `in` laid over out's dims, 0 where broadcast.
bool broadcast_strides(const Shape& in, const Shape& out, int64_t* strides) {
  int off = static_cast<int>(out.size() - in.size());
  if (off < 0) return false;
  int64_t st = 1;
  for (int i = static_cast<int>(out.size()) - 1; i >= 0; --i) {
    int j = i - off;
    if (j < 0) {
      strides[i] = 0;
      continue;
    }
    if (in[j] == out[i]) {
      strides[i] = out[i] == 1 ? 0 : st;
    } else if (in[j] == 1) {
      strides[i] = 0;
    } else {
      return false;
    }
    st *= in[j];
  }
  return true;
}

void fill_index_shape(BroadcastIndex& idx, const Shape& s) {
  idx.ndim = static_cast<int>(s.size());
  for (int i = 0; i < kMaxDims; ++i) idx.shape[i] = i < idx.ndim ? s[i] : 1, idx.stride_a[i] = 0, idx.stride_b[i] = 0;
}

}  // namespace

// ---- creation and copies ----

Tensor empty(Device d, const Shape& s) { return Tensor(d, s, "empty"); }

Tensor full(Device d, const Shape& s, float v) {
  Tensor t(d, s, "full");
  t.be().fill(t.data(), t.numel(), v);
  return t;
}

Tensor from_host(Device d, const Shape& s, const float* host, size_t n) {
  int64_t want = shape_numel(s, "fromArray");
  check(static_cast<int64_t>(n) == want, "fromArray", "data has ", n, " elements but shape ", shape_str(s),
        " needs ", want);
  Tensor t(d, s, "fromArray");
  if (n) t.be().upload(t.data(), host, n);
  return t;
}

void to_host(const Tensor& t, float* host, size_t n) {
  need_defined(t, "toArray", "tensor");
  check(static_cast<int64_t>(n) == t.numel(), "toArray", "buffer of ", n, " for ", shape_str(t.shape));
  t.be().synchronize();
  if (n) t.be().download(host, t.data(), n);
}

Tensor to_device(const Tensor& t, Device d) {
  need_defined(t, "toDevice", "tensor");
  if (t.device() == d) return clone(t);
  std::vector<float> host(t.numel());
  to_host(t, host.data(), host.size());
  return from_host(d, t.shape, host.data(), host.size());
}

Tensor clone(const Tensor& t) {
  need_defined(t, "clone", "tensor");
  Tensor y(t.device(), t.shape, "clone");
  t.be().copy(y.data(), t.data(), t.numel());
  return y;
}

Tensor reshape(const Tensor& t, const Shape& s) {
  need_defined(t, "reshape", "tensor");
  Shape out = s;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      check(infer < 0, "reshape", "more than one -1 in shape ", shape_str(s));
      infer = static_cast<int>(i);
    } else {
      check(out[i] >= 0, "reshape", "negative dimension in shape ", shape_str(s));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    check(known > 0 && t.numel() % known == 0, "reshape", "cannot reshape ", shape_str(t.shape), " to ",
          shape_str(s));
    out[infer] = t.numel() / known;
  }
  check(shape_numel(out, "reshape") == t.numel(), "reshape", "cannot reshape ", shape_str(t.shape), " (",
        t.numel(), " elements) to ", shape_str(s));
  check(out.size() <= static_cast<size_t>(kMaxDims), "reshape", "rank above ", kMaxDims);
  Tensor y;
  y.shape = out;
  y.storage = t.storage;
  return y;
}

void fill_(Tensor& t, float v) {
  need_defined(t, "fill", "tensor");
  t.be().fill(t.data(), t.numel(), v);
}

void copy_(Tensor& dst, const Tensor& src) {
  need_defined(dst, "copy", "dst");
  need_defined(src, "copy", "src");
  same_device(dst, src, "copy");
  check(dst.numel() == src.numel(), "copy", "sizes differ: ", shape_str(dst.shape), " and ", shape_str(src.shape));
  if (dst.data() != src.data()) dst.be().copy(dst.data(), src.data(), src.numel());
}

namespace {

// No source may overlap a destination, nor two destinations each other (one destination is one
// pass; two that partly coincide would race on a device); sources may share memory. A sweep over
// the ranges sorted by start: a call holds a backward pass's parameters, so no quadratic check.
// first[k]: the first pair naming sums[k]'s destination (for the message)
void check_sum_overlaps(const std::vector<SumInto>& sums, const std::vector<size_t>& first,
                        const std::vector<const Tensor*>& srcs, const char* op) {
  struct Range {
    const float *begin, *end;
    bool dst;
    size_t index;  // the pair
  };
  std::vector<Range> rs;
  rs.reserve(sums.size() + srcs.size());
  for (size_t k = 0; k < sums.size(); ++k)
    if (sums[k].n) rs.push_back({sums[k].dst, sums[k].dst + sums[k].n, true, first[k]});
  for (size_t i = 0; i < srcs.size(); ++i)
    if (srcs[i]->numel()) rs.push_back({srcs[i]->data(), srcs[i]->data() + srcs[i]->numel(), false, i});
  std::sort(rs.begin(), rs.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.dst > b.dst;  // a destination first: one message
  });
  const Range* last_dst = nullptr;  // the destination reaching furthest so far
  const Range* last_any = nullptr;  // the range reaching furthest so far
  const auto name = [&](const Range& r) {
    return (r.dst ? "destination " : "source ") + std::to_string(r.index);
  };
  for (const Range& r : rs) {
    const Range* hit = last_dst && r.begin < last_dst->end ? last_dst
                       : r.dst && last_any && r.begin < last_any->end ? last_any
                                                                       : nullptr;
    check(!hit, op, name(r), " shares memory with ", hit ? name(*hit) : "");
    if (r.dst && (!last_dst || r.end > last_dst->end)) last_dst = &r;
    if (!last_any || r.end > last_any->end) last_any = &r;
  }
}

}  // namespace

void add_into_(const std::vector<Tensor*>& dsts, const std::vector<const Tensor*>& srcs) {
  const char* op = "add_into";
  check(dsts.size() == srcs.size(), op, dsts.size(), " destinations for ", srcs.size(), " sources");
  if (dsts.empty()) return;
  // group the pairs by destination storage, keeping each destination's sources in call order
  std::vector<SumInto> sums;
  std::vector<std::vector<const float*>> lists;
  std::vector<size_t> first;
  std::unordered_map<const float*, size_t> group;  // destination storage -> its index in sums
  for (size_t i = 0; i < dsts.size(); ++i) {
    Tensor& y = *dsts[i];
    const Tensor& x = *srcs[i];
    need_defined(y, op, "destination");
    need_defined(x, op, "source");
    same_device(*dsts[0], y, op);
    same_device(y, x, op);
    check(y.shape == x.shape, op, "pair ", i, ": shapes differ: ", shape_str(y.shape), " and ", shape_str(x.shape));
    const size_t k = group.emplace(y.data(), sums.size()).first->second;
    if (k == sums.size()) {
      sums.push_back({y.data(), nullptr, 0, static_cast<size_t>(y.numel())});
      lists.emplace_back();
      first.push_back(i);
    } else {
      check(sums[k].n == static_cast<size_t>(y.numel()), op, "pair ", i, ": a destination seen with ", sums[k].n,
            " elements now has ", y.numel());
    }
    lists[k].push_back(x.data());
  }
  check_sum_overlaps(sums, first, srcs, op);
  for (size_t k = 0; k < sums.size(); ++k) {
    sums[k].srcs = lists[k].data();
    sums[k].count = lists[k].size();
  }
  dsts[0]->be().sum_into(sums.data(), sums.size());
}

void axpy_(Tensor& y, float alpha, const Tensor& x) {
  need_defined(y, "axpy", "y");
  need_defined(x, "axpy", "x");
  same_device(y, x, "axpy");
  check(y.shape == x.shape, "axpy", "shapes differ: ", shape_str(y.shape), " and ", shape_str(x.shape));
  need_finite(alpha, "axpy", "alpha");
  y.be().axpy(y.numel(), alpha, x.data(), y.data());
}

Tensor randn(Device d, const Shape& s, Generator& g, float mean, float std) {
  need_finite(mean, "randn", "mean");
  need_finite(std, "randn", "std");
  check(std >= 0, "randn", "std must be >= 0, got ", std);
  Tensor t(d, s, "randn");
  t.be().rand_normal(t.data(), t.numel(), g.key, g.take(t.numel()), mean, std);
  return t;
}

Tensor rand(Device d, const Shape& s, Generator& g, float lo, float hi) {
  need_finite(lo, "rand", "lo");
  need_finite(hi, "rand", "hi");
  check(lo <= hi, "rand", "lo (", lo, ") must not exceed hi (", hi, ")");
  Tensor t(d, s, "rand");
  t.be().rand_uniform(t.data(), t.numel(), g.key, g.take(t.numel()), lo, hi);
  return t;
}

// ---- elementwise ----

Tensor affine(const Tensor& x, float scale, float shift) {
  need_defined(x, "affine", "x");
  need_finite(scale, "affine", "scale");
  need_finite(shift, "affine", "shift");
  Tensor y(x.device(), x.shape, "affine");
  x.be().affine(x.numel(), x.data(), scale, shift, y.data());
  return y;
}

void affine_(Tensor& x, float scale, float shift) {
  need_defined(x, "affine_", "x");
  need_finite(scale, "affine_", "scale");
  need_finite(shift, "affine_", "shift");
  x.be().affine(x.numel(), x.data(), scale, shift, x.data());  // both backends' affine allow y == x
}

Tensor unary(UnaryOp op, const Tensor& x, float alpha) {
  need_defined(x, "unary", "x");
  need_finite(alpha, "unary", "alpha");
  Tensor y(x.device(), x.shape, "unary");
  x.be().unary_forward(op, x.numel(), x.data(), alpha, y.data());
  return y;
}

Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y, float alpha) {
  need_defined(dy, "unary_backward", "dy");
  need_defined(x, "unary_backward", "x");
  need_defined(y, "unary_backward", "y");
  check(dy.shape == x.shape && y.shape == x.shape, "unary_backward", "shapes differ: dy ", shape_str(dy.shape),
        ", x ", shape_str(x.shape), ", y ", shape_str(y.shape));
  same_device(dy, x, "unary_backward");
  Tensor dx(x.device(), x.shape, "unary_backward");
  x.be().unary_backward(op, x.numel(), dy.data(), x.data(), y.data(), alpha, dx.data());
  return dx;
}

static Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    check(da == db || da == 1 || db == 1, op, "shapes ", shape_str(a), " and ", shape_str(b),
          " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  check(n <= static_cast<size_t>(kMaxDims), op, "rank above ", kMaxDims);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  need_defined(a, "binary", "a");
  need_defined(b, "binary", "b");
  same_device(a, b, "binary");
  Shape out = broadcast_shape(a.shape, b.shape, "binary");
  BroadcastIndex idx;
  fill_index_shape(idx, out);
  broadcast_strides(a.shape, out, idx.stride_a);
  broadcast_strides(b.shape, out, idx.stride_b);
  Tensor y(a.device(), out, "binary");
  a.be().binary_forward(op, idx, a.data(), b.data(), y.data());
  return y;
}

Tensor expand(const Tensor& x, const Shape& s) {
  need_defined(x, "expand", "x");
  check(s.size() <= static_cast<size_t>(kMaxDims), "expand", "rank above ", kMaxDims);
  BroadcastIndex idx;
  fill_index_shape(idx, s);
  check(broadcast_strides(x.shape, s, idx.stride_a), "expand", "cannot broadcast ", shape_str(x.shape), " to ",
        shape_str(s));
  Tensor y(x.device(), s, "expand");
  x.be().expand(idx, x.data(), y.data());
  return y;
}

Tensor sum_to(const Tensor& x, const Shape& s) {
  need_defined(x, "sum_to", "x");
  BroadcastIndex idx;
  fill_index_shape(idx, x.shape);
  check(broadcast_strides(s, x.shape, idx.stride_a), "sum_to", "cannot reduce ", shape_str(x.shape), " to ",
        shape_str(s));
  Tensor y(x.device(), s, "sum_to");
  x.be().sum_to(idx, x.data(), y.data(), y.numel());
  return y;
}

Shape reduced_shape(const Shape& s, const std::vector<int>& dims) {
  Shape out = s;
  if (dims.empty()) {
    for (auto& d : out) d = 1;
    return out;
  }
  for (int d : dims) out[norm_dim(d, static_cast<int>(s.size()), "sum", s)] = 1;
  return out;
}

Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  need_defined(x, "sum", "x");
  Shape kept = reduced_shape(x.shape, dims);
  Tensor y = sum_to(x, kept);
  if (keepdim) return y;
  Shape squeezed;
  std::vector<bool> gone(x.shape.size(), dims.empty());
  for (int d : dims) gone[norm_dim(d, x.ndim(), "sum", x.shape)] = true;
  for (size_t i = 0; i < x.shape.size(); ++i)
    if (!gone[i]) squeezed.push_back(x.shape[i]);
  return reshape(y, squeezed);
}

// ---- layers ----

Conv2dParams conv2d_params(const Shape& x, const Shape& w, int64_t stride, int64_t pad, const char* op) {
  check(x.size() == 4, op, "input must be (N, C, H, W), got ", shape_str(x));
  check(w.size() == 4, op, "weight must be (K, C, R, S), got ", shape_str(w));
  check(stride >= 1 && stride <= 1024, op, "stride must be in 1..1024, got ", stride);
  check(pad >= 0 && pad <= 1024, op, "padding must be in 0..1024, got ", pad);
  check(x[1] == w[1], op, "input has ", x[1], " channels but weight expects ", w[1], " (input ", shape_str(x),
        ", weight ", shape_str(w), ")");
  Conv2dParams p{x[0], x[1], x[2], x[3], w[0], w[2], w[3], 0, 0, stride, pad};
  check(p.R >= 1 && p.S >= 1, op, "empty kernel in weight ", shape_str(w));
  check(p.H + 2 * pad >= p.R && p.W + 2 * pad >= p.S, op, "kernel ", p.R, "x", p.S, " larger than padded input ",
        shape_str(x), " with padding ", pad);
  p.OH = (p.H + 2 * pad - p.R) / stride + 1;
  p.OW = (p.W + 2 * pad - p.S) / stride + 1;
  return p;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, int64_t stride, int64_t pad, Tensor* moments,
              std::optional<float> leaky_slope) {
  need_defined(x, "conv2d", "input");
  need_defined(w, "conv2d", "weight");
  same_device(x, w, "conv2d");
  Conv2dParams p = conv2d_params(x.shape, w.shape, stride, pad, "conv2d");
  if (bias) {
    need_defined(*bias, "conv2d", "bias");
    same_device(x, *bias, "conv2d");
    check(bias->ndim() == 1 && bias->dim(0) == p.K, "conv2d", "bias must be (", p.K, "), got ",
          shape_str(bias->shape));
  }
  Tensor y(x.device(), {p.N, p.K, p.OH, p.OW}, "conv2d");
  if (leaky_slope) {
    check(!moments, "conv2d", "a LeakyReLU and the moments together are not supported");
    need_leaky_slope(*leaky_slope, "conv2d");
    x.be().conv2d_forward_leaky(p, x.data(), w.data(), bias ? bias->data() : nullptr, *leaky_slope, y.data());
    return y;
  }
  if (moments) *moments = Tensor(x.device(), {p.K, 2}, "conv2d");
  x.be().conv2d_forward(p, x.data(), w.data(), bias ? bias->data() : nullptr, y.data(),
                        moments ? moments->data() : nullptr);
  return y;
}

namespace {

Conv2dParams check_conv_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape, int64_t stride,
                                      int64_t pad, const char* op) {
  need_defined(dy, op, "dy");
  need_defined(w, op, "weight");
  same_device(dy, w, op);
  Conv2dParams p = conv2d_params(x_shape, w.shape, stride, pad, op);
  check(dy.shape == Shape({p.N, p.K, p.OH, p.OW}), op, "dy ", shape_str(dy.shape), " does not match the output shape ",
        shape_str({p.N, p.K, p.OH, p.OW}));
  return p;
}

}  // namespace

Tensor conv2d_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape, int64_t stride, int64_t pad) {
  const Conv2dParams p = check_conv_backward_data(dy, w, x_shape, stride, pad, "conv2d_backward_data");
  Tensor dx(dy.device(), x_shape, "conv2d_backward_data");
  dy.be().conv2d_backward_data(p, dy.data(), w.data(), dx.data());
  return dx;
}

void conv2d_backward_data_add_(Tensor& dx, const Tensor& dy, const Tensor& w, int64_t stride, int64_t pad) {
  const char* op = "conv2d_backward_data (adding into a gradient)";
  need_defined(dx, op, "into");
  const Conv2dParams p = check_conv_backward_data(dy, w, dx.shape, stride, pad, op);
  same_device(dx, dy, op);
  check(!overlaps(dx, dy) && !overlaps(dx, w), op, "the gradient to add into shares memory with ",
        overlaps(dx, dy) ? "dy" : "the weight");
  dy.be().conv2d_backward_data_accumulate(p, dy.data(), w.data(), dx.data());
}

Tensor conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& w_shape, int64_t stride, int64_t pad) {
  need_defined(dy, "conv2d_backward_weight", "dy");
  need_defined(x, "conv2d_backward_weight", "input");
  same_device(dy, x, "conv2d_backward_weight");
  Conv2dParams p = conv2d_params(x.shape, w_shape, stride, pad, "conv2d_backward_weight");
  check(dy.shape == Shape({p.N, p.K, p.OH, p.OW}), "conv2d_backward_weight", "dy ", shape_str(dy.shape),
        " does not match the output shape ", shape_str({p.N, p.K, p.OH, p.OW}));
  Tensor dw(dy.device(), w_shape, "conv2d_backward_weight");
  dy.be().conv2d_backward_weight(p, dy.data(), x.data(), dw.data());
  return dw;
}

// The conv2d of x upsampled 2x (nearest): a 3x3 kernel, stride 1, padding 1; p is that conv on
// x's own size (backend.h conv2d_up_*), y is (N, K, 2H, 2W).
static Conv2dParams conv2d_up_params(const Shape& x, const Shape& w, const char* op) {
  check(w.size() == 4 && w[2] == 3 && w[3] == 3, op, "weight must be (K, C, 3, 3), got ", shape_str(w));
  return conv2d_params(x, w, 1, 1, op);
}

Tensor conv2d_up(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* moments) {
  const char* op = "conv2d_up";
  need_defined(x, op, "input");
  need_defined(w, op, "weight");
  same_device(x, w, op);
  const Conv2dParams p = conv2d_up_params(x.shape, w.shape, op);
  if (bias) {
    need_defined(*bias, op, "bias");
    same_device(x, *bias, op);
    check(bias->ndim() == 1 && bias->dim(0) == p.K, op, "bias must be (", p.K, "), got ", shape_str(bias->shape));
  }
  Tensor y(x.device(), {p.N, p.K, 2 * p.H, 2 * p.W}, op);
  if (moments) *moments = Tensor(x.device(), {p.K, 2}, op);
  x.be().conv2d_up_forward(p, x.data(), w.data(), bias ? bias->data() : nullptr, y.data(),
                           moments ? moments->data() : nullptr);
  return y;
}

Tensor conv2d_up_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape) {
  const char* op = "conv2d_up_backward_data";
  need_defined(dy, op, "dy");
  need_defined(w, op, "weight");
  same_device(dy, w, op);
  const Conv2dParams p = conv2d_up_params(x_shape, w.shape, op);
  check(dy.shape == Shape({p.N, p.K, 2 * p.H, 2 * p.W}), op, "dy ", shape_str(dy.shape),
        " does not match the output shape ", shape_str({p.N, p.K, 2 * p.H, 2 * p.W}));
  Tensor dx(dy.device(), x_shape, op);
  dy.be().conv2d_up_backward_data(p, dy.data(), w.data(), dx.data());
  return dx;
}

Tensor conv2d_up_backward_weight(const Tensor& dy, const Tensor& x, const Shape& w_shape) {
  const char* op = "conv2d_up_backward_weight";
  need_defined(dy, op, "dy");
  need_defined(x, op, "input");
  same_device(dy, x, op);
  const Conv2dParams p = conv2d_up_params(x.shape, w_shape, op);
  check(dy.shape == Shape({p.N, p.K, 2 * p.H, 2 * p.W}), op, "dy ", shape_str(dy.shape),
        " does not match the output shape ", shape_str({p.N, p.K, 2 * p.H, 2 * p.W}));
  Tensor dw(dy.device(), w_shape, op);
  dy.be().conv2d_up_backward_weight(p, dy.data(), x.data(), dw.data());
  return dw;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  need_defined(x, "linear", "input");
  need_defined(w, "linear", "weight");
  same_device(x, w, "linear");
  need_rank(x, 2, "linear", "input");
  need_rank(w, 2, "linear", "weight");
  check(x.dim(1) == w.dim(1), "linear", "input has ", x.dim(1), " features but weight ", shape_str(w.shape),
        " expects ", w.dim(1));
  int64_t M = x.dim(0), K = x.dim(1), N = w.dim(0);
  Tensor y(x.device(), {M, N}, "linear");
  if (bias) {
    need_defined(*bias, "linear", "bias");
    check(bias->ndim() == 1 && bias->dim(0) == N, "linear", "bias must be (", N, "), got ", shape_str(bias->shape));
    BroadcastIndex idx;
    fill_index_shape(idx, {M, N});
    idx.stride_a[0] = 0;
    idx.stride_a[1] = 1;
    x.be().expand(idx, bias->data(), y.data());
    x.be().gemm(false, true, M, N, K, 1.0f, x.data(), w.data(), 1.0f, y.data());
  } else {
    x.be().gemm(false, true, M, N, K, 1.0f, x.data(), w.data(), 0.0f, y.data());
  }
  return y;
}

Tensor linear_backward_data(const Tensor& dy, const Tensor& w) {
  need_defined(dy, "linear_backward_data", "dy");
  need_defined(w, "linear_backward_data", "weight");
  need_rank(dy, 2, "linear_backward_data", "dy");
  need_rank(w, 2, "linear_backward_data", "weight");
  check(dy.dim(1) == w.dim(0), "linear_backward_data", "dy ", shape_str(dy.shape), " vs weight ",
        shape_str(w.shape));
  Tensor dx(dy.device(), {dy.dim(0), w.dim(1)}, "linear_backward_data");
  dy.be().gemm(false, false, dy.dim(0), w.dim(1), w.dim(0), 1.0f, dy.data(), w.data(), 0.0f, dx.data());
  return dx;
}

Tensor linear_backward_weight(const Tensor& dy, const Tensor& x) {
  need_defined(dy, "linear_backward_weight", "dy");
  need_defined(x, "linear_backward_weight", "input");
  need_rank(dy, 2, "linear_backward_weight", "dy");
  need_rank(x, 2, "linear_backward_weight", "input");
  check(dy.dim(0) == x.dim(0), "linear_backward_weight", "dy ", shape_str(dy.shape), " vs input ",
        shape_str(x.shape));
  Tensor dw(dy.device(), {dy.dim(1), x.dim(1)}, "linear_backward_weight");
  dy.be().gemm(true, false, dy.dim(1), x.dim(1), dy.dim(0), 1.0f, dy.data(), x.data(), 0.0f, dw.data());
  return dw;
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  need_defined(a, "matmul", "a");
  need_defined(b, "matmul", "b");
  same_device(a, b, "matmul");
  need_rank(a, 2, "matmul", "a");
  need_rank(b, 2, "matmul", "b");
  int64_t M = trans_a ? a.dim(1) : a.dim(0), K = trans_a ? a.dim(0) : a.dim(1);
  int64_t K2 = trans_b ? b.dim(1) : b.dim(0), N = trans_b ? b.dim(0) : b.dim(1);
  check(K == K2, "matmul", "inner sizes differ: ", shape_str(a.shape), (trans_a ? "^T" : ""), " x ",
        shape_str(b.shape), (trans_b ? "^T" : ""));
  Tensor c(a.device(), {M, N}, "matmul");
  a.be().gemm(trans_a, trans_b, M, N, K, 1.0f, a.data(), b.data(), 0.0f, c.data());
  return c;
}

static void bn_dims(const Tensor& x, const char* op, int64_t& N, int64_t& C, int64_t& HW) {
  check(x.ndim() == 2 || x.ndim() == 4, op, "input must be (N, C) or (N, C, H, W), got ", shape_str(x.shape));
  N = x.dim(0);
  C = x.dim(1);
  HW = x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1;
}

static void need_vec(const Tensor& t, int64_t C, const char* op, const char* arg) {
  need_defined(t, op, arg);
  check(t.ndim() == 1 && t.dim(0) == C, op, "'", arg, "' must be (", C, "), got ", shape_str(t.shape));
}

// The arguments of a batch-norm forward (op names the caller in errors); N, C, HW out.
static void check_batchnorm(const char* op, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, bool training, float momentum,
                            float eps, int64_t& N, int64_t& C, int64_t& HW) {
  need_defined(x, op, "input");
  bn_dims(x, op, N, C, HW);
  need_vec(gamma, C, op, "weight");
  need_vec(beta, C, op, "bias");
  need_vec(running_mean, C, op, "running_mean");
  need_vec(running_var, C, op, "running_var");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&gamma, &beta, &running_mean, &running_var}) same_device(x, *t, op);
  check(std::isfinite(momentum) && momentum >= 0 && momentum <= 1, op, "momentum must be in [0, 1], got ", momentum);
  check(std::isfinite(eps) && eps > 0, op, "eps must be positive and finite, got ", eps);
  if (training)
    check(N * HW > 1, op, "training needs more than one value per channel, got input ", shape_str(x.shape));
}

// Moments handed to a batch norm in training: (C, 2) on x's device, from the conv that made x.
static const float* given_moments(const char* op, const Tensor& x, int64_t C, bool training, const Tensor* moments) {
  if (!moments) return nullptr;
  need_defined(*moments, op, "moments");
  same_device(x, *moments, op);
  check(moments->shape == Shape({C, 2}), op, "moments must be (", C, ", 2) (mean and variance per channel), got ",
        shape_str(moments->shape));
  check(training, op, "moments are batch statistics: they apply in training only");
  return moments->data();
}

// What backward needs in eval mode: the running mean and 1/sqrt(running var + eps).
static void eval_statistics(const Backend& be, Device device, int64_t C, const Tensor& running_mean,
                            const Tensor& running_var, float eps, Tensor& save_mean, Tensor& save_invstd) {
  be.copy(save_mean.data(), running_mean.data(), C);
  be.affine(C, running_var.data(), 1.0f, eps, save_invstd.data());
  be.unary_forward(UnaryOp::Sqrt, C, save_invstd.data(), 0.0f, save_invstd.data());
  Tensor one = full(device, {C}, 1.0f);
  BroadcastIndex idx;
  fill_index_shape(idx, {C});
  idx.stride_a[0] = 1;
  idx.stride_b[0] = 1;
  be.binary_forward(BinaryOp::Div, idx, one.data(), save_invstd.data(), save_invstd.data());
}

BatchNormOut batchnorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                               Tensor& running_var, bool training, float momentum, float eps,
                               const Tensor* moments, const Tensor* residual, std::optional<float> leaky_slope) {
  const char* op = "batch_norm";
  int64_t N, C, HW;
  check_batchnorm(op, x, gamma, beta, running_mean, running_var, training, momentum, eps, N, C, HW);
  const float* given = given_moments(op, x, C, training, moments);
  BnEpilogue epi;
  if (residual) {
    need_defined(*residual, op, "residual");
    check(residual->shape == x.shape, op, "residual ", shape_str(residual->shape), " does not match the input ",
          shape_str(x.shape));
    same_device(x, *residual, op);
    epi.residual = residual->data();
  }
  if (leaky_slope) {
    need_leaky_slope(*leaky_slope, op);
    epi.leaky = true;
    epi.slope = *leaky_slope;
  }
  BatchNormOut out{Tensor(x.device(), x.shape, op), Tensor(x.device(), {C}, op), Tensor(x.device(), {C}, op)};
  const Backend& be = x.be();
  if (training) {
    be.batchnorm_forward_train(N, C, HW, x.data(), gamma.data(), beta.data(), running_mean.data(),
                               running_var.data(), momentum, eps, out.y.data(), out.save_mean.data(),
                               out.save_invstd.data(), given, epi);
  } else {
    be.batchnorm_forward_eval(N, C, HW, x.data(), gamma.data(), beta.data(), running_mean.data(), running_var.data(),
                              eps, out.y.data(), epi);
    eval_statistics(be, x.device(), C, running_mean, running_var, eps, out.save_mean, out.save_invstd);
  }
  return out;
}

BatchNormOut batchnorm_glu_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                                   Tensor& running_var, bool training, float momentum, float eps,
                                   const Tensor* moments) {
  const char* op = "batch_norm_glu";
  int64_t N, C, HW;
  check_batchnorm(op, x, gamma, beta, running_mean, running_var, training, momentum, eps, N, C, HW);
  check(C % 2 == 0, op, "the GLU halves the channels: dim 1 of ", shape_str(x.shape), " must be even");
  const float* given = given_moments(op, x, C, training, moments);
  Shape out_shape = x.shape;
  out_shape[1] /= 2;
  BatchNormOut out{Tensor(x.device(), out_shape, op), Tensor(x.device(), {C}, op), Tensor(x.device(), {C}, op)};
  const Backend& be = x.be();
  if (training) {
    be.bn_glu_forward_train(N, C / 2, HW, x.data(), gamma.data(), beta.data(), running_mean.data(),
                            running_var.data(), momentum, eps, given, out.y.data(), out.save_mean.data(),
                            out.save_invstd.data());
    return out;
  }
  eval_statistics(be, x.device(), C, running_mean, running_var, eps, out.save_mean, out.save_invstd);
  be.bn_glu_forward(N, C / 2, HW, x.data(), gamma.data(), beta.data(), out.save_mean.data(), out.save_invstd.data(),
                    out.y.data());
  return out;
}

BatchNormGrads batchnorm_glu_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& save_mean, const Tensor& save_invstd, bool training) {
  const char* op = "batch_norm_glu_backward";
  need_defined(dy, op, "dy");
  need_defined(x, op, "input");
  int64_t N, C, HW;
  bn_dims(x, op, N, C, HW);
  check(C % 2 == 0, op, "dim 1 of the input ", shape_str(x.shape), " must be even");
  Shape half_shape = x.shape;
  half_shape[1] /= 2;
  check(dy.shape == half_shape, op, "dy ", shape_str(dy.shape), " does not match the output ", shape_str(half_shape));
  need_vec(gamma, C, op, "weight");
  need_vec(beta, C, op, "bias");
  need_vec(save_mean, C, op, "save_mean");
  need_vec(save_invstd, C, op, "save_invstd");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dy, &gamma, &beta, &save_mean, &save_invstd}) same_device(x, *t, op);
  const Backend& be = x.be();
  // the gradient at the normalised values, then batch norm's backward from it
  BatchNormGrads g{Tensor(x.device(), x.shape, op), Tensor(x.device(), {C}, op), Tensor(x.device(), {C}, op)};
  be.bn_glu_batchnorm_backward(N, C / 2, HW, training, dy.data(), x.data(), gamma.data(), beta.data(),
                               save_mean.data(), save_invstd.data(), g.dx.data(), g.dgamma.data(), g.dbeta.data());
  return g;
}

// The arguments batch norm's backward passes share: dy of x's shape, the per-channel vectors, one device
static void check_bn_backward(const char* op, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd, int64_t& N, int64_t& C,
                              int64_t& HW) {
  need_defined(dy, op, "dy");
  need_defined(x, op, "input");
  bn_dims(x, op, N, C, HW);
  check(dy.shape == x.shape, op, "dy ", shape_str(dy.shape), " does not match input ", shape_str(x.shape));
  need_vec(gamma, C, op, "weight");
  need_vec(save_mean, C, op, "save_mean");
  need_vec(save_invstd, C, op, "save_invstd");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dy, &gamma, &save_mean, &save_invstd})
    same_device(x, *t, op);
}

BatchNormGrads batchnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                                  const Tensor& save_invstd, bool training) {
  const char* op = "batch_norm_backward";
  int64_t N, C, HW;
  check_bn_backward(op, dy, x, gamma, save_mean, save_invstd, N, C, HW);
  BatchNormGrads g{Tensor(x.device(), x.shape, op), Tensor(x.device(), {C}, op), Tensor(x.device(), {C}, op)};
  x.be().batchnorm_backward(N, C, HW, training, dy.data(), x.data(), gamma.data(), save_mean.data(),
                            save_invstd.data(), g.dx.data(), g.dgamma.data(), g.dbeta.data());
  return g;
}

BatchNormGrads batchnorm_leaky_backward(const Tensor& dy, const Tensor& y, float slope, const Tensor& x,
                                        const Tensor& gamma, const Tensor& save_mean, const Tensor& save_invstd,
                                        bool training) {
  const char* op = "batch_norm_leaky_backward";
  int64_t N, C, HW;
  check_bn_backward(op, dy, x, gamma, save_mean, save_invstd, N, C, HW);
  need_defined(y, op, "output");
  check(y.shape == x.shape, op, "the output ", shape_str(y.shape), " does not match input ", shape_str(x.shape));
  same_device(x, y, op);
  need_leaky_slope(slope, op);
  BatchNormGrads g{Tensor(x.device(), x.shape, op), Tensor(x.device(), {C}, op), Tensor(x.device(), {C}, op)};
  x.be().batchnorm_leaky_backward(N, C, HW, training, slope, dy.data(), y.data(), x.data(), gamma.data(),
                                  save_mean.data(), save_invstd.data(), g.dx.data(), g.dgamma.data(), g.dbeta.data());
  return g;
}

Tensor glu(const Tensor& x, int dim) {
  need_defined(x, "glu", "input");
  int d = norm_dim(dim, x.ndim(), "glu", x.shape);
  check(x.shape[d] % 2 == 0, "glu", "dim ", dim, " of ", shape_str(x.shape), " must be even");
  Shape out = x.shape;
  out[d] /= 2;
  Tensor y(x.device(), out, "glu");
  x.be().glu_forward(prod(x.shape, 0, d), out[d], prod(x.shape, d + 1, x.ndim()), x.data(), y.data());
  return y;
}

Tensor glu_backward(const Tensor& dy, const Tensor& x, int dim) {
  need_defined(dy, "glu_backward", "dy");
  need_defined(x, "glu_backward", "input");
  int d = norm_dim(dim, x.ndim(), "glu_backward", x.shape);
  Shape out = x.shape;
  out[d] /= 2;
  check(x.shape[d] % 2 == 0 && dy.shape == out, "glu_backward", "dy ", shape_str(dy.shape), " does not match input ",
        shape_str(x.shape));
  Tensor dx(x.device(), x.shape, "glu_backward");
  x.be().glu_backward(prod(x.shape, 0, d), out[d], prod(x.shape, d + 1, x.ndim()), dy.data(), x.data(), dx.data());
  return dx;
}

Tensor upsample2x(const Tensor& x) {
  need_defined(x, "upsample2x", "input");
  need_rank(x, 4, "upsample2x", "input");
  Tensor y(x.device(), {x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)}, "upsample2x");
  x.be().upsample2x_forward(x.dim(0) * x.dim(1), x.dim(2), x.dim(3), x.data(), y.data());
  return y;
}

Tensor upsample2x_backward(const Tensor& dy) {
  need_defined(dy, "upsample2x_backward", "dy");
  need_rank(dy, 4, "upsample2x_backward", "dy");
  check(dy.dim(2) % 2 == 0 && dy.dim(3) % 2 == 0, "upsample2x_backward", "dy spatial size must be even, got ",
        shape_str(dy.shape));
  Tensor dx(dy.device(), {dy.dim(0), dy.dim(1), dy.dim(2) / 2, dy.dim(3) / 2}, "upsample2x_backward");
  dy.be().upsample2x_backward(dx.dim(0) * dx.dim(1), dx.dim(2), dx.dim(3), dy.data(), dx.data());
  return dx;
}

Tensor concat(const std::vector<Tensor>& xs, int dim) {
  check(!xs.empty(), "concat", "no tensors to concatenate");
  for (const auto& t : xs) need_defined(t, "concat", "tensors");
  const Tensor& first = xs[0];
  int d = norm_dim(dim, first.ndim(), "concat", first.shape);
  Shape out = first.shape;
  out[d] = 0;
  for (const auto& t : xs) {
    same_device(first, t, "concat");
    bool ok = t.ndim() == first.ndim();
    for (int i = 0; ok && i < first.ndim(); ++i) ok = i == d || t.shape[i] == first.shape[i];
    check(ok, "concat", "shapes ", shape_str(first.shape), " and ", shape_str(t.shape), " differ outside dim ", dim);
    out[d] += t.shape[d];
  }
  Tensor y(first.device(), out, "concat");
  int64_t outer = prod(out, 0, d), inner = prod(out, d + 1, static_cast<int>(out.size()));
  int64_t off = 0;
  for (const auto& t : xs) {
    first.be().copy_block(outer, inner, t.shape[d], t.data(), t.shape[d], 0, y.data(), out[d], off);
    off += t.shape[d];
  }
  return y;
}

Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end) {
  need_defined(x, "slice", "input");
  int d = norm_dim(dim, x.ndim(), "slice", x.shape);
  check(start >= 0 && start <= end && end <= x.shape[d], "slice", "range [", start, ", ", end, ") out of bounds for dim ",
        dim, " of ", shape_str(x.shape));
  Shape out = x.shape;
  out[d] = end - start;
  Tensor y(x.device(), out, "slice");
  x.be().copy_block(prod(x.shape, 0, d), prod(x.shape, d + 1, x.ndim()), end - start, x.data(), x.shape[d], start,
                    y.data(), out[d], 0);
  return y;
}

Tensor slice_backward(const Tensor& dy, const Shape& x_shape, int dim, int64_t start) {
  need_defined(dy, "slice_backward", "dy");
  int d = norm_dim(dim, static_cast<int>(x_shape.size()), "slice_backward", x_shape);
  bool ok = dy.ndim() == static_cast<int>(x_shape.size()) && start >= 0 && start + dy.shape[d] <= x_shape[d];
  for (int i = 0; ok && i < dy.ndim(); ++i) ok = i == d || dy.shape[i] == x_shape[i];
  check(ok, "slice_backward", "dy ", shape_str(dy.shape), " does not fit ", shape_str(x_shape), " at ", start);
  Tensor dx = full(dy.device(), x_shape, 0.0f);
  dy.be().copy_block(prod(x_shape, 0, d), prod(x_shape, d + 1, dy.ndim()), dy.shape[d], dy.data(), dy.shape[d], 0,
                     dx.data(), x_shape[d], start);
  return dx;
}

L2NormOut l2normalize(const Tensor& x, float eps) {
  need_defined(x, "normalize", "input");
  need_rank(x, 2, "normalize", "input");
  check(std::isfinite(eps) && eps > 0, "normalize", "eps must be positive and finite, got ", eps);
  L2NormOut o{Tensor(x.device(), x.shape, "normalize"), Tensor(x.device(), {x.dim(0)}, "normalize")};
  x.be().l2norm_forward(x.dim(0), x.dim(1), x.data(), eps, o.y.data(), o.norms.data());
  return o;
}

Tensor l2normalize_backward(const Tensor& dy, const Tensor& x, const Tensor& norms, float eps) {
  need_defined(dy, "normalize_backward", "dy");
  need_defined(x, "normalize_backward", "input");
  need_rank(x, 2, "normalize_backward", "input");
  check(dy.shape == x.shape, "normalize_backward", "dy ", shape_str(dy.shape), " vs input ", shape_str(x.shape));
  need_vec(norms, x.dim(0), "normalize_backward", "norms");
  Tensor dx(x.device(), x.shape, "normalize_backward");
  x.be().l2norm_backward(x.dim(0), x.dim(1), dy.data(), x.data(), norms.data(), eps, dx.data());
  return dx;
}

Tensor softmax(const Tensor& x, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  need_defined(x, op, "input");
  need_rank(x, 2, op, "input");
  check(x.dim(1) > 0, op, "empty rows in ", shape_str(x.shape));
  Tensor y(x.device(), x.shape, op);
  x.be().softmax_forward(x.dim(0), x.dim(1), x.data(), log, y.data());
  return y;
}

Tensor softmax_backward(const Tensor& dy, const Tensor& y, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  need_defined(dy, op, "dy");
  need_defined(y, op, "y");
  need_rank(y, 2, op, "y");
  check(dy.shape == y.shape, op, "dy ", shape_str(dy.shape), " vs y ", shape_str(y.shape));
  Tensor dx(y.device(), y.shape, op);
  y.be().softmax_backward(y.dim(0), y.dim(1), dy.data(), y.data(), log, dx.data());
  return dx;
}

// Targets travel to the device as raw int32 words inside a float buffer of the same size.
static Tensor targets_on(Device d, const std::vector<int32_t>& targets) {
  Tensor t(d, {static_cast<int64_t>(targets.size())}, "cross_entropy");
  if (!targets.empty())
    t.be().upload(t.data(), reinterpret_cast<const float*>(targets.data()), targets.size());
  return t;
}

static void check_targets(const Tensor& logits, const std::vector<int32_t>& targets, const char* op) {
  check(static_cast<int64_t>(targets.size()) == logits.dim(0), op, targets.size(), " targets for logits ",
        shape_str(logits.shape));
  for (size_t i = 0; i < targets.size(); ++i)
    check(targets[i] >= 0 && targets[i] < logits.dim(1), op, "target ", targets[i], " at index ", i,
          " out of range [0, ", logits.dim(1), ")");
}

CrossEntropyOut cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets) {
  const char* op = "cross_entropy";
  need_defined(logits, op, "logits");
  need_rank(logits, 2, op, "logits");
  check(logits.dim(0) > 0, op, "empty batch");
  check_targets(logits, targets, op);
  Tensor t = targets_on(logits.device(), targets);
  CrossEntropyOut o{Tensor(logits.device(), {}, op), Tensor(logits.device(), logits.shape, op)};
  logits.be().cross_entropy_forward(logits.dim(0), logits.dim(1), logits.data(),
                                    reinterpret_cast<const int32_t*>(t.data()), o.loss.data(), o.probs.data());
  return o;
}

Tensor cross_entropy_backward(const Tensor& dloss, const Tensor& probs, const std::vector<int32_t>& targets) {
  const char* op = "cross_entropy_backward";
  need_defined(dloss, op, "dloss");
  need_defined(probs, op, "probs");
  need_rank(probs, 2, op, "probs");
  check(dloss.numel() == 1, op, "dloss must have one element, got ", shape_str(dloss.shape));
  check_targets(probs, targets, op);
  Tensor t = targets_on(probs.device(), targets);
  Tensor dx(probs.device(), probs.shape, op);
  probs.be().cross_entropy_backward(probs.dim(0), probs.dim(1), probs.data(),
                                    reinterpret_cast<const int32_t*>(t.data()), dloss.data(), dx.data());
  return dx;
}

NtXentOut ntxent(const Tensor& x, float temperature) {
  const char* op = "nt_xent";
  need_defined(x, op, "features");
  need_rank(x, 2, op, "features");
  check(x.dim(0) >= 2 && x.dim(0) % 2 == 0, op, "features must be (2N, D) with N >= 1, got ", shape_str(x.shape));
  check(std::isfinite(temperature) && temperature > 0, op, "temperature must be positive and finite, got ",
        temperature);
  int64_t n2 = x.dim(0);
  NtXentOut o{Tensor(x.device(), {}, op), Tensor(x.device(), x.shape, op), Tensor(x.device(), {n2}, op),
              Tensor(x.device(), {n2, n2}, op)};
  x.be().ntxent_forward(n2, x.dim(1), x.data(), temperature, o.loss.data(), o.z.data(), o.norms.data(), o.p.data());
  return o;
}

Tensor ntxent_backward(const Tensor& dloss, const Tensor& x, const NtXentOut& s, float temperature) {
  const char* op = "nt_xent_backward";
  need_defined(dloss, op, "dloss");
  need_defined(x, op, "features");
  need_rank(x, 2, op, "features");
  int64_t n2 = x.dim(0);
  check(dloss.numel() == 1, op, "dloss must have one element, got ", shape_str(dloss.shape));
  check(s.z.defined() && s.z.shape == x.shape && s.norms.defined() && s.norms.numel() == n2 && s.p.defined() &&
            s.p.shape == Shape({n2, n2}),
        op, "saved tensors do not match features ", shape_str(x.shape));
  check(std::isfinite(temperature) && temperature > 0, op, "temperature must be positive and finite");
  Tensor dx(x.device(), x.shape, op);
  x.be().ntxent_backward(n2, x.dim(1), dloss.data(), x.data(), s.z.data(), s.norms.data(), s.p.data(), temperature,
                         dx.data());
  return dx;
}

Tensor affine_grid(const Tensor& theta, int64_t H, int64_t W) {
  need_defined(theta, "affine_grid", "theta");
  check(theta.ndim() == 3 && theta.dim(1) == 2 && theta.dim(2) == 3, "affine_grid", "theta must be (N, 2, 3), got ",
        shape_str(theta.shape));
  check(H >= 1 && W >= 1 && H <= 65536 && W <= 65536, "affine_grid", "size ", H, "x", W, " out of range");
  Tensor g(theta.device(), {theta.dim(0), H, W, 2}, "affine_grid");
  theta.be().affine_grid_forward(theta.dim(0), H, W, theta.data(), g.data());
  return g;
}

Tensor affine_grid_backward(const Tensor& dgrid) {
  need_defined(dgrid, "affine_grid_backward", "dgrid");
  check(dgrid.ndim() == 4 && dgrid.dim(3) == 2, "affine_grid_backward", "dgrid must be (N, H, W, 2), got ",
        shape_str(dgrid.shape));
  Tensor dt(dgrid.device(), {dgrid.dim(0), 2, 3}, "affine_grid_backward");
  dgrid.be().affine_grid_backward(dgrid.dim(0), dgrid.dim(1), dgrid.dim(2), dgrid.data(), dt.data());
  return dt;
}

static void grid_sample_check(const Tensor& x, const Tensor& grid, const char* op) {
  need_defined(x, op, "input");
  need_defined(grid, op, "grid");
  same_device(x, grid, op);
  need_rank(x, 4, op, "input");
  check(grid.ndim() == 4 && grid.dim(3) == 2 && grid.dim(0) == x.dim(0), op, "grid must be (", x.dim(0),
        ", OH, OW, 2) for input ", shape_str(x.shape), ", got ", shape_str(grid.shape));
}

Tensor grid_sample(const Tensor& x, const Tensor& grid) {
  grid_sample_check(x, grid, "grid_sample");
  Tensor y(x.device(), {x.dim(0), x.dim(1), grid.dim(1), grid.dim(2)}, "grid_sample");
  x.be().grid_sample_forward(x.dim(0), x.dim(1), x.dim(2), x.dim(3), grid.dim(1), grid.dim(2), x.data(), grid.data(),
                             y.data());
  return y;
}

GridSampleGrads grid_sample_backward(const Tensor& dy, const Tensor& x, const Tensor& grid, bool need_dx,
                                     bool need_dgrid) {
  const char* op = "grid_sample_backward";
  grid_sample_check(x, grid, op);
  need_defined(dy, op, "dy");
  check(dy.shape == Shape({x.dim(0), x.dim(1), grid.dim(1), grid.dim(2)}), op, "dy ", shape_str(dy.shape),
        " does not match the output shape");
  GridSampleGrads g;
  if (need_dx) g.dx = Tensor(x.device(), x.shape, op);
  if (need_dgrid) g.dgrid = Tensor(x.device(), grid.shape, op);
  x.be().grid_sample_backward(x.dim(0), x.dim(1), x.dim(2), x.dim(3), grid.dim(1), grid.dim(2), dy.data(), x.data(),
                              grid.data(), need_dx ? g.dx.data() : nullptr, need_dgrid ? g.dgrid.data() : nullptr);
  return g;
}

void adam_steps_(const std::vector<AdamParam>& ps, double lr, double beta1, double beta2, double eps,
                 double weight_decay) {
  const char* op = "adam";
  check(std::isfinite(lr) && lr >= 0, op, "lr must be finite and >= 0, got ", lr);
  check(std::isfinite(beta1) && beta1 >= 0 && beta1 < 1, op, "beta1 must be in [0, 1), got ", beta1);
  check(std::isfinite(beta2) && beta2 >= 0 && beta2 < 1, op, "beta2 must be in [0, 1), got ", beta2);
  check(std::isfinite(eps) && eps >= 0, op, "eps must be finite and >= 0, got ", eps);
  check(std::isfinite(weight_decay) && weight_decay >= 0, op, "weight_decay must be finite and >= 0, got ",
        weight_decay);
  if (ps.empty()) return;
  std::vector<AdamTensor> ts;
  ts.reserve(ps.size());
  const Tensor& first = *ps[0].param;
  for (size_t k = 0; k < ps.size(); ++k) {
    const AdamParam& p = ps[k];
    for (const Tensor* t : std::initializer_list<const Tensor*>{p.param, p.grad, p.m, p.v}) need_defined(*t, op, "tensor");
    check(p.grad->shape == p.param->shape && p.m->shape == p.param->shape && p.v->shape == p.param->shape, op,
          "parameter ", k, ": param ", shape_str(p.param->shape), ", grad ", shape_str(p.grad->shape), ", exp_avg ",
          shape_str(p.m->shape), ", exp_avg_sq ", shape_str(p.v->shape), " must match");
    for (const Tensor* t : std::initializer_list<const Tensor*>{p.param, p.grad, p.m, p.v}) same_device(first, *t, op);
    check(p.step >= 1, op, "parameter ", k, ": step must be >= 1, got ", p.step);
    ts.push_back({p.param->data(), p.grad->data(), p.m->data(), p.v->data(), static_cast<size_t>(p.param->numel()), p.step});
  }
  first.be().adam_step(ts.data(), ts.size(), lr, beta1, beta2, eps, weight_decay);
}

// ---- conv2d with constant (code) channels ----

namespace {

struct ConstChannels {
  Conv2dParams full;  // the conv over the concatenated input
  int64_t Cx, Kc, pad;
};

ConstChannels const_channels_params(const Tensor& x, const Tensor& w, const Tensor& code, const char* op) {
  need_defined(x, op, "input");
  need_defined(w, op, "weight");
  need_defined(code, op, "code");
  same_device(x, w, op);
  same_device(x, code, op);
  need_rank(x, 4, op, "input");
  need_rank(w, 4, op, "weight");
  need_rank(code, 2, op, "code");
  check(code.dim(0) == x.dim(0), op, "code ", shape_str(code.shape), " has ", code.dim(0),
        " rows but the input batch ", shape_str(x.shape), " has ", x.dim(0));
  const int64_t Cx = x.dim(1), Kc = code.dim(1);
  check(w.dim(1) == Cx + Kc, op, "weight ", shape_str(w.shape), " expects ", w.dim(1), " input channels, but input ",
        shape_str(x.shape), " and code ", shape_str(code.shape), " give ", Cx, " + ", Kc);
  check(w.dim(2) == w.dim(3) && w.dim(2) % 2 == 1, op, "needs an odd square kernel for 'same' padding, got weight ",
        shape_str(w.shape));
  const int64_t pad = (w.dim(2) - 1) / 2;
  return {conv2d_params({x.dim(0), Cx + Kc, x.dim(2), x.dim(3)}, w.shape, 1, pad, op), Cx, Kc, pad};
}

// concat(x, code tiled over H x W): the plain path's input
Tensor tiled_input(const Tensor& x, const Tensor& code) {
  const int64_t N = x.dim(0), Kc = code.dim(1);
  Tensor tiled = expand(reshape(code, {N, Kc, 1, 1}), {N, Kc, x.dim(2), x.dim(3)});
  return concat({x, tiled}, 1);
}

}  // namespace

Tensor conv2d_const_channels(const Tensor& x, const Tensor& w, const Tensor& code) {
  const char* op = "conv2d_const_channels";
  const ConstChannels c = const_channels_params(x, w, code, op);
  const Backend& be = x.be();
  if (!be.conv2d_code_channels) return conv2d(tiled_input(x, code), w, nullptr, 1, c.pad);
  Tensor y = conv2d(x, slice(w, 1, 0, c.Cx), nullptr, 1, c.pad);
  be.conv2d_code_channels(false, c.full, c.Kc, code.data(), w.data(), nullptr, y.data(), nullptr, nullptr);
  return y;
}

ConstChannelsGrads conv2d_const_channels_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                                  const Tensor& code, bool need_dx, bool need_dw, bool need_dcode) {
  const char* op = "conv2d_const_channels_backward";
  const ConstChannels c = const_channels_params(x, w, code, op);
  const Conv2dParams& p = c.full;
  need_defined(dy, op, "dy");
  same_device(x, dy, op);
  check(dy.shape == Shape({p.N, p.K, p.OH, p.OW}), op, "dy ", shape_str(dy.shape), " does not match the output shape ",
        shape_str({p.N, p.K, p.OH, p.OW}));
  const Backend& be = x.be();
  ConstChannelsGrads g;
  if (!be.conv2d_code_channels) {  // the plain conv's gradients, split back into x and code
    const Tensor xin = tiled_input(x, code);
    if (need_dx || need_dcode) {
      const Tensor dxin = conv2d_backward_data(dy, w, xin.shape, 1, c.pad);
      if (need_dx) g.dx = slice(dxin, 1, 0, c.Cx);
      if (need_dcode) g.dcode = sum(slice(dxin, 1, c.Cx, c.Cx + c.Kc), {2, 3}, false);
    }
    if (need_dw) g.dw = conv2d_backward_weight(dy, xin, w.shape, 1, c.pad);
    return g;
  }
  if (need_dx || need_dw) {
    const Tensor wx = slice(w, 1, 0, c.Cx);
    if (need_dx) g.dx = conv2d_backward_data(dy, wx, x.shape, 1, c.pad);
    if (need_dw) {  // the x channels' part into dw[:, :Cx]; the kernel fills dw[:, Cx:]
      const Tensor dwx = conv2d_backward_weight(dy, x, wx.shape, 1, c.pad);
      g.dw = Tensor(x.device(), w.shape, op);
      be.copy_block(p.K, p.R * p.S, c.Cx, dwx.data(), c.Cx, 0, g.dw.data(), p.C, 0);
    }
  }
  if (need_dcode) g.dcode = Tensor(x.device(), code.shape, op);
  if (need_dw || need_dcode)
    be.conv2d_code_channels(true, p, c.Kc, code.data(), w.data(), dy.data(), nullptr,
                            need_dw ? g.dw.data() : nullptr, need_dcode ? g.dcode.data() : nullptr);
  return g;
}

}  // namespace c3::ops
