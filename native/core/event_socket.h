// A netlink event socket: a socket joined to multicast groups inside a network namespace, plus an eventfd
// that wakes its reader for good. The conntrack and nftables event readers (conntrack_events.h,
// nft_events.h) each own one and run on their own thread.
#pragma once

#include <libmnl/libmnl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/nl_socket.h"

namespace portwall {

class EventSocket {
 public:
  // Opens the socket inside `netns` (on the calling thread) with `groups` joined and a receive buffer of at
  // least `rcvbuf` bytes; the reader may then run on any thread.
  EventSocket(const std::string& netns, int protocol, unsigned groups, size_t rcvbuf);
  ~EventSocket();
  EventSocket(const EventSocket&) = delete;
  EventSocket& operator=(const EventSocket&) = delete;

  enum class Ready { kData, kTimeout, kStopped };
  // Waits for data, stop() or `timeout_ms` (-1: no timeout), retrying after signals. `what` names the
  // subsystem in errors.
  Ready poll(int timeout_ms, const char* what);
  int fd() const { return sock_->fd(); }
  // The socket itself, for subscriptions configured by request (NFLOG binds its group with a message).
  NlSocket& socket() { return *sock_; }
  // Wakes poll() for good; callable from any thread.
  void stop();

  // Reads what is queued without blocking — at most kDrainDatagrams datagrams, so a steady flood cannot keep
  // stop() from being seen — and calls on_message(const nlmsghdr*) for each message. An overrun (ENOBUFS: the
  // kernel dropped messages; later ones still come) adds one to `lost`. `what` names the subscription in errors.
  template <typename OnMessage>
  void drain(std::vector<char>& buf, uint32_t& lost, const char* what, OnMessage&& on_message) {
    for (int datagrams = 0; datagrams < kDrainDatagrams; ++datagrams) {
      ssize_t n = recv(fd(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          ++lost;
          continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        throw_errno(std::string("recv ") + what);
      }
      int len = static_cast<int>(n);
      for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) on_message(h);
    }
  }
  static constexpr int kDrainDatagrams = 256;

 private:
  std::unique_ptr<NlSocket> sock_;
  int wake_fd_ = -1;
};

}  // namespace portwall
