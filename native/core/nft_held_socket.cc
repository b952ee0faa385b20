#include "core/nft_held_socket.h"

#include <cerrno>
#include <utility>

#include "core/error.h"

namespace portwall::nft {

HeldSocket::HeldSocket(std::string netns) : netns_(std::move(netns)), sock_(std::make_unique<NftSocket>(netns_)) {}

void HeldSocket::use(const std::function<void(NftSocket&)>& io) {
  std::lock_guard<std::mutex> serial(io_);
  std::unique_ptr<NftSocket> sock;
  {
    std::lock_guard<std::mutex> lock(state_);
    if (closed_) throw Error(ErrorKind::kSystem, EBADF, "the nftables socket was closed (NftSocket.close())");
    sock = std::move(sock_);
  }
  // Hands the socket back when the call ends, unless it failed or close() came meanwhile: then it is
  // dropped here, on this (pool) thread, which also pays the kernel's release work.
  struct GiveBack {
    HeldSocket& self;
    std::unique_ptr<NftSocket>& sock;
    ~GiveBack() {
      std::lock_guard<std::mutex> lock(self.state_);
      if (!self.closed_) self.sock_ = std::move(sock);
    }
  } give_back{*this, sock};
  if (!sock) sock = std::make_unique<NftSocket>(netns_);  // reopened after a failure
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

void HeldSocket::close() {
  std::unique_ptr<NftSocket> idle;
  {
    std::lock_guard<std::mutex> lock(state_);
    closed_ = true;
    idle = std::move(sock_);
  }
  // `idle` closes here, outside the lock; when a call holds the socket, GiveBack drops it instead.
}

}  // namespace portwall::nft
