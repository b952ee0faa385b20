// An NFLOG subscription (nfnetlink_log): a NETLINK_NETFILTER socket in the target namespace bound to one log
// group, receiving what `log group N` statements log — prefix, packet header info and the first bytes of the
// packet from its network header — read in batches by one thread and woken for closing through an eventfd
// (as conntrack_events.h). portwall's drop log reads it (src/droplog.ts); no ulogd is involved.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/event_socket.h"

namespace portwall::nflog {

struct Packet {
  std::string prefix;             // NFULA_PREFIX
  uint16_t hw_protocol = 0;       // EtherType (host order)
  uint8_t hook = 0;               // the netfilter hook that logged it
  uint32_t indev = 0, outdev = 0;          // ifindexes, 0 when absent
  uint32_t physindev = 0, physoutdev = 0;  // bridge ports (br_netfilter), 0 when absent
  std::vector<uint8_t> payload;   // from the network header, at most the copy range
};

class EventReader {
 public:
  // Opens the socket inside `netns` (on the calling thread), binds `group` and asks for `copy_range` bytes of
  // each packet, delivered one at a time (queue threshold 1). Throws kNetlink EBUSY when another socket of the
  // namespace holds the group.
  EventReader(const std::string& netns, uint16_t group, uint32_t copy_range);
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Waits for packets (or stop()), then appends every queued one to `out`. `lost` grows when the socket
  // overflowed. Returns false once stopped.
  bool wait(std::vector<Packet>& out, uint32_t& lost);
  // Wakes wait() for good; callable from any thread.
  void stop();

 private:
  // One NFULNL_MSG_CONFIG request with its attribute, answered by an ack (an error ack throws kNetlink).
  void configure(uint16_t group, uint16_t attr, const void* data, size_t len);

  EventSocket sock_;
  uint32_t seq_ = 0;
};

}  // namespace portwall::nflog
