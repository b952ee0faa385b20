// Conntrack over ctnetlink (libnetfilter_conntrack on libmnl): filtered dump, entry count, pipelined delete,
// batched create, zone flush. Every call runs on the calling thread and throws portwall::Error. Each comes in
// two forms: on a Socket the caller holds (HeldSocket<Socket> keeps one across calls, held_socket.h), or on a
// socket opened inside `netns` (see netns.h) for that one call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace portwall {
class NlSocket;
}

namespace portwall::conntrack {

// A NETLINK_NETFILTER socket for ctnetlink requests, opened inside `netns` ("" = the caller's namespace, a
// name under /run/netns, or a path) and bound to that namespace for its life; the calling thread goes straight
// back to its own. One call at a time: every call leaves it with nothing queued, unless it threw kSystem.
class Socket {
 public:
  explicit Socket(const std::string& netns);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  NlSocket& nl() { return *nl_; }
  // The first sequence number of a new request; each call gets room for a million pipelined requests.
  uint32_t next_seq() { return seq_ += 1u << 20; }

 private:
  std::unique_ptr<NlSocket> nl_;
  uint32_t seq_;
};

// One address of either family; IPv4 uses the first 4 bytes, network order.
using Addr = uint8_t[16];

// One connection as portwall sees it. For ICMP/ICMPv6, sport is the echo id and dport is (type << 8 | code).
struct Entry {
  uint8_t family = 0;      // 4 or 6
  uint8_t proto = 0;       // IPPROTO_*
  uint16_t zone = 0;       // of the original direction (a zone set for that direction only included)
  uint32_t mark = 0;
  uint32_t status = 0;     // IPS_* bits
  uint32_t timeout = 0;    // seconds
  uint32_t id = 0;         // kernel conntrack id (dump/events only)
  uint8_t tcp_state = 255; // TCP_CONNTRACK_*, 255 = not TCP or unknown
  uint8_t event = 0;       // 0 dump, 1 new, 2 destroy
  Addr orig_src{}, orig_dst{}, reply_src{}, reply_dst{};
  uint16_t orig_sport = 0, orig_dport = 0, reply_sport = 0, reply_dport = 0;
};

// One filter; an entry matches when every present field matches. A list of filters matches their union.
struct Filter {
  enum Field : uint32_t {
    kZone = 1, kFamily = 2, kProto = 4, kMark = 8, kSrc = 16, kDst = 32, kSport = 64, kDport = 128,
  };
  uint32_t fields = 0;
  uint16_t zone = 0;       // of the original direction (a zone set for that direction only included)
  uint8_t family = 0;  // 4 or 6; required by kSrc/kDst
  uint8_t proto = 0;
  uint32_t mark = 0, mark_mask = 0xffffffff;
  uint8_t src_len = 0, dst_len = 0;
  Addr src{}, dst{};
  uint16_t sport_min = 0, sport_max = 0, dport_min = 0, dport_max = 0;

  bool has(Field f) const { return (fields & f) != 0; }
  bool matches(const Entry& e) const;
};

// Entries matching any of `filters` (all entries when empty). The kernel filters what it can (family, zone on
// kernels ≥ 6.8, mark, protocol); prefixes and port ranges are matched here, never in JS.
std::vector<Entry> dump(Socket& sock, const std::vector<Filter>& filters);
std::vector<Entry> dump(const std::string& netns, const std::vector<Filter>& filters);

// How many entries the socket's network namespace tracks: nf_conntrack_count(net), every zone and family,
// entries not yet confirmed (a first packet in flight) included, so never fewer than a dump would return.
// One IPCTNL_MSG_CT_GET_STATS request, answered from a counter: unlike a dump (or `conntrack -L`), it does not
// walk the conntrack hash, which all namespaces share and which a dump walks whole even for an empty table.
uint32_t count(Socket& sock);
uint32_t count(const std::string& netns);

// Deletes the entries matching any of `filters`, pipelined on one socket; returns how many the kernel deleted
// (entries that vanished meanwhile are not counted). An empty filter list deletes nothing.
uint32_t remove(Socket& sock, const std::vector<Filter>& filters);
uint32_t remove(const std::string& netns, const std::vector<Filter>& filters);

// Deletes exactly `entries` (as a dump returned them): each by its original tuple, zone and, when non-zero, its
// kernel id, pipelined on one socket, so an entry that was replaced meanwhile (same tuple, new id) stays.
// Returns how many the kernel deleted (entries that vanished meanwhile are not counted).
uint32_t remove_entries(Socket& sock, const std::vector<Entry>& entries);
uint32_t remove_entries(const std::string& netns, const std::vector<Entry>& entries);

// Creates `entries` (reply tuple derived from the original when its addresses are all zero). All or nothing:
// if the kernel refuses one, those already created by this call are deleted again and the error, with the
// entry's index as op_index, is thrown.
uint32_t create(Socket& sock, const std::vector<Entry>& entries);
uint32_t create(const std::string& netns, const std::vector<Entry>& entries);

// Removes every entry of `zone` (family 0 = both). One kernel message on kernels that filter flushes by zone.
void flush_zone(Socket& sock, uint16_t zone, uint8_t family);
void flush_zone(const std::string& netns, uint16_t zone, uint8_t family);

// Parses one ctnetlink message (a dump reply or an event) into `out`; false if it carries no conntrack.
bool parse_message(const void* nlh, Entry& out);

}  // namespace portwall::conntrack
