// ipsets through libipset, in a target network namespace. Every call runs on the calling thread inside
// `netns` (see netns.h) and throws portwall::Error: kNetlink with ENOENT (no such set), EEXIST (set exists),
// EAFNOSUPPORT (member of the wrong family for the set) or 0 with libipset's message for other refusals.
//
// libipset keeps process-wide state (type list, a set-name cache that knows nothing of namespaces), so calls
// are serialised and each runs in its own session, which clears that cache when it ends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace portwall::ipset {

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

void create(const std::string& netns, const CreateOptions& opts);
void destroy(const std::string& netns, const std::string& name);
void flush(const std::string& netns, const std::string& name);
void rename(const std::string& netns, const std::string& from, const std::string& to);
// Atomically exchanges the contents (and names) of two sets of compatible types.
void swap(const std::string& netns, const std::string& a, const std::string& b);

// Adds (existing members are fine) or deletes (absent members are fine) in bulk: libipset packs the members
// into as few netlink messages as fit, one round trip each, like `ipset restore` but without parsing text.
void add(const std::string& netns, const std::string& name, const std::vector<Member>& members);
void del(const std::string& netns, const std::string& name, const std::vector<Member>& members);
// One flag per member: 1 if the set contains it.
std::vector<uint8_t> test(const std::string& netns, const std::string& name, const std::vector<Member>& members);

// `ipset list` plain output of one set ("" = all sets); headers_only skips the members.
std::string list(const std::string& netns, const std::string& name, bool headers_only);

}  // namespace portwall::ipset
