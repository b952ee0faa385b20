#include "core/conntrack.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

#include "core/error.h"
#include "core/netns.h"
#include "core/nl_socket.h"

namespace portwall::conntrack {
namespace {

// CTA_FILTER flag bits, as nf_internals.h numbers them (not exported in the uapi headers).
constexpr uint32_t kFilterIpSrc = 1u << 0;
constexpr uint32_t kFilterIpDst = 1u << 1;
constexpr uint32_t kFilterProtoNum = 1u << 3;
constexpr uint32_t kFilterSrcPort = 1u << 4;
constexpr uint32_t kFilterDstPort = 1u << 5;

// Requests are packed into chunks this large: one sendmsg each, the kernel handles them back to back.
constexpr size_t kChunkBytes = 256 * 1024;
constexpr size_t kMaxMessageBytes = 1024;
constexpr size_t kRecvBytes = 256 * 1024;
constexpr size_t kStatsRecvBytes = 8192;  // a stats reply or an ack is well under 100 bytes

struct CtDeleter {
  void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};
using CtPtr = std::unique_ptr<nf_conntrack, CtDeleter>;

CtPtr new_ct() {
  CtPtr ct(nfct_new());
  if (!ct) throw Error(ErrorKind::kSystem, ENOMEM, "nfct_new: out of memory");
  return ct;
}

bool has_ports(uint8_t proto) {
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP || proto == IPPROTO_UDPLITE ||
         proto == IPPROTO_DCCP;
}

bool is_icmp(uint8_t proto) { return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6; }

bool prefix_matches(const Addr& addr, const Addr& prefix, unsigned len) {
  unsigned bytes = len / 8, bits = len % 8;
  if (std::memcmp(addr, prefix, bytes) != 0) return false;
  if (bits == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (addr[bytes] & mask) == (prefix[bytes] & mask);
}

// Kernels before 6.8 ignore CTA_ZONE in dumps and, worse, in flushes: a zone flush would flush everything.
bool kernel_filters_zone() {
  static const bool supported = [] {
    utsname u{};
    if (uname(&u) != 0) return false;
    int major = 0, minor = 0;
    if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
    return major > 6 || (major == 6 && minor >= 8);
  }();
  return supported;
}

void read_addr(const nf_conntrack* ct, bool v4, int attr4, int attr6, Addr& out) {
  if (v4) {
    uint32_t a = nfct_get_attr_u32(ct, static_cast<nf_conntrack_attr>(attr4));
    std::memcpy(out, &a, 4);
  } else {
    const void* a = nfct_get_attr(ct, static_cast<nf_conntrack_attr>(attr6));
    if (a) std::memcpy(out, a, 16);
  }
}

void fill_entry(const nf_conntrack* ct, Entry& e) {
  bool v4 = nfct_get_attr_u8(ct, ATTR_L3PROTO) == AF_INET;
  e.family = v4 ? 4 : 6;
  e.proto = nfct_get_attr_u8(ct, ATTR_L4PROTO);
  // A zone set for the original direction only comes inside the original tuple, not as CTA_ZONE.
  e.zone = nfct_attr_is_set(ct, ATTR_ZONE)        ? nfct_get_attr_u16(ct, ATTR_ZONE)
           : nfct_attr_is_set(ct, ATTR_ORIG_ZONE) ? nfct_get_attr_u16(ct, ATTR_ORIG_ZONE)
                                                  : 0;
  e.mark = nfct_attr_is_set(ct, ATTR_MARK) ? nfct_get_attr_u32(ct, ATTR_MARK) : 0;
  e.status = nfct_attr_is_set(ct, ATTR_STATUS) ? nfct_get_attr_u32(ct, ATTR_STATUS) : 0;
  e.timeout = nfct_attr_is_set(ct, ATTR_TIMEOUT) ? nfct_get_attr_u32(ct, ATTR_TIMEOUT) : 0;
  e.id = nfct_attr_is_set(ct, ATTR_ID) ? nfct_get_attr_u32(ct, ATTR_ID) : 0;
  e.tcp_state = e.proto == IPPROTO_TCP && nfct_attr_is_set(ct, ATTR_TCP_STATE)
                    ? nfct_get_attr_u8(ct, ATTR_TCP_STATE) : 255;
  read_addr(ct, v4, ATTR_IPV4_SRC, ATTR_IPV6_SRC, e.orig_src);
  read_addr(ct, v4, ATTR_IPV4_DST, ATTR_IPV6_DST, e.orig_dst);
  read_addr(ct, v4, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC, e.reply_src);
  read_addr(ct, v4, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST, e.reply_dst);
  if (is_icmp(e.proto)) {
    e.orig_sport = e.reply_sport = ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID));
    e.orig_dport = static_cast<uint16_t>(nfct_get_attr_u8(ct, ATTR_ICMP_TYPE) << 8 |
                                         nfct_get_attr_u8(ct, ATTR_ICMP_CODE));
  } else if (has_ports(e.proto)) {
    e.orig_sport = ntohs(nfct_get_attr_u16(ct, ATTR_PORT_SRC));
    e.orig_dport = ntohs(nfct_get_attr_u16(ct, ATTR_PORT_DST));
    e.reply_sport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
    e.reply_dport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_DST));
  }
}

void set_tuple(nf_conntrack* ct, bool reply, const Entry& e, const Addr& src, const Addr& dst, uint16_t sport,
               uint16_t dport) {
  if (e.family == 4) {
    uint32_t s, d;
    std::memcpy(&s, src, 4);
    std::memcpy(&d, dst, 4);
    nfct_set_attr_u32(ct, reply ? ATTR_REPL_IPV4_SRC : ATTR_IPV4_SRC, s);
    nfct_set_attr_u32(ct, reply ? ATTR_REPL_IPV4_DST : ATTR_IPV4_DST, d);
  } else {
    nfct_set_attr(ct, reply ? ATTR_REPL_IPV6_SRC : ATTR_IPV6_SRC, src);
    nfct_set_attr(ct, reply ? ATTR_REPL_IPV6_DST : ATTR_IPV6_DST, dst);
  }
  nfct_set_attr_u8(ct, reply ? ATTR_REPL_L3PROTO : ATTR_L3PROTO, e.family == 4 ? AF_INET : AF_INET6);
  nfct_set_attr_u8(ct, reply ? ATTR_REPL_L4PROTO : ATTR_L4PROTO, e.proto);
  if (is_icmp(e.proto)) {
    if (reply) return;  // the kernel derives the reply ICMP tuple (echo reply type) itself
    nfct_set_attr_u16(ct, ATTR_ICMP_ID, htons(sport));
    nfct_set_attr_u8(ct, ATTR_ICMP_TYPE, static_cast<uint8_t>(dport >> 8));
    nfct_set_attr_u8(ct, ATTR_ICMP_CODE, static_cast<uint8_t>(dport & 0xff));
  } else if (has_ports(e.proto)) {
    nfct_set_attr_u16(ct, reply ? ATTR_REPL_PORT_SRC : ATTR_PORT_SRC, htons(sport));
    nfct_set_attr_u16(ct, reply ? ATTR_REPL_PORT_DST : ATTR_PORT_DST, htons(dport));
  }
}

bool all_zero(const Addr& a) {
  for (uint8_t b : a)
    if (b) return false;
  return true;
}

// The object of a NEW request (create) or of a DELETE request (original tuple, zone and, when known, id).
CtPtr build_ct(const Entry& e, bool for_create) {
  CtPtr ct = new_ct();
  set_tuple(ct.get(), false, e, e.orig_src, e.orig_dst, e.orig_sport, e.orig_dport);
  nfct_set_attr_u16(ct.get(), ATTR_ZONE, e.zone);
  if (!for_create) {
    if (e.id) nfct_set_attr_u32(ct.get(), ATTR_ID, e.id);
    return ct;
  }
  if (all_zero(e.reply_src) && all_zero(e.reply_dst))
    set_tuple(ct.get(), true, e, e.orig_dst, e.orig_src, e.orig_dport, e.orig_sport);
  else
    set_tuple(ct.get(), true, e, e.reply_src, e.reply_dst, e.reply_sport, e.reply_dport);
  nfct_set_attr_u32(ct.get(), ATTR_TIMEOUT, e.timeout);
  if (e.mark) nfct_set_attr_u32(ct.get(), ATTR_MARK, e.mark);
  if (e.status) nfct_set_attr_u32(ct.get(), ATTR_STATUS, e.status);
  if (e.proto == IPPROTO_TCP && e.tcp_state != 255) nfct_set_attr_u8(ct.get(), ATTR_TCP_STATE, e.tcp_state);
  return ct;
}

nlmsghdr* put_request(char* buf, uint8_t msg, uint16_t flags, uint32_t seq, uint8_t family) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  nlh->nlmsg_seq = seq;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = family;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  return nlh;
}

// Requests about one entry name its family in the nfgenmsg header; the kernel parses the tuple by it.
void build_entry_request(nlmsghdr* nlh, const Entry& e, bool for_create) {
  static_cast<nfgenmsg*>(mnl_nlmsg_get_payload(nlh))->nfgen_family = e.family == 4 ? AF_INET : AF_INET6;
  nfct_nlmsg_build(nlh, build_ct(e, for_create).get());
  // libnetfilter_conntrack leaves ATTR_ID out of what it builds: name a known entry by its id as well, so that
  // the kernel refuses (ENOENT) a newer entry that took the same tuple meanwhile.
  if (!for_create && e.id) mnl_attr_put_u32(nlh, CTA_ID, htonl(e.id));
}

// Sends `count` requests built by `build(i, nlh)` back to back in chunks, asking an ack of only the last
// message of each chunk: failures are reported anyway, so after that ack every outcome of the chunk is known.
// Returns the errno of each request (0 = done).
template <typename Build>
std::vector<int> pipeline(Socket& s, size_t count, uint8_t msg, uint16_t flags, Build build) {
  std::vector<int> result(count, 0);
  if (count == 0) return result;
  NlSocket& sock = s.nl();
  std::vector<char> chunk(kChunkBytes);
  std::vector<char> rbuf(kRecvBytes);
  const uint32_t base = s.next_seq();
  size_t i = 0;
  while (i < count) {
    size_t first = i, used = 0;
    nlmsghdr* last = nullptr;
    while (i < count && used + kMaxMessageBytes <= chunk.size()) {
      last = put_request(chunk.data() + used, msg, flags, base + static_cast<uint32_t>(i), AF_UNSPEC);
      build(i, last);
      used += NLMSG_ALIGN(last->nlmsg_len);
      ++i;
    }
    last->nlmsg_flags |= NLM_F_ACK;
    sock.send(chunk.data(), used);
    const uint32_t last_seq = last->nlmsg_seq;
    for (bool done = false; !done;) {
      ssize_t n = sock.recv(rbuf.data(), rbuf.size());
      int len = static_cast<int>(n);
      for (auto* h = reinterpret_cast<const nlmsghdr*>(rbuf.data()); mnl_nlmsg_ok(h, len);
           h = mnl_nlmsg_next(h, &len)) {
        if (h->nlmsg_type != NLMSG_ERROR) continue;
        uint32_t idx = h->nlmsg_seq - base;
        if (idx < first || idx >= i) continue;  // a stale reply from an earlier call on this socket
        if (mnl_nlmsg_get_payload_len(h) < sizeof(int)) continue;  // truncated: not an answer we can read
        auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
        result[idx] = -err->error;
        if (h->nlmsg_seq == last_seq) done = true;
      }
    }
  }
  return result;
}

// What every filter of the list asks for, so that the kernel may filter by it.
struct Common {
  bool zone = false, family = false, proto = false, mark = false;
  bool src_host = false, dst_host = false, sport = false, dport = false;  // exact values the kernel can match
  Filter f;
};

bool is_host(const Filter& f, uint8_t len) { return len == (f.family == 4 ? 32 : 128); }

Common common_of(const std::vector<Filter>& filters) {
  Common c;
  if (filters.empty()) return c;
  c.f = filters.front();
  c.zone = c.f.has(Filter::kZone);
  c.family = c.f.has(Filter::kFamily);
  c.proto = c.f.has(Filter::kProto);
  c.mark = c.f.has(Filter::kMark);
  c.src_host = c.dst_host = c.sport = c.dport = true;
  for (const Filter& f : filters) {
    c.zone = c.zone && f.has(Filter::kZone) && f.zone == c.f.zone;
    c.family = c.family && f.has(Filter::kFamily) && f.family == c.f.family;
    c.proto = c.proto && f.has(Filter::kProto) && f.proto == c.f.proto;
    c.mark = c.mark && f.has(Filter::kMark) && f.mark == c.f.mark && f.mark_mask == c.f.mark_mask;
    c.src_host = c.src_host && f.has(Filter::kSrc) && is_host(f, f.src_len) && !std::memcmp(f.src, c.f.src, 16);
    c.dst_host = c.dst_host && f.has(Filter::kDst) && is_host(f, f.dst_len) && !std::memcmp(f.dst, c.f.dst, 16);
    c.sport = c.sport && f.has(Filter::kSport) && f.sport_min == f.sport_max && f.sport_min == c.f.sport_min;
    c.dport = c.dport && f.has(Filter::kDport) && f.dport_min == f.dport_max && f.dport_min == c.f.dport_min;
  }
  return c;
}

// Calls f on each attribute in [begin, end): libmnl's iteration macros do not compile as C++.
template <typename F>
void each_attr(const void* begin, const void* end, F f) {
  auto* a = static_cast<const nlattr*>(begin);
  while (mnl_attr_ok(a, static_cast<int>(static_cast<const char*>(end) - reinterpret_cast<const char*>(a)))) {
    f(a);
    a = mnl_attr_next(a);
  }
}

template <typename F>
void each_nested(const nlattr* nest, F f) {
  auto* begin = static_cast<const char*>(mnl_attr_get_payload(nest));
  each_attr(begin, begin + mnl_attr_get_payload_len(nest), f);
}

// The fields filters look at (family, zone of the original direction, mark, original tuple), read straight
// from the attributes: cheap enough to run on every dumped entry, so that only matches pay for a full
// libnetfilter_conntrack parse.
void peek_tuple(const nlattr* tuple, Entry& e) {
  each_nested(tuple, [&](const nlattr* a) {
    if (mnl_attr_get_type(a) == CTA_TUPLE_IP) {
      each_nested(a, [&](const nlattr* b) {
        uint16_t len = mnl_attr_get_payload_len(b);
        switch (mnl_attr_get_type(b)) {
          case CTA_IP_V4_SRC: if (len >= 4) std::memcpy(e.orig_src, mnl_attr_get_payload(b), 4); break;
          case CTA_IP_V4_DST: if (len >= 4) std::memcpy(e.orig_dst, mnl_attr_get_payload(b), 4); break;
          case CTA_IP_V6_SRC: if (len >= 16) std::memcpy(e.orig_src, mnl_attr_get_payload(b), 16); break;
          case CTA_IP_V6_DST: if (len >= 16) std::memcpy(e.orig_dst, mnl_attr_get_payload(b), 16); break;
        }
      });
    } else if (mnl_attr_get_type(a) == CTA_TUPLE_ZONE) {
      // The zone of the original direction alone (the entry then has no CTA_ZONE).
      if (mnl_attr_get_payload_len(a) >= 2) e.zone = ntohs(mnl_attr_get_u16(a));
    } else if (mnl_attr_get_type(a) == CTA_TUPLE_PROTO) {
      each_nested(a, [&](const nlattr* b) {
        uint16_t len = mnl_attr_get_payload_len(b);
        switch (mnl_attr_get_type(b)) {
          case CTA_PROTO_NUM: if (len >= 1) e.proto = mnl_attr_get_u8(b); break;
          case CTA_PROTO_SRC_PORT: if (len >= 2) e.orig_sport = ntohs(mnl_attr_get_u16(b)); break;
          case CTA_PROTO_DST_PORT: if (len >= 2) e.orig_dport = ntohs(mnl_attr_get_u16(b)); break;
        }
      });
    }
  });
}

Entry peek(const nlmsghdr* nlh) {
  Entry e;
  e.family = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh))->nfgen_family == AF_INET ? 4 : 6;
  each_attr(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)), mnl_nlmsg_get_payload_tail(nlh), [&](const nlattr* a) {
    uint16_t len = mnl_attr_get_payload_len(a);
    switch (mnl_attr_get_type(a)) {
      case CTA_TUPLE_ORIG: peek_tuple(a, e); break;
      case CTA_ZONE: if (len >= 2) e.zone = ntohs(mnl_attr_get_u16(a)); break;
      case CTA_MARK: if (len >= 4) e.mark = ntohl(mnl_attr_get_u32(a)); break;
    }
  });
  return e;
}

struct DumpState {
  const std::vector<Filter>* filters;
  std::vector<Entry>* out;
  int kernel_err = 0;  // the errno the kernel ended the dump with (NLMSG_ERROR or NLMSG_DONE status)
};

int on_dump_message(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<DumpState*>(data);
  if (!st->filters->empty()) {
    const Entry light = peek(nlh);
    bool wanted = false;
    for (const Filter& f : *st->filters) wanted = wanted || f.matches(light);
    if (!wanted) return MNL_CB_OK;
  }
  Entry e;
  if (!parse_message(nlh, e)) return MNL_CB_OK;
  e.event = 0;
  st->out->push_back(e);
  return MNL_CB_OK;
}

// libmnl's default end-of-dump handler ignores the status the kernel puts in NLMSG_DONE, which would turn a
// dump that failed part-way into a short, "successful" one.
int on_dump_done(const nlmsghdr* h, void* data) {
  if (mnl_nlmsg_get_payload_len(h) >= sizeof(int)) {
    int status = *static_cast<const int*>(mnl_nlmsg_get_payload(h));
    if (status < 0) {
      errno = static_cast<DumpState*>(data)->kernel_err = -status;
      return MNL_CB_ERROR;
    }
  }
  return MNL_CB_STOP;
}

int on_dump_error(const nlmsghdr* h, void* data) {
  if (mnl_nlmsg_get_payload_len(h) < sizeof(nlmsgerr)) {
    errno = EBADMSG;
    return MNL_CB_ERROR;
  }
  int err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h))->error;
  if (err == 0) return MNL_CB_STOP;
  errno = static_cast<DumpState*>(data)->kernel_err = -err;
  return MNL_CB_ERROR;
}

// Not const: mnl_cb_run2 takes a non-const array (it never writes to it).
mnl_cb_t kDumpControl[NLMSG_MIN_TYPE] = {nullptr, nullptr, on_dump_error, on_dump_done};

void dump_into(Socket& s, const std::vector<Filter>& filters, bool kernel_proto, std::vector<Entry>& out) {
  NlSocket& sock = s.nl();
  const Common c = common_of(filters);
  std::vector<char> buf(kRecvBytes);
  const uint32_t seq = s.next_seq();
  uint8_t family = c.family ? (c.f.family == 4 ? AF_INET : AF_INET6) : AF_UNSPEC;
  nlmsghdr* nlh = put_request(buf.data(), IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq, family);
  if (c.zone && kernel_filters_zone()) mnl_attr_put_u16(nlh, CTA_ZONE, htons(c.f.zone));
  if (c.mark && c.f.mark_mask != 0) {
    mnl_attr_put_u32(nlh, CTA_MARK, htonl(c.f.mark));
    mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(c.f.mark_mask));
  }
  // The kernel matches a filter tuple exactly (no prefixes, no ranges) and parses it only for one family;
  // whatever it cannot express is matched here afterwards.
  uint32_t flags = 0;
  if (c.family && kernel_proto) {
    // IPv4 only: ctnetlink_filter_match_tuple() inverts its IPv6 address comparison (true up to 6.18 at
    // least), so an IPv6 address filter would drop exactly the entries asked for.
    if (c.src_host && c.f.family == 4) flags |= kFilterIpSrc;
    if (c.dst_host && c.f.family == 4) flags |= kFilterIpDst;
    if (c.proto) flags |= kFilterProtoNum;
    if (c.proto && c.sport && has_ports(c.f.proto)) flags |= kFilterSrcPort;
    if (c.proto && c.dport && has_ports(c.f.proto)) flags |= kFilterDstPort;
  }
  if (flags) {
    nlattr* filter = mnl_attr_nest_start(nlh, CTA_FILTER);
    mnl_attr_put_u32(nlh, CTA_FILTER_ORIG_FLAGS, flags);
    mnl_attr_put_u32(nlh, CTA_FILTER_REPLY_FLAGS, 0);
    mnl_attr_nest_end(nlh, filter);
    nlattr* tuple = mnl_attr_nest_start(nlh, CTA_TUPLE_ORIG);
    if (flags & (kFilterIpSrc | kFilterIpDst)) {
      const bool v4 = c.f.family == 4;
      nlattr* ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
      if (flags & kFilterIpSrc) mnl_attr_put(nlh, v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, v4 ? 4 : 16, c.f.src);
      if (flags & kFilterIpDst) mnl_attr_put(nlh, v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, v4 ? 4 : 16, c.f.dst);
      mnl_attr_nest_end(nlh, ip);
    }
    if (flags & kFilterProtoNum) {
      nlattr* proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
      mnl_attr_put_u8(nlh, CTA_PROTO_NUM, c.f.proto);
      if (flags & kFilterSrcPort) mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(c.f.sport_min));
      if (flags & kFilterDstPort) mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(c.f.dport_min));
      mnl_attr_nest_end(nlh, proto);
    }
    mnl_attr_nest_end(nlh, tuple);
  }
  sock.send(nlh, nlh->nlmsg_len);
  DumpState st{&filters, &out};
  for (;;) {
    ssize_t n = sock.recv(buf.data(), buf.size());
    int ret = mnl_cb_run2(buf.data(), static_cast<size_t>(n), seq, sock.portid(), on_dump_message, &st, kDumpControl,
                          MNL_ARRAY_SIZE(kDumpControl));
    if (ret == MNL_CB_STOP) return;
    if (ret < 0) {
      int err = errno;
      // The kernel's own refusal ends the exchange. Anything else (a reply of another sequence or port, a
      // truncated error, an interrupted dump) may leave replies queued: kSystem, so that a held socket is
      // replaced rather than reused out of step.
      if (st.kernel_err) throw Error(ErrorKind::kNetlink, err, std::string("conntrack dump: ") + std::strerror(err));
      throw Error(ErrorKind::kSystem, err, std::string("conntrack dump: unexpected reply: ") + std::strerror(err));
    }
  }
}

std::vector<Entry> dump_on(Socket& sock, const std::vector<Filter>& filters) {
  std::vector<Entry> out;
  try {
    dump_into(sock, filters, true, out);
  } catch (const Error& e) {
    // Kernels without CTA_FILTER (< 5.9) refuse it; the same filter then runs here.
    if (e.kind() != ErrorKind::kNetlink || (e.err() != EINVAL && e.err() != EOPNOTSUPP)) throw;
    out.clear();
    dump_into(sock, filters, false, out);
  }
  return out;
}

}  // namespace

bool Filter::matches(const Entry& e) const {
  if (has(kZone) && e.zone != zone) return false;
  if (has(kFamily) && e.family != family) return false;
  if (has(kProto) && e.proto != proto) return false;
  if (has(kMark) && (e.mark & mark_mask) != (mark & mark_mask)) return false;
  if (has(kSrc) && (e.family != family || !prefix_matches(e.orig_src, src, src_len))) return false;
  if (has(kDst) && (e.family != family || !prefix_matches(e.orig_dst, dst, dst_len))) return false;
  if (has(kSport) && (!has_ports(e.proto) || e.orig_sport < sport_min || e.orig_sport > sport_max)) return false;
  if (has(kDport) && (!has_ports(e.proto) || e.orig_dport < dport_min || e.orig_dport > dport_max)) return false;
  return true;
}

bool parse_message(const void* msg, Entry& out) {
  auto* nlh = static_cast<const nlmsghdr*>(msg);
  if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_CTNETLINK) return false;
  CtPtr ct = new_ct();
  if (nfct_nlmsg_parse(nlh, ct.get()) < 0) return false;
  fill_entry(ct.get(), out);
  uint8_t type = NFNL_MSG_TYPE(nlh->nlmsg_type);
  if (type == IPCTNL_MSG_CT_DELETE) out.event = 2;
  else if (nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) out.event = 1;
  else out.event = 3;
  return true;
}

Socket::Socket(const std::string& netns) : seq_(static_cast<uint32_t>(time(nullptr)) << 8) {
  NetnsScope scope(netns);
  nl_ = std::make_unique<NlSocket>(NETLINK_NETFILTER);
}

Socket::~Socket() = default;

std::vector<Entry> dump(Socket& sock, const std::vector<Filter>& filters) { return dump_on(sock, filters); }

std::vector<Entry> dump(const std::string& netns, const std::vector<Filter>& filters) {
  Socket sock(netns);
  return dump_on(sock, filters);
}

namespace {

struct StatsState {
  bool seen = false;     // a CTA_STATS_GLOBAL_ENTRIES attribute arrived
  uint32_t entries = 0;
  int kernel_err = 0;    // the errno the kernel refused the request with
};

int on_stats_message(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<StatsState*>(data);
  if (nlh->nlmsg_type != ((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS)) return MNL_CB_OK;
  each_attr(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)), mnl_nlmsg_get_payload_tail(nlh), [&](const nlattr* a) {
    if (mnl_attr_get_type(a) == CTA_STATS_GLOBAL_ENTRIES && mnl_attr_get_payload_len(a) >= 4) {
      st->entries = ntohl(mnl_attr_get_u32(a));
      st->seen = true;
    }
  });
  return MNL_CB_OK;
}

// The request asks for an ack: a zero NLMSG_ERROR after the reply ends the exchange, a non-zero one is the
// kernel's refusal.
int on_stats_error(const nlmsghdr* h, void* data) {
  if (mnl_nlmsg_get_payload_len(h) < sizeof(nlmsgerr)) {
    errno = EBADMSG;
    return MNL_CB_ERROR;
  }
  int err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h))->error;
  if (err == 0) return MNL_CB_STOP;
  errno = static_cast<StatsState*>(data)->kernel_err = -err;
  return MNL_CB_ERROR;
}

// A reply to a plain request never ends with NLMSG_DONE: one here is out of step.
int on_stats_done(const nlmsghdr*, void*) {
  errno = EPROTO;
  return MNL_CB_ERROR;
}

mnl_cb_t kStatsControl[NLMSG_MIN_TYPE] = {nullptr, nullptr, on_stats_error, on_stats_done};

}  // namespace

uint32_t count(Socket& s) {
  NlSocket& sock = s.nl();
  std::vector<char> buf(kStatsRecvBytes);
  const uint32_t seq = s.next_seq();
  // Not the per-CPU variant (IPCTNL_MSG_CT_GET_STATS_CPU, a dump): one message with the namespace's count.
  nlmsghdr* nlh = put_request(buf.data(), IPCTNL_MSG_CT_GET_STATS, NLM_F_ACK, seq, AF_UNSPEC);
  sock.send(nlh, nlh->nlmsg_len);
  StatsState st;
  for (;;) {
    ssize_t n = sock.recv(buf.data(), buf.size());
    int ret = mnl_cb_run2(buf.data(), static_cast<size_t>(n), seq, sock.portid(), on_stats_message, &st,
                          kStatsControl, MNL_ARRAY_SIZE(kStatsControl));
    if (ret == MNL_CB_STOP) break;
    if (ret < 0) {
      int err = errno;
      // As for a dump: the kernel's refusal was read to its end (kNetlink keeps a held socket); anything else
      // may leave replies queued (kSystem replaces it).
      if (st.kernel_err) throw Error(ErrorKind::kNetlink, err, std::string("conntrack count: ") + std::strerror(err));
      throw Error(ErrorKind::kSystem, err, std::string("conntrack count: unexpected reply: ") + std::strerror(err));
    }
  }
  if (!st.seen)
    throw Error(ErrorKind::kSystem, EPROTO, "conntrack count: the kernel's reply carried no CTA_STATS_GLOBAL_ENTRIES");
  return st.entries;
}

uint32_t count(const std::string& netns) {
  Socket sock(netns);
  return count(sock);
}

namespace {

// Deletes each of `victims` by tuple, zone and id on `sock`.
uint32_t remove_on(Socket& sock, const std::vector<Entry>& victims) {
  std::vector<int> errs = pipeline(sock, victims.size(), IPCTNL_MSG_CT_DELETE, 0, [&](size_t i, nlmsghdr* nlh) {
    build_entry_request(nlh, victims[i], false);
  });
  uint32_t deleted = 0;
  for (size_t i = 0; i < errs.size(); ++i) {
    if (errs[i] == 0) ++deleted;
    else if (errs[i] != ENOENT)  // ENOENT: it expired or was replaced meanwhile, which is what we wanted
      throw Error(ErrorKind::kNetlink, errs[i], std::string("conntrack delete: ") + std::strerror(errs[i]),
                  static_cast<int>(i));
  }
  return deleted;
}

}  // namespace

uint32_t remove(Socket& sock, const std::vector<Filter>& filters) {
  if (filters.empty()) return 0;
  return remove_on(sock, dump_on(sock, filters));
}

uint32_t remove(const std::string& netns, const std::vector<Filter>& filters) {
  if (filters.empty()) return 0;
  Socket sock(netns);
  return remove(sock, filters);
}

uint32_t remove_entries(Socket& sock, const std::vector<Entry>& entries) { return remove_on(sock, entries); }

uint32_t remove_entries(const std::string& netns, const std::vector<Entry>& entries) {
  if (entries.empty()) return 0;
  Socket sock(netns);
  return remove_on(sock, entries);
}

uint32_t create(const std::string& netns, const std::vector<Entry>& entries) {
  Socket sock(netns);
  return create(sock, entries);
}

uint32_t create(Socket& sock, const std::vector<Entry>& entries) {
  std::vector<int> errs = pipeline(sock, entries.size(), IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL,
                                   [&](size_t i, nlmsghdr* nlh) {
                                     build_entry_request(nlh, entries[i], true);
                                   });
  std::vector<size_t> created;
  size_t failed = entries.size();
  for (size_t i = 0; i < errs.size(); ++i) {
    if (errs[i] == 0) created.push_back(i);
    else if (failed == entries.size()) failed = i;
  }
  if (failed == entries.size()) return static_cast<uint32_t>(created.size());
  pipeline(sock, created.size(), IPCTNL_MSG_CT_DELETE, 0, [&](size_t i, nlmsghdr* nlh) {
    build_entry_request(nlh, entries[created[i]], false);
  });
  int err = errs[failed];
  throw Error(ErrorKind::kNetlink, err,
              "conntrack create of entry " + std::to_string(failed) + ": " + std::strerror(err) +
                  " (the entries created before it were removed again)",
              static_cast<int>(failed));
}

void flush_zone(const std::string& netns, uint16_t zone, uint8_t family) {
  Socket sock(netns);
  flush_zone(sock, zone, family);
}

void flush_zone(Socket& sock, uint16_t zone, uint8_t family) {
  if (!kernel_filters_zone()) {
    Filter f;
    f.fields = Filter::kZone | (family ? uint32_t{Filter::kFamily} : 0u);
    f.zone = zone;
    f.family = family;
    remove(sock, {f});
    return;
  }
  std::vector<int> errs = pipeline(sock, 1, IPCTNL_MSG_CT_DELETE, 0, [&](size_t, nlmsghdr* nlh) {
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    nfg->nfgen_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
    nfg->version = family ? 1 : 0;  // a version-0 flush ignores the family
    mnl_attr_put_u16(nlh, CTA_ZONE, htons(zone));
  });
  if (errs[0] != 0 && errs[0] != ENOENT)
    throw Error(ErrorKind::kNetlink, errs[0], std::string("conntrack zone flush: ") + std::strerror(errs[0]));
}

}  // namespace portwall::conntrack
