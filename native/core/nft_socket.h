// A NETLINK_NETFILTER socket bound to one network namespace, and the request/dump plumbing on top of it.
//
// The socket is created inside a NetnsScope and keeps that namespace for its whole life, while the calling
// thread goes straight back to its own namespace. All calls block the calling (pool) thread. One NftSocket
// serves one call at a time; HeldSocket<NftSocket> (held_socket.h) keeps one open across calls.
#pragma once

#include <libmnl/libmnl.h>
#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/nft_handles.h"
#include "core/nl_socket.h"

namespace portwall::nft {

class NftSocket {
 public:
  // netns as for NetnsScope: "" = the caller's namespace, a name under /run/netns, or a path.
  explicit NftSocket(const std::string& netns);

  // Sizes the kernel-side buffers: a batch travels in one datagram, so sndbuf must exceed it, and every
  // acknowledgement is queued before we read the first one, so rcvbuf must hold them all.
  void size_buffers(size_t sndbuf, size_t rcvbuf);

  // Sends one datagram (retrying on EINTR).
  void send(const void* data, size_t len);

  // Receives what is queued, at least one datagram when `wait` (several per system call: a 50k-message
  // batch brings 50k ACKs), and calls on_message for every netlink message in them, in order. Returns false
  // when !wait and nothing was queued. Throws kSystem on errors; ENOBUFS means the kernel dropped replies
  // (a full receive buffer), ETIMEDOUT that no reply came. `drained`, when given, says whether this call
  // emptied the queue (it took fewer datagrams than it had room for).
  bool receive(bool wait, const std::function<void(const nlmsghdr*)>& on_message, bool* drained = nullptr);

  uint32_t portid() const { return portid_; }
  uint32_t next_seq() { return seq_++; }

  // Sends a dump request and calls on_message for every object message until NLMSG_DONE. Returns false when
  // the kernel flagged the dump as interrupted by a concurrent change (NLM_F_DUMP_INTR): restart it.
  // When on_message throws, the rest of the dump is still read (and ignored) before the exception goes on, so
  // the socket is left without a dump in progress or replies queued, ready for the next request.
  bool dump(const nlmsghdr* request, const std::function<void(const nlmsghdr*)>& on_message);

  // Reads and drops whatever replies are queued (none, unless an earlier exchange was cut short), so that a
  // batch, whose sequence numbers restart at 1 every time, never meets an old batch's acknowledgement.
  void discard_queued();

  // The ruleset generation id (NFT_MSG_GETGEN).
  uint32_t genid();

 private:
  std::unique_ptr<NlSocket> nl_;
  int fd_ = -1;
  uint32_t portid_ = 0;
  uint32_t seq_;
  std::unique_ptr<uint8_t[]> rx_;  // datagram slots; left uninitialised, the kernel writes only what it sends
};

// An NLMSG_ERROR message: err is a positive errno (0 = success ACK), message and offset come from the
// extended ACK (NLMSGERR_ATTR_MSG / NLMSGERR_ATTR_OFFS) when the kernel sent them.
struct Ack {
  int err = 0;
  std::string message;
  int64_t offset = -1;  // of the offending attribute, from the start of the refused message
  bool malformed = false;  // too short to hold an nlmsgerr: err is EBADMSG, and says nothing about the request
};
Ack parse_ack(const nlmsghdr* nlh);

}  // namespace portwall::nft
