#include "tensor.h"

namespace c3 {

static std::atomic<int64_t> g_live_bytes[2];
static std::atomic<int64_t> g_peak_bytes[2];

int64_t live_bytes(Device d) { return g_live_bytes[static_cast<int>(d)].load(); }
int64_t peak_live_bytes(Device d) { return g_peak_bytes[static_cast<int>(d)].load(); }
void reset_peak_live_bytes(Device d) { g_peak_bytes[static_cast<int>(d)] = live_bytes(d); }

static void add_live(Device d, int64_t bytes) {
  const int i = static_cast<int>(d);
  const int64_t now = g_live_bytes[i] += bytes;
  int64_t peak = g_peak_bytes[i].load();
  while (now > peak && !g_peak_bytes[i].compare_exchange_weak(peak, now)) {
  }
}

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

const Backend& backend_for(Device d) {
  if (d == Device::CPU) return cpu_backend();
  const Backend* b = cuda_backend();
  if (!b || !cuda_available()) throw Error("device", std::string("cuda is ") + cuda_status());
  return *b;
}

Storage::Storage(Device d, size_t numel) : device_(d), numel_(numel), data_(nullptr) {
  const Backend& be = backend_for(d);
  // at least one element so data() is never null, even for empty tensors
  data_ = static_cast<float*>(be.alloc((numel ? numel : 1) * sizeof(float)));
  add_live(d, static_cast<int64_t>(numel * sizeof(float)));
}

Storage::~Storage() {
  backend_for(device_).free(data_);
  add_live(device_, -static_cast<int64_t>(numel_ * sizeof(float)));
}

int64_t shape_numel(const Shape& s, const char* op) {
  int64_t n = 1;
  for (int64_t d : s) {
    check(d >= 0, op, "negative dimension in shape ", shape_str(s));
    check(d == 0 || n <= (int64_t(1) << 40) / d, op, "shape ", shape_str(s), " has more than 2^40 elements");
    n *= d;
  }
  return n;
}

Tensor::Tensor(Device d, Shape s, const char* op) : shape(std::move(s)) {
  check(shape.size() <= static_cast<size_t>(kMaxDims), op, "rank ", shape.size(), " exceeds ", kMaxDims,
        " (shape ", shape_str(shape), ")");
  storage = std::make_shared<Storage>(d, static_cast<size_t>(shape_numel(shape, op)));
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace c3
