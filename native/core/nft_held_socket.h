// A NETLINK_NETFILTER socket kept open across calls (docs/netlink.md): one per long-lived client.
//
// Opening a socket per call costs little, but closing one does not: releasing a netfilter socket after a
// commit that deleted anything waits for the kernel's transaction-destroy work (an RCU grace period, 7–15 ms),
// so a per-call socket turns a microsecond element delete into milliseconds. A HeldSocket opens its socket
// once, serialises the calls of several pool threads on it, and replaces it after any failure that may have
// left replies unread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/nft_socket.h"

namespace portwall::nft {

class HeldSocket {
 public:
  // Opens the socket inside `netns` (as for NetnsScope), so construct it on a pool thread.
  explicit HeldSocket(std::string netns);
  HeldSocket(const HeldSocket&) = delete;
  HeldSocket& operator=(const HeldSocket&) = delete;

  // Runs `io` on the socket, one caller at a time. A closed HeldSocket throws kSystem EBADF without calling
  // `io`. When `io` throws anything but a kNetlink or kWire error (a send or receive failure, ENOBUFS, a
  // timeout: replies may be left unread), the socket is closed and the next call opens a fresh one in the
  // same namespace; a kNetlink error (the kernel refused, every reply was read) keeps it.
  void use(const std::function<void(NftSocket&)>& io);

  // Closes the socket now when no call is using it, else as soon as that call ends; later calls throw.
  // Idempotent. Never waits for a call in progress.
  void close();

  const std::string& netns() const { return netns_; }

 private:
  const std::string netns_;
  std::mutex io_;     // held for the whole of a call: one request/reply exchange at a time
  std::mutex state_;  // guards sock_ and closed_; held only briefly, so close() never waits for I/O
  std::unique_ptr<NftSocket> sock_;  // null while a call has it, after a failure, or once closed
  bool closed_ = false;
};

}  // namespace portwall::nft
