#include "core/nft_commit.h"

#include <arpa/inet.h>
#include <endian.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/faults.h"
#include "core/netlink_util.h"
#include "core/nft_encode.h"
#include "core/nft_socket.h"

namespace portwall::nft {

namespace {

// Where each message of an encoded batch starts, and which of them the kernel will acknowledge.
struct Layout {
  uint32_t first_seq = 0;
  std::vector<size_t> offset;
  std::vector<uint8_t> wants_ack;
  size_t acks = 0;
};

[[noreturn]] void bad_bytes(size_t index, const std::string& msg) {
  throw Error(ErrorKind::kWire, EINVAL, "encoded batch, netlink message " + std::to_string(index) + ": " + msg,
              static_cast<int>(index));
}

// The bytes may come back from JS (nftSendEncoded), so check they are whole messages, one transaction.
// Messages outside BEGIN … END would each be applied on their own, breaking atomicity.
Layout scan(const uint8_t* bytes, size_t len) {
  Layout l;
  size_t off = 0;
  while (off < len) {
    size_t i = l.offset.size();
    if (len - off < NLMSG_HDRLEN) bad_bytes(i, "truncated header");
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(bytes + off);
    if (nlh->nlmsg_len < NLMSG_HDRLEN || nlh->nlmsg_len > len - off) bad_bytes(i, "bad length");
    if (i == 0) l.first_seq = nlh->nlmsg_seq;
    if (nlh->nlmsg_seq != l.first_seq + i) bad_bytes(i, "sequence numbers must be consecutive");
    bool begin = nlh->nlmsg_type == NFNL_MSG_BATCH_BEGIN, end = nlh->nlmsg_type == NFNL_MSG_BATCH_END;
    const size_t start = off;
    off += std::min<size_t>(NLMSG_ALIGN(nlh->nlmsg_len), len - off);
    if (begin != (i == 0)) bad_bytes(i, "a batch starts with exactly one BEGIN");
    if (end != (off == len)) bad_bytes(i, "a batch ends with exactly one END");
    bool ack = (nlh->nlmsg_flags & NLM_F_ACK) != 0;
    l.offset.push_back(start);
    l.wants_ack.push_back(ack);
    l.acks += ack;
  }
  if (l.offset.empty()) bad_bytes(0, "no messages");
  return l;
}

const char* family_name(uint8_t f) {
  switch (f) {
    case NFPROTO_INET: return "inet";
    case NFPROTO_IPV4: return "ip";
    case NFPROTO_ARP: return "arp";
    case NFPROTO_NETDEV: return "netdev";
    case NFPROTO_BRIDGE: return "bridge";
    case NFPROTO_IPV6: return "ip6";
    default: return "unspec";
  }
}

// "DELRULE inet portwall/input handle 7": enough to find the object without the wire record at hand.
std::string describe(const nlmsghdr* nlh) {
  if (nlh->nlmsg_type == NFNL_MSG_BATCH_BEGIN) {
    std::string s = "batch BEGIN";
    nl::for_each_attr(nlh, sizeof(nfgenmsg), [&](const nlattr* a) {
      if (mnl_attr_get_type(a) == NFNL_BATCH_GENID && mnl_attr_get_payload_len(a) == sizeof(uint32_t)) {
        s += " genid " + std::to_string(ntohl(mnl_attr_get_u32(a)));
      }
    });
    return s;
  }
  if (nlh->nlmsg_type == NFNL_MSG_BATCH_END) return "batch END";
  static const char* const kNames[] = {
      "NEWTABLE", "GETTABLE", "DELTABLE", "NEWCHAIN", "GETCHAIN", "DELCHAIN", "NEWRULE", "GETRULE",
      "DELRULE", "NEWSET", "GETSET", "DELSET", "NEWSETELEM", "GETSETELEM", "DELSETELEM", "NEWGEN",
      "GETGEN", "TRACE", "NEWOBJ", "GETOBJ", "DELOBJ", "GETOBJ_RESET", "NEWFLOWTABLE", "GETFLOWTABLE",
      "DELFLOWTABLE", "GETRULE_RESET", "DESTROYTABLE", "DESTROYCHAIN", "DESTROYRULE", "DESTROYSET",
      "DESTROYSETELEM",
  };
  const unsigned type = nlh->nlmsg_type & 0xff;
  std::string s = type < sizeof kNames / sizeof *kNames ? kNames[type] : "type " + std::to_string(type);
  if (mnl_nlmsg_get_payload_len(nlh) < sizeof(nfgenmsg)) return s;
  s += ' ';
  s += family_name(static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh))->nfgen_family);
  // Attribute 1 is always the table and 2 the chain or set; 3 is a chain's name or a rule's handle.
  const bool rule = type == NFT_MSG_NEWRULE || type == NFT_MSG_DELRULE || type == kMsgDestroyRule;
  const bool chain = type == NFT_MSG_NEWCHAIN || type == NFT_MSG_DELCHAIN || type == kMsgDestroyChain;
  std::string attr[4], handle;
  nl::for_each_attr(nlh, sizeof(nfgenmsg), [&](const nlattr* a) {
    uint16_t t = mnl_attr_get_type(a);
    if (rule && t == 3 && mnl_attr_get_payload_len(a) == sizeof(uint64_t)) {
      handle = " handle " + std::to_string(be64toh(mnl_attr_get_u64(a)));
    } else if (t == 1 || t == 2 || (chain && t == 3)) {
      attr[t] = nl::attr_str(a);
    }
  });
  std::string names;
  for (const std::string& v : attr) {
    if (!v.empty()) names += (names.empty() ? " " : "/") + v;
  }
  return s + names + handle;
}

CommitResult send_scanned(NftSocket& sock, const uint8_t* bytes, size_t len, const Layout& l,
                          const std::vector<int32_t>* record_of_message) {
  const size_t n = l.offset.size();
  if (record_of_message && record_of_message->size() != n) {
    throw Error(ErrorKind::kSystem, EINVAL, "internal: message map does not match the encoded batch");
  }
  // A held socket is clean between calls; this costs one non-blocking receive and makes sure no earlier
  // batch's acknowledgement (same sequence numbers) can be taken for this one's.
  sock.discard_queued();
  // An ACK costs ~1 KiB of receive buffer in the kernel's accounting (skb overhead included).
  sock.size_buffers(len + (64u << 10), l.acks * 1024 + (256u << 10));
#ifdef PORTWALL_FAULTS
  // docs/reliability.md, "Fault injection": make operation k invalid so the kernel itself refuses it (an
  // unknown message type: EINVAL), or cut the acknowledgement of message k short as it is read.
  faults::Phase phase("commit");
  std::vector<uint8_t> mangled;
  int fault_err = 0;
  if (const int k = faults::pick("commit.reject", static_cast<int>(n) - 2, &fault_err); k >= 0) {
    mangled.assign(bytes, bytes + len);
    auto* m = reinterpret_cast<nlmsghdr*>(mangled.data() + l.offset[k + 1]);
    m->nlmsg_type = static_cast<uint16_t>((m->nlmsg_type & 0xff00) | 0xff);
    bytes = mangled.data();
  }
  size_t short_ack = n;
  if (const int k = faults::pick("commit.ack", static_cast<int>(l.acks), &fault_err); k >= 0) {
    for (size_t i = 0, a = 0; i < n; ++i) {
      if (l.wants_ack[i] && a++ == static_cast<size_t>(k)) short_ack = i;
    }
  }
#endif
  sock.send(bytes, len);

  // The kernel processes the whole batch inside our sendmsg and queues one ACK per NLM_F_ACK message
  // (errors come regardless), so every reply is already waiting. We wait only while ACKs are missing and no
  // error was seen (after an error the kernel may stop early, e.g. on ENOMEM), then take whatever else is
  // queued, which catches errors of messages that asked for no ACK. A receive that emptied the queue took
  // all of that already: asking again would only cost a system call that finds nothing (one in four of a
  // one-port change's).
  std::vector<uint8_t> seen(n, 0);
  size_t pending = l.acks;
  bool failed = false;
  size_t fail_index = 0;
  Ack fail_ack;
  auto on_reply = [&](const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != NLMSG_ERROR) return;  // e.g. a NEWGEN notification
    const uint32_t i = nlh->nlmsg_seq - l.first_seq;
    if (i >= n) return;
#ifdef PORTWALL_FAULTS
    nlmsghdr cut = *nlh;
    cut.nlmsg_len = NLMSG_HDRLEN + 2;
    Ack ack = parse_ack(i == short_ack ? &cut : nlh);
#else
    Ack ack = parse_ack(nlh);
#endif
    // An acknowledgement we cannot read says nothing about whether the kernel applied the batch: that is
    // not a refusal (which would promise nothing was applied) but an unknown outcome (docs/netlink.md).
    if (ack.malformed) {
      throw Error(ErrorKind::kSystem, EBADMSG,
                  "netlink: a malformed acknowledgement of message " + std::to_string(i) +
                      ": whether the kernel applied the batch is unknown");
    }
    if (ack.err != 0 && (!failed || i < fail_index)) {
      failed = true;
      fail_index = i;
      fail_ack = std::move(ack);
    }
    if (l.wants_ack[i] && !seen[i]) {
      seen[i] = 1;
      --pending;
    }
  };
  for (bool drained = false; sock.receive(pending > 0 && !failed, on_reply, &drained);) {
    if (drained && (pending == 0 || failed)) break;
  }
  if (failed) {
    const auto* refused = reinterpret_cast<const nlmsghdr*>(bytes + l.offset[fail_index]);
    const int op = record_of_message ? (*record_of_message)[fail_index] : static_cast<int>(fail_index);
    std::string text = record_of_message ? (op >= 0 ? "record " + std::to_string(op) : std::string("batch"))
                                         : "message " + std::to_string(fail_index);
    text += " (" + describe(refused) + "): " + std::strerror(fail_ack.err);
    if (fail_index == 0 && fail_ack.err == ERESTART) {
      text += ": the ruleset's generation moved on (another writer committed since); nothing was applied";
    }
    if (!fail_ack.message.empty()) text += ": " + fail_ack.message;
    if (fail_ack.offset >= 0 && static_cast<size_t>(fail_ack.offset) + sizeof(nlattr) <= refused->nlmsg_len) {
      const auto* bad = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(refused) + fail_ack.offset);
      text += " (attribute type " + std::to_string(bad->nla_type & NLA_TYPE_MASK) + " at offset " +
              std::to_string(fail_ack.offset) + ")";
    }
    throw Error(ErrorKind::kNetlink, fail_ack.err, text, op);
  }
  return CommitResult{sock.genid(), static_cast<uint32_t>(n)};
}

}  // namespace

CommitResult send_batch(const std::string& netns, const uint8_t* bytes, size_t len,
                        const std::vector<int32_t>* record_of_message) {
  const Layout l = scan(bytes, len);  // malformed bytes are refused before a socket is opened
  NftSocket sock(netns);
  return send_scanned(sock, bytes, len, l, record_of_message);
}

CommitResult send_batch(NftSocket& sock, const uint8_t* bytes, size_t len,
                        const std::vector<int32_t>* record_of_message) {
  return send_scanned(sock, bytes, len, scan(bytes, len), record_of_message);
}

}  // namespace portwall::nft
