// Small netlink helpers shared by the nftables modules.
#pragma once

#include <libmnl/libmnl.h>
#include <linux/netlink.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace portwall::nl {

// Calls fn(attr) for each attribute of nlh after `offset` payload bytes. (libmnl's mnl_attr_for_each macro
// relies on C's implicit void* conversion and does not compile as C++.)
template <typename Fn>
void for_each_attr(const nlmsghdr* nlh, size_t offset, Fn&& fn) {
  const auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  int rem = static_cast<int>(static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh)) -
                             reinterpret_cast<const char*>(a));
  while (mnl_attr_ok(a, rem)) {
    fn(a);
    rem -= static_cast<int>(MNL_ALIGN(a->nla_len));
    a = mnl_attr_next(a);
  }
}

// The attribute's payload as a string when it is NUL-terminated, else "".
inline std::string attr_str(const nlattr* a) {
  const char* p = static_cast<const char*>(mnl_attr_get_payload(a));
  size_t n = mnl_attr_get_payload_len(a);
  return n > 0 && std::memchr(p, 0, n) != nullptr ? std::string(p) : std::string();
}

}  // namespace portwall::nl
