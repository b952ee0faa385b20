#include "core/event_socket.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/netns.h"

namespace portwall {

EventSocket::EventSocket(const std::string& netns, int protocol, unsigned groups, size_t rcvbuf) {
  {
    NetnsScope scope(netns);
    sock_ = std::make_unique<NlSocket>(protocol, groups, rcvbuf);
  }
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw_errno("eventfd");
}

EventSocket::~EventSocket() {
  if (wake_fd_ >= 0) close(wake_fd_);
}

EventSocket::Ready EventSocket::poll(int timeout_ms, const char* what) {
  pollfd fds[2] = {{sock_->fd(), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  int ready;
  for (;;) {
    ready = ::poll(fds, 2, timeout_ms);
    if (ready >= 0) break;
    if (errno != EINTR) throw_errno(std::string("poll ") + what);
  }
  if (fds[1].revents) return Ready::kStopped;
  return ready == 0 ? Ready::kTimeout : Ready::kData;
}

void EventSocket::stop() {
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

}  // namespace portwall
