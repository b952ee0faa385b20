// A NETLINK_NETFILTER socket kept open across calls (docs/netlink.md): one per long-lived client and namespace.
//
// Opening a socket per call costs little, but closing one does not: releasing a netfilter socket after an
// nf_tables commit that deleted anything waits for the kernel's transaction-destroy work (an RCU grace period,
// 7–15 ms), whichever subsystem the socket served, so a per-call socket turns a microsecond element delete or
// an empty conntrack dump into milliseconds. A HeldSocket opens its socket once, serialises the calls of
// several pool threads on it, and replaces it after any failure that may have left replies unread.
//
// The socket type is a parameter: nft::NftSocket (nftables) and conntrack::Socket (ctnetlink). Either is
// constructed from a namespace (as for NetnsScope) and stays bound to that namespace for its life.
#pragma once

#include <cerrno>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "core/error.h"

namespace portwall {

template <typename Socket>
class HeldSocket {
 public:
  // Opens the socket inside `netns` (as for NetnsScope), so construct it on a pool thread. `closed_message`
  // is the text of the kSystem EBADF error that calls made after close() throw.
  HeldSocket(std::string netns, std::string closed_message)
      : netns_(std::move(netns)), closed_message_(std::move(closed_message)), sock_(std::make_unique<Socket>(netns_)) {}
  HeldSocket(const HeldSocket&) = delete;
  HeldSocket& operator=(const HeldSocket&) = delete;

  // Runs `io` on the socket, one caller at a time. A closed HeldSocket throws kSystem EBADF without calling
  // `io`. When `io` throws anything but a kNetlink or kWire error (a send or receive failure, ENOBUFS, a
  // timeout: replies may be left unread), the socket is closed and the next call opens a fresh one in the
  // same namespace (by name); a kNetlink error (the kernel refused, every reply was read) keeps it.
  void use(const std::function<void(Socket&)>& io) {
    std::lock_guard<std::mutex> serial(io_);
    std::unique_ptr<Socket> sock;
    {
      std::lock_guard<std::mutex> lock(state_);
      if (closed_) throw Error(ErrorKind::kSystem, EBADF, closed_message_);
      sock = std::move(sock_);
    }
    run(sock, io);
  }

  // Runs `io` on the calling thread only when nothing but the kernel's answer can make it wait: the socket
  // is open and no other call holds it. Otherwise — closed, to be reopened after a failure (that takes a
  // setns), or busy — returns false without calling `io`, and the caller takes the pool-thread path. Errors
  // are as for use(); a socket that failed is closed on the calling thread.
  bool try_use(const std::function<void(Socket&)>& io) {
    std::unique_lock<std::mutex> serial(io_, std::try_to_lock);
    if (!serial.owns_lock()) return false;
    std::unique_ptr<Socket> sock;
    {
      std::lock_guard<std::mutex> lock(state_);
      if (closed_ || !sock_) return false;
      sock = std::move(sock_);
    }
    run(sock, io);
    return true;
  }

  // Closes the socket now when no call is using it, else as soon as that call ends; later calls throw.
  // Idempotent. Never waits for a call in progress.
  void close() {
    std::unique_ptr<Socket> idle;
    {
      std::lock_guard<std::mutex> lock(state_);
      closed_ = true;
      idle = std::move(sock_);
    }
    // `idle` closes here, outside the lock; when a call holds the socket, GiveBack drops it instead.
  }

  const std::string& netns() const { return netns_; }

 private:
  // Runs `io` on `sock` (taken out of sock_; null: open a fresh one) and hands it back when the call ends,
  // unless it failed or close() came meanwhile: then it is dropped here, on the calling thread, which also
  // pays the kernel's release work.
  void run(std::unique_ptr<Socket>& sock, const std::function<void(Socket&)>& io) {
    struct GiveBack {
      HeldSocket& self;
      std::unique_ptr<Socket>& sock;
      ~GiveBack() {
        std::lock_guard<std::mutex> lock(self.state_);
        if (!self.closed_) self.sock_ = std::move(sock);
      }
    } give_back{*this, sock};
    if (!sock) sock = std::make_unique<Socket>(netns_);  // reopened after a failure
    try {
      io(*sock);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kNetlink && e.kind() != ErrorKind::kWire) sock.reset();
      throw;
    } catch (...) {
      sock.reset();
      throw;
    }
  }

  const std::string netns_;
  const std::string closed_message_;
  std::mutex io_;     // held for the whole of a call: one request/reply exchange at a time
  std::mutex state_;  // guards sock_ and closed_; held only briefly, so close() never waits for I/O
  std::unique_ptr<Socket> sock_;  // null while a call has it, after a failure, or once closed
  bool closed_ = false;
};

}  // namespace portwall
