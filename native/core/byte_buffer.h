// A growable byte buffer for encoded netlink batches and listings' record streams.
//
// It grows with realloc, which remaps large blocks instead of copying them: an encoded 50k-rule batch is
// ~25 MB, and a copy would be as many megabytes of fresh pages (docs/wire.md, "Fresh memory"). Memory is
// zeroed before it is written: libmnl before 1.0.5 leaves the padding of attributes unwritten, and those bytes
// are sent to the kernel.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "core/error.h"

namespace portwall {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  // A moved-from buffer is empty (not a null pointer with the old sizes).
  ByteBuffer(ByteBuffer&& o) noexcept { *this = std::move(o); }
  ByteBuffer& operator=(ByteBuffer&& o) noexcept {
    data_ = std::move(o.data_);
    size_ = std::exchange(o.size_, 0);
    cap_ = std::exchange(o.cap_, 0);
    zeroed_ = std::exchange(o.zeroed_, 0);
    return *this;
  }

  const uint8_t* data() const { return data_.get(); }
  uint8_t* data() { return data_.get(); }
  size_t size() const { return size_; }
  // Hands the bytes over (to be released with std::free); the buffer is empty afterwards.
  uint8_t* release() {
    size_ = cap_ = zeroed_ = 0;
    return data_.release();
  }

  // Room for `total` bytes in all, not yet zeroed: only what reserve_more() hands out is written, so pages
  // past the end of the batch are never touched (docs/wire.md, "Fresh memory").
  void reserve_total(size_t total) {
    if (total > cap_) grow(total);
  }
  // Makes `n` writable zeroed bytes available at tail(); earlier pointers into the buffer become invalid.
  // Bytes are zeroed once, the first time they are handed out: a message's bound is far more than it uses,
  // and the next message is built over the rest.
  void reserve_more(size_t n) {
    room(n);
    const size_t end = size_ + n;
    if (end > zeroed_) {
      const size_t from = std::max(zeroed_, size_);
      std::memset(data_.get() + from, 0, end - from);
      zeroed_ = end;
    }
  }
  // Appends `n` bytes (nothing to zero: every byte is written).
  void append(const void* p, size_t n) {
    if (n == 0) return;
    room(n);
    std::memcpy(data_.get() + size_, p, n);
    size_ += n;
    zeroed_ = std::max(zeroed_, size_);
  }
  uint8_t* tail() { return data_.get() + size_; }
  // Accounts for `n` bytes written at tail().
  void commit(size_t n) { size_ += n; }

 private:
  // Capacity for `n` more bytes, doubling.
  void room(size_t n) {
    if (cap_ - size_ < n) grow(std::max({cap_ * 2, size_ + n, kMinCapacity}));
  }
  void grow(size_t cap) {
    void* p = std::realloc(data_.get(), cap);
    if (p == nullptr) throw Error(ErrorKind::kSystem, ENOMEM, "out of memory for " + std::to_string(cap) + " bytes");
    data_.release();
    data_.reset(static_cast<uint8_t*>(p));
    cap_ = cap;
  }

  static constexpr size_t kMinCapacity = 256;

  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
  size_t cap_ = 0;
  size_t zeroed_ = 0;  // bytes [0, zeroed_) have been zeroed or written
};

}  // namespace portwall
