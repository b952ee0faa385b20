#include "core/wire.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace portwall::wire {

void Reader::fail(const std::string& msg) const {
  std::string where = "wire offset " + std::to_string(off_);
  if (record_ >= 0) where += " (record " + std::to_string(record_) + ")";
  throw Error(ErrorKind::kWire, EINVAL, where + ": " + msg, record_);
}

void Reader::short_read(size_t n, const char* what) const {
  fail(std::string("expected ") + what + " (" + std::to_string(n) + " bytes), only " + std::to_string(len_ - off_) +
       " left");
}

std::string Reader::str(const char* what) {
  uint16_t n = u16(what);
  const uint8_t* p = take(n, what);
  if (std::memchr(p, 0, n) != nullptr) fail(std::string(what) + " contains a NUL byte");
  return std::string(reinterpret_cast<const char*>(p), n);
}

Bytes Reader::bytes(const char* what) {
  uint32_t n = u32(what);
  return Bytes{take(n, what), n};
}

uint32_t Reader::mask(unsigned fields, const char* what) {
  uint32_t m = u32(what);
  if (fields < 32 && (m >> fields) != 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%x", m);
    fail(std::string(what) + " mask " + hex + " has bits beyond its " + std::to_string(fields) + " fields");
  }
  return m;
}

void Writer::u16(uint16_t v) {
  const uint8_t b[2] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)};
  put(b, 2);
}

void Writer::u32(uint32_t v) {
  uint8_t b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  put(b, 4);
}

void Writer::u64(uint64_t v) {
  u32(static_cast<uint32_t>(v));
  u32(static_cast<uint32_t>(v >> 32));
}

void Writer::str(const char* s) {
  size_t n = s ? std::strlen(s) : 0;
  // Kernel object names are far shorter; a longer one would be a kernel we do not understand.
  if (n > 0xffff) throw Error(ErrorKind::kWire, E2BIG, "string of " + std::to_string(n) + " bytes in a dump");
  u16(static_cast<uint16_t>(n));
  if (n) put(s, n);
}

void Writer::bytes(const void* data, uint32_t len) {
  u32(len);
  if (len) put(data, len);
}

size_t Writer::begin_mask() {
  size_t pos = buf_.size();
  u32(0);
  return pos;
}

void Writer::set_bit(size_t mask_pos, unsigned bit) {
  buf_.data()[mask_pos + bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
}

void Writer::patch_u32(size_t pos, uint32_t v) {
  for (int i = 0; i < 4; ++i) buf_.data()[pos + i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace portwall::wire
