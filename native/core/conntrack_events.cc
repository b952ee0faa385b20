#include "core/conntrack_events.h"

#include <libmnl/libmnl.h>

namespace portwall::conntrack {

EventReader::EventReader(const std::string& netns, unsigned groups) : sock_(netns, NETLINK_NETFILTER, groups, 8 << 20) {}

void EventReader::stop() { sock_.stop(); }

bool EventReader::wait(std::vector<Entry>& out, uint32_t& lost) {
  if (sock_.poll(-1, "conntrack events") == EventSocket::Ready::kStopped) return false;
  std::vector<char> buf(64 * 1024);
  sock_.drain(buf, lost, "conntrack events", [&out](const nlmsghdr* h) {
    Entry e;
    if (parse_message(h, e)) out.push_back(e);
  });
  return true;
}

}  // namespace portwall::conntrack
