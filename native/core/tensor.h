// Float32 contiguous tensors (NCHW at the API) with storage on one device. Storage is freed when
// the last Tensor sharing it goes; the N-API layer drops its reference on dispose(), so release
// is deterministic and never waits for the GC.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "backend.h"
#include "error.h"

namespace c3 {

const Backend& backend_for(Device d);
const char* device_name(Device d);

// Bytes currently held by live storages, per device (memory statistics; V8 is told the allocators'
// holdings, Backend::held_bytes).
int64_t live_bytes(Device d);
// High-water mark of live_bytes since the last reset_peak_live_bytes (or the start).
int64_t peak_live_bytes(Device d);
void reset_peak_live_bytes(Device d);

class Storage {
 public:
  Storage(Device d, size_t numel);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  float* data() const { return data_; }
  size_t numel() const { return numel_; }
  Device device() const { return device_; }

 private:
  Device device_;
  size_t numel_;
  float* data_;
};

// Number of elements of a shape; throws on negative dims or a product past 2^40.
int64_t shape_numel(const Shape& s, const char* op);

struct Tensor {
  Shape shape;
  std::shared_ptr<Storage> storage;

  Tensor() = default;
  Tensor(Device d, Shape s, const char* op = "empty");
  int64_t numel() const;
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  int ndim() const { return static_cast<int>(shape.size()); }
  Device device() const { return storage->device(); }
  float* data() const { return storage->data(); }
  const Backend& be() const { return backend_for(device()); }
  bool defined() const { return static_cast<bool>(storage); }
};

}  // namespace c3
