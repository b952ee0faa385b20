// A growable byte buffer for encoded netlink batches.
//
// It grows with realloc, which remaps large blocks instead of copying them: an encoded 50k-rule batch is
// ~25 MB. New memory is zeroed: libmnl before 1.0.5 leaves the padding of attributes unwritten, and those
// bytes are sent to the kernel.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/error.h"

namespace portwall {

class ByteBuffer {
 public:
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

  // Makes `n` writable bytes available at tail(); earlier pointers into the buffer become invalid.
  void reserve_more(size_t n) {
    if (cap_ - size_ >= n) return;
    size_t cap = std::max(cap_ * 2, size_ + n);
    void* p = std::realloc(data_.get(), cap);
    if (p == nullptr) throw Error(ErrorKind::kSystem, ENOMEM, "out of memory for " + std::to_string(cap) + " bytes");
    data_.release();
    data_.reset(static_cast<uint8_t*>(p));
    std::memset(data_.get() + cap_, 0, cap - cap_);
    cap_ = cap;
  }
  uint8_t* tail() { return data_.get() + size_; }
  // Accounts for `n` bytes written at tail().
  void commit(size_t n) { size_ += n; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace portwall
