// A netlink event socket: a socket joined to multicast groups inside a network namespace, plus an eventfd
// that wakes its reader for good. The conntrack and nftables event readers (conntrack_events.h,
// nft_events.h) each own one and run on their own thread.
#pragma once

#include <memory>
#include <string>

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

 private:
  std::unique_ptr<NlSocket> sock_;
  int wake_fd_ = -1;
};

}  // namespace portwall
