// An owned libmnl socket, opened in the calling thread's network namespace (see netns.h): the one place that
// opens, binds and configures netlink sockets and sends on them. The nftables socket (nft_socket.h) and the
// conntrack/ipset code build their request/reply plumbing on top of it.
#pragma once

#include <libmnl/libmnl.h>
#include <sys/types.h>

#include <cstddef>

namespace portwall {

class NlSocket {
 public:
  // Opens and binds a socket of `bus` (e.g. NETLINK_NETFILTER), subscribed to the `groups` bitmask, with
  // extended and capped acks and a receive timeout. `buffer_bytes` > 0 grows both kernel buffers to at least
  // that (see grow_buffers); 0 keeps the system defaults.
  explicit NlSocket(int bus, unsigned groups = 0, size_t buffer_bytes = 4 << 20);
  ~NlSocket();
  NlSocket(const NlSocket&) = delete;
  NlSocket& operator=(const NlSocket&) = delete;

  mnl_socket* get() const { return sock_; }
  int fd() const { return mnl_socket_get_fd(sock_); }
  unsigned portid() const { return mnl_socket_get_portid(sock_); }

  // Grows the kernel-side buffers to hold `sndbuf` / `rcvbuf` bytes (never shrinks them). The FORCE variants
  // ignore net.core.[rw]mem_max but need CAP_NET_ADMIN; without it we take what we may. A size within what
  // the socket is known to hold already costs no system call.
  void grow_buffers(size_t sndbuf, size_t rcvbuf);

  // Sends a whole buffer of netlink messages as one datagram (retrying on EINTR); throws kSystem on failure,
  // a partial send included.
  void send(const void* buf, size_t len);
  // recv into buf; returns bytes read, or -1 with errno EAGAIN when `dontwait` and nothing is queued.
  // A timeout throws kSystem ETIMEDOUT; any other failure (ENOBUFS included: a lost reply means a lost
  // count) throws kSystem.
  ssize_t recv(void* buf, size_t len, bool dontwait = false);

  // How long a blocking receive waits for the kernel, which answers every request synchronously: a reply
  // that takes this long is never coming, and a pool thread must not hang forever waiting for it.
  static constexpr int kReceiveTimeoutS = 10;

 private:
  mnl_socket* sock_ = nullptr;
  size_t snd_known_ = 0;  // bytes the buffers are known to hold (grow_buffers)
  size_t rcv_known_ = 0;
};

}  // namespace portwall
