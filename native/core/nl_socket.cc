#include "core/nl_socket.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>

#include "core/error.h"
#include "core/faults.h"

namespace portwall {

namespace {

// `known` is what this socket's buffer is known to hold already (only we size it): a request within it costs
// no system call, which matters on the one-port path (every commit asks, docs/netlink.md, "Small batches").
void grow(int fd, int force_opt, int opt, size_t bytes, size_t& known, const char* what) {
  if (bytes <= known) return;
  int cur = 0;
  socklen_t len = sizeof cur;
  // The kernel reports (and accounts) twice the value set, to cover its bookkeeping overhead.
  if (getsockopt(fd, SOL_SOCKET, opt, &cur, &len) == 0 && static_cast<size_t>(cur) / 2 >= bytes) {
    known = static_cast<size_t>(cur) / 2;
    return;
  }
  int v = static_cast<int>(std::min<size_t>(bytes, INT_MAX / 2));
  if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) == 0) {
    known = static_cast<size_t>(v);
    return;
  }
  // Without CAP_NET_ADMIN the kernel caps the size silently: nothing is known beyond what it reports.
  if (setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) < 0) throw_errno(std::string("setsockopt ") + what);
}

}  // namespace

NlSocket::NlSocket(int bus, unsigned groups, size_t buffer_bytes) {
  sock_ = mnl_socket_open2(bus, SOCK_CLOEXEC);
  if (!sock_) throw_errno("open netlink socket");
  try {
    if (mnl_socket_bind(sock_, groups, MNL_SOCKET_AUTOPID) < 0) throw_errno("bind netlink socket");
    if (buffer_bytes > 0) grow_buffers(buffer_bytes, buffer_bytes);
    timeval tv{kReceiveTimeoutS, 0};
    if (setsockopt(fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) throw_errno("setsockopt SO_RCVTIMEO");
  } catch (...) {
    mnl_socket_close(sock_);
    throw;
  }
  // Older kernels lack these; we then get plain errors without the kernel's explanation. Capped acks carry
  // only the refused message's header, not its whole payload.
  int one = 1;
  mnl_socket_setsockopt(sock_, NETLINK_CAP_ACK, &one, sizeof one);
  mnl_socket_setsockopt(sock_, NETLINK_EXT_ACK, &one, sizeof one);
}

NlSocket::~NlSocket() {
  if (sock_) mnl_socket_close(sock_);
}

void NlSocket::grow_buffers(size_t sndbuf, size_t rcvbuf) {
  grow(fd(), SO_SNDBUFFORCE, SO_SNDBUF, sndbuf, snd_known_, "SO_SNDBUF");
  grow(fd(), SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf, rcv_known_, "SO_RCVBUF");
}

void NlSocket::send(const void* buf, size_t len) {
  for (;;) {
#ifdef PORTWALL_FAULTS
    const int injected = faults::at("send");  // docs/reliability.md, "Fault injection"
    if (injected) errno = injected;
    ssize_t n = injected ? -1 : mnl_socket_sendto(sock_, buf, len);
#else
    ssize_t n = mnl_socket_sendto(sock_, buf, len);
#endif
    if (n >= 0 && static_cast<size_t>(n) == len) return;
    if (n < 0 && errno == EINTR) continue;
    if (n >= 0) {
      throw Error(ErrorKind::kSystem, EIO, "netlink sendmsg sent " + std::to_string(n) + " of " + std::to_string(len) + " bytes");
    }
    throw_errno("netlink sendmsg of " + std::to_string(len) + " bytes");
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
