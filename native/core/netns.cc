#include "core/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace portwall {

void throw_errno(const std::string& what) {
  int err = errno;
  throw Error(ErrorKind::kSystem, err, what + ": " + std::strerror(err));
}

std::string netns_path(const std::string& netns) {
  if (netns.empty() || netns.find('/') != std::string::npos) return netns;
  return "/run/netns/" + netns;
}

NetnsScope::NetnsScope(const std::string& netns) {
  if (netns.empty()) return;
  const std::string path = netns_path(netns);
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) throw_errno("open network namespace " + path);
  saved_fd_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (saved_fd_ < 0) {
    int err = errno;
    close(target);
    errno = err;
    throw_errno("open own network namespace");
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(target);
    close(saved_fd_);
    errno = err;
    throw_errno("enter network namespace " + path);
  }
  close(target);
}

NetnsScope::~NetnsScope() {
  if (saved_fd_ < 0) return;
  // Failing to return would leave a pool thread in a foreign namespace: nothing safe remains but to stop.
  if (setns(saved_fd_, CLONE_NEWNET) < 0) std::abort();
  close(saved_fd_);
}

}  // namespace portwall
