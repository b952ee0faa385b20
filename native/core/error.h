// The one error type of the native core: an errno, the operation it belongs to, and a message.
// The binding layer turns it into a JS error; TypeScript maps `kind` and `err` to stable codes.
#pragma once

#include <stdexcept>
#include <string>

namespace portwall {

enum class ErrorKind {
  kSystem,   // a syscall failed (socket, setns, sendmsg, recvmsg): err is the errno
  kNetlink,  // the kernel refused a netlink message: err is its errno, op_index the operation
  kWire,     // the buffer from JS is malformed: a bug in the encoder, never user input
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, int err, std::string message, int op_index = -1)
      : std::runtime_error(std::move(message)), kind_(kind), err_(err), op_index_(op_index) {}

  ErrorKind kind() const { return kind_; }
  int err() const { return err_; }
  int op_index() const { return op_index_; }

 private:
  ErrorKind kind_;
  int err_;
  int op_index_;
};

// Throws kSystem with errno and "what: strerror" when a syscall returned -1.
[[noreturn]] void throw_errno(const std::string& what);

}  // namespace portwall
