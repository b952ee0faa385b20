// An owned libmnl socket, opened in the calling thread's network namespace (see netns.h).
#pragma once

#include <libmnl/libmnl.h>

#include <cstddef>

namespace portwall {

class NlSocket {
 public:
  // Opens and binds a socket of `bus` (e.g. NETLINK_NETFILTER), subscribed to the `groups` bitmask.
  // Buffers are forced to `buffer_bytes` (CAP_NET_ADMIN) so that pipelined requests and their acks fit.
  explicit NlSocket(int bus, unsigned groups = 0, int buffer_bytes = 4 << 20);
  ~NlSocket();
  NlSocket(const NlSocket&) = delete;
  NlSocket& operator=(const NlSocket&) = delete;

  mnl_socket* get() const { return sock_; }
  int fd() const { return mnl_socket_get_fd(sock_); }
  unsigned portid() const { return mnl_socket_get_portid(sock_); }

  // sendto of a whole buffer of netlink messages; throws kSystem on failure.
  void send(const void* buf, size_t len);
  // recvfrom into buf; returns bytes read, or -1 with errno EAGAIN when `dontwait` and nothing is queued.
  // Any other failure (ENOBUFS included: a lost reply means a lost count) throws kSystem.
  ssize_t recv(void* buf, size_t len, bool dontwait = false);

 private:
  mnl_socket* sock_ = nullptr;
};

}  // namespace portwall
