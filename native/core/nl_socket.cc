#include "core/nl_socket.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <string>

#include "core/error.h"

namespace portwall {

constexpr int kReceiveTimeoutS = 10;

NlSocket::NlSocket(int bus, unsigned groups, int buffer_bytes) {
  sock_ = mnl_socket_open2(bus, SOCK_CLOEXEC);
  if (!sock_) throw_errno("open netlink socket");
  if (mnl_socket_bind(sock_, groups, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(sock_);
    errno = err;
    throw_errno("bind netlink socket");
  }
  // Best effort: without CAP_NET_ADMIN the FORCE variants fail and the plain ones cap at the sysctl limits.
  int fd = mnl_socket_get_fd(sock_);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buffer_bytes, sizeof buffer_bytes) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer_bytes, sizeof buffer_bytes) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
  // A kernel that never answers must not block a pool thread forever (the event reader polls, unaffected).
  timeval tv{kReceiveTimeoutS, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) throw_errno("setsockopt SO_RCVTIMEO");
  int one = 1;
  // Acks then carry only the failing message's header, not its whole payload.
  mnl_socket_setsockopt(sock_, NETLINK_CAP_ACK, &one, sizeof one);
  mnl_socket_setsockopt(sock_, NETLINK_EXT_ACK, &one, sizeof one);
}

NlSocket::~NlSocket() {
  if (sock_) mnl_socket_close(sock_);
}

void NlSocket::send(const void* buf, size_t len) {
  for (;;) {
    if (mnl_socket_sendto(sock_, buf, len) >= 0) return;
    if (errno != EINTR) throw_errno("netlink sendto");
  }
}

ssize_t NlSocket::recv(void* buf, size_t len, bool dontwait) {
  for (;;) {
    ssize_t n = ::recv(fd(), buf, len, dontwait ? MSG_DONTWAIT : 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (dontwait && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      throw Error(ErrorKind::kSystem, ETIMEDOUT, "netlink recv: no answer within " + std::to_string(kReceiveTimeoutS) + " s");
    }
    throw_errno("netlink recv");
  }
}

}  // namespace portwall
