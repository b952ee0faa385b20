// An nftables trace subscription: a NETLINK_NETFILTER socket in the target namespace joined to
// NFNLGRP_NFTRACE, receiving one NFT_MSG_TRACE message per step of every packet that carries `meta nftrace`
// (a rule that matched, a chain's end returning to its caller, a base chain's policy), parsed with libnftnl's
// nftnl_trace API into compact Events and read in batches by one thread woken for closing through an eventfd
// (as nflog.h). `portwall explain --live` reads it (src/trace.ts; docs/dataplane.md, "Tracing a packet").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/event_socket.h"

namespace portwall::nfttrace {

struct Event {
  uint32_t id = 0;           // NFTA_TRACE_ID: the same for every step of one packet
  uint32_t type = 0;         // NFT_TRACETYPE_* (1 policy, 2 return, 3 rule)
  uint8_t family = 0;        // the table's family (NFPROTO_*)
  uint32_t nfproto = 0;      // the packet's protocol family (NFPROTO_IPV4, NFPROTO_IPV6), 0 when absent
  std::string table, chain;  // where the step happened
  bool has_handle = false;
  uint64_t handle = 0;       // the rule's handle (rule events)
  bool has_verdict = false;
  int32_t verdict = 0;       // NF_DROP, NF_ACCEPT, NFT_CONTINUE, NFT_JUMP, NFT_GOTO, NFT_RETURN, …
  std::string jump_target;   // the chain of a jump or goto
  bool has_policy = false;
  uint32_t policy = 0;       // a base chain's policy (policy events)
  uint32_t iif = 0, oif = 0; // ifindexes, 0 when absent
  uint32_t mark = 0;         // the packet mark when the step ran
  std::vector<uint8_t> network, transport;  // the packet's headers, when the kernel sent them
};

class EventReader {
 public:
  // Opens the socket inside `netns` (on the calling thread), joined to the trace group.
  explicit EventReader(const std::string& netns);
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Waits for trace messages (or stop()), then appends every queued one to `out`. `lost` grows when the
  // socket overflowed. Returns false once stopped.
  bool wait(std::vector<Event>& out, uint32_t& lost);
  // Wakes wait() for good; callable from any thread.
  void stop();

 private:
  EventSocket sock_;
  std::vector<char> buf_;
};

}  // namespace portwall::nfttrace
