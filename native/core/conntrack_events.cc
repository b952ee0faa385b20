#include "core/conntrack_events.h"

#include <libmnl/libmnl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "core/error.h"

namespace portwall::conntrack {

EventReader::EventReader(const std::string& netns, unsigned groups) : sock_(netns, NETLINK_NETFILTER, groups, 8 << 20) {}

void EventReader::stop() { sock_.stop(); }

bool EventReader::wait(std::vector<Entry>& out, uint32_t& lost) {
  if (sock_.poll(-1, "conntrack events") == EventSocket::Ready::kStopped) return false;
  std::vector<char> buf(64 * 1024);
  // At most a bounded number of datagrams per call, so a steady flood cannot keep stop() from being seen.
  for (int datagrams = 0; datagrams < 256; ++datagrams) {
    ssize_t n = recv(sock_.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {  // the socket overflowed: events were dropped, later ones still come
        ++lost;
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      throw_errno("recv conntrack events");
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) {
      Entry e;
      if (parse_message(h, e)) out.push_back(e);
    }
  }
  return true;
}

}  // namespace portwall::conntrack
