// A conntrack event subscription: a NETLINK_NETFILTER socket in the target namespace, joined to the
// NEW and/or DESTROY groups, read in batches by one thread and woken for closing through an eventfd.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/conntrack.h"
#include "core/event_socket.h"

namespace portwall::conntrack {

enum EventGroups : unsigned { kEventNew = 1, kEventDestroy = 4 };  // NF_NETLINK_CONNTRACK_* bits

class EventReader {
 public:
  // Opens the socket inside `netns` (on the calling thread); the reader may then run on any thread.
  EventReader(const std::string& netns, unsigned groups);
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Waits for events (or stop()), then appends every queued one to `out`. `lost` grows when the kernel
  // dropped events because we read too slowly. Returns false once stopped.
  bool wait(std::vector<Entry>& out, uint32_t& lost);
  // Wakes wait() for good; callable from any thread.
  void stop();

 private:
  EventSocket sock_;
};

}  // namespace portwall::conntrack
