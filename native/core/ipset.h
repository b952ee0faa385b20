// ipsets through libipset, in a target network namespace: on a Socket held across calls (one per long-lived
// client and namespace, as for nftables and conntrack: docs/netlink.md), or on one opened inside `netns` (see
// netns.h) for the call alone. Calls run on the calling thread and throw portwall::Error: kNetlink with ENOENT
// (no such set), EEXIST (set exists), EAFNOSUPPORT (member of the wrong family for the set) or 0 with libipset's
// message for other refusals.
//
// libipset keeps process-wide state (type list, a set-name cache that knows nothing of namespaces), so calls
// are serialised, and each starts with that cache cleared and its session's data and options reset.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct ipset_session;

namespace portwall::ipset {

// A libipset session whose netlink socket was opened inside a namespace and stays bound to it. Closing a
// netfilter socket can take milliseconds (docs/netlink.md), so a long-lived client keeps one
// (core/held_socket.h) instead of a socket per call.
class Socket {
 public:
  explicit Socket(const std::string& netns);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // The session; throws kSystem when a reopen after a failed call failed too.
  struct ipset_session* session();
  // What libipset printed during the current call (`ipset list` output).
  std::string& output() { return out_; }
  // A fresh session in the same namespace, after a call that failed: libipset may still buffer the members
  // of an unfinished bulk add or delete, which the next command would send. Never throws.
  void reopen() noexcept;

 private:
  static int print(struct ipset_session*, void* p, const char* fmt, ...);
  const std::string netns_;
  struct ipset_session* s_ = nullptr;
  std::string out_;
};

struct CreateOptions {
  std::string name;
  std::string type;         // "hash:ip", "hash:net", "hash:net,iface"
  uint8_t family = 4;       // 4 or 6
  uint32_t hashsize = 0;    // 0 = kernel default
  uint32_t maxelem = 0;     // 0 = kernel default
  uint32_t timeout = 0;     // default element timeout in seconds, 0 = none
  bool counters = false;
  bool comment = false;
};

struct Member {
  uint8_t family = 4;       // 4 or 6
  uint8_t cidr = 0;         // 0 = a host (no CIDR attribute)
  uint8_t addr[16] = {};    // network order; IPv4 in the first 4 bytes
  std::string iface;        // hash:net,iface only
};

// Each call on a Socket: a held one, or one opened in the namespace for the call alone (Socket sock(netns)).
void create(Socket& sock, const CreateOptions& opts);
void destroy(Socket& sock, const std::string& name);
void flush(Socket& sock, const std::string& name);
void rename(Socket& sock, const std::string& from, const std::string& to);
// Atomically exchanges the contents (and names) of two sets of compatible types.
void swap(Socket& sock, const std::string& a, const std::string& b);

// Adds (existing members are fine) or deletes (absent members are fine) in bulk: libipset packs the members
// into as few netlink messages as fit, one round trip each, like `ipset restore` but without parsing text.
void add(Socket& sock, const std::string& name, const std::vector<Member>& members);
void del(Socket& sock, const std::string& name, const std::vector<Member>& members);
// One flag per member: 1 if the set contains it.
std::vector<uint8_t> test(Socket& sock, const std::string& name, const std::vector<Member>& members);

// `ipset list` plain output of one set ("" = all sets); headers_only skips the members.
std::string list(Socket& sock, const std::string& name, bool headers_only);

}  // namespace portwall::ipset
