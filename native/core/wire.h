// The JS ⇄ native record stream of docs/wire.md: a bounds-checked little-endian Reader and a Writer.
//
// The buffer comes from our own TypeScript encoder, so a malformed one is a bug, not user input: every read
// checks the remaining length and throws Error(kWire) naming the offset, the field and the record, so the
// bug can be found from the message alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/byte_buffer.h"

namespace portwall::wire {

constexpr uint32_t kMagic = 0x31425750;  // "PWB1" read as a little-endian u32

// Record kinds and verbs (docs/wire.md "Stream").
enum Kind : uint8_t { kTable = 1, kChain = 2, kRule = 3, kSet = 4, kElements = 5 };
enum Verb : uint8_t {
  kDump = 0, kAdd = 1, kCreate = 2, kInsert = 3, kReplace = 4, kDelete = 5, kFlush = 6, kDestroy = 7,
};

// Raw bytes borrowed from the buffer being read (valid while the buffer lives).
struct Bytes {
  const uint8_t* data = nullptr;
  uint32_t len = 0;
};

class Reader {
 public:
  Reader(const uint8_t* data, size_t len) : data_(data), len_(len) {}

  // The fixed-width reads are inline: a 50k-rule batch makes millions of them.
  uint8_t u8(const char* what) { return *take(1, what); }
  uint16_t u16(const char* what) {
    const uint8_t* p = take(2, what);
    return static_cast<uint16_t>(p[0] | p[1] << 8);
  }
  uint32_t u32(const char* what) {
    const uint8_t* p = take(4, what);
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
           static_cast<uint32_t>(p[3]) << 24;
  }
  int32_t i32(const char* what) { return static_cast<int32_t>(u32(what)); }
  uint64_t u64(const char* what) {
    uint64_t lo = u32(what);
    uint64_t hi = u32(what);
    return lo | hi << 32;
  }
  // A str field; rejects embedded NULs, which libnftnl's C strings would silently truncate.
  std::string str(const char* what);
  Bytes bytes(const char* what);
  // A presence mask; bits at or above `fields` are an encoder bug and are rejected.
  uint32_t mask(unsigned fields, const char* what);

  size_t offset() const { return off_; }
  bool at_end() const { return off_ == len_; }
  // The record being read, for error messages and Error::op_index (-1 = stream header).
  void set_record(int index) { record_ = index; }
  int record() const { return record_; }

  // Throws kWire "wire offset N (record R): <msg>".
  [[noreturn]] void fail(const std::string& msg) const;

 private:
  const uint8_t* take(size_t n, const char* what) {
    if (len_ - off_ < n) short_read(n, what);
    const uint8_t* p = data_ + off_;
    off_ += n;
    return p;
  }
  [[noreturn]] void short_read(size_t n, const char* what) const;

  const uint8_t* data_;
  size_t len_;
  size_t off_ = 0;
  int record_ = -1;
};

class Writer {
 public:
  void u8(uint8_t v) { put(&v, 1); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void u64(uint64_t v);
  void str(const char* s);
  void bytes(const void* data, uint32_t len);

  // Writes a zero mask and returns its position; set_bit() fills it in as fields are written in bit order.
  size_t begin_mask();
  void set_bit(size_t mask_pos, unsigned bit);
  void patch_u32(size_t pos, uint32_t v);

  size_t size() const { return buf_.size(); }
  ByteBuffer& buffer() { return buf_; }

 private:
  void put(const void* p, size_t n) { buf_.append(p, n); }

  ByteBuffer buf_;
};

}  // namespace portwall::wire
