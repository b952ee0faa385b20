#include "core/nft_events.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>

#include "core/error.h"
#include "core/netlink_util.h"

namespace portwall::nft {

namespace {

// Datagrams read per wait() at most, so that a steady flood cannot keep stop() from being seen.
constexpr int kDatagramsPerWait = 256;
// The kernel coalesces notifications into datagrams of at most NLMSG_GOODSIZE (a page); one that does not
// fit is reported as an overrun. 64 KiB leaves room for larger pages.
constexpr size_t kDatagramBuffer = 64 * 1024;

// The attribute holding the chain/set/object/flowtable name of each object message (the table is attribute
// 1 in all of them: NFTA_{CHAIN,RULE,SET,SET_ELEM_LIST,OBJ,FLOWTABLE}_TABLE), or 0 for none.
uint16_t name_attr(uint16_t msg) {
  switch (msg) {
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN: return NFTA_CHAIN_NAME;
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE: return NFTA_RULE_CHAIN;
    case NFT_MSG_NEWSET:
    case NFT_MSG_DELSET: return NFTA_SET_NAME;
    case NFT_MSG_NEWSETELEM:
    case NFT_MSG_DELSETELEM: return NFTA_SET_ELEM_LIST_SET;
    case NFT_MSG_NEWOBJ:
    case NFT_MSG_DELOBJ: return NFTA_OBJ_NAME;
    case NFT_MSG_NEWFLOWTABLE:
    case NFT_MSG_DELFLOWTABLE: return NFTA_FLOWTABLE_NAME;
    default: return 0;
  }
}

// Whether `msg` is one of the object messages whose attribute 1 is the table name.
bool has_table(uint16_t msg) { return msg == NFT_MSG_NEWTABLE || msg == NFT_MSG_DELTABLE || name_attr(msg) != 0; }

// Whether thread `tid` belongs to this process. The kernel reports the committer by task_pid_nr(), the id of
// the committing thread in the initial pid namespace; portwall commits from libuv pool threads.
bool own_thread(uint32_t tid) {
  if (tid == 0) return false;
  const std::string path = "/proc/self/task/" + std::to_string(tid);
  return access(path.c_str(), F_OK) == 0;
}

}  // namespace

EventReader::EventReader(const std::string& netns, size_t rcvbuf)
    : sock_(netns, NETLINK_NETFILTER, 1u << (NFNLGRP_NFTABLES - 1), rcvbuf), buf_(kDatagramBuffer) {}

void EventReader::stop() { sock_.stop(); }

void EventReader::flush_pending(std::vector<Transaction>& out) {
  if (pending_.empty()) return;
  Transaction tx;
  tx.portid = pending_portid_;
  tx.events = std::move(pending_);
  pending_.clear();
  out.push_back(std::move(tx));
}

void EventReader::on_message(const nlmsghdr* nlh, std::vector<Transaction>& out) {
  if (nlh->nlmsg_type < NLMSG_MIN_TYPE || NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES) return;
  if (mnl_nlmsg_get_payload_len(nlh) < sizeof(nfgenmsg)) return;
  const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  const uint16_t msg = NFNL_MSG_TYPE(nlh->nlmsg_type);
  const uint16_t res_id = ntohs(nfg->res_id);  // the low 16 bits of the generation the message belongs to

  if (msg == NFT_MSG_NEWGEN) {
    Transaction tx;
    tx.portid = nlh->nlmsg_pid;
    nl::for_each_attr(nlh, sizeof(nfgenmsg), [&](const nlattr* a) {
      const uint16_t len = mnl_attr_get_payload_len(a);
      switch (mnl_attr_get_type(a)) {
        case NFTA_GEN_ID: if (len >= 4) tx.genid = ntohl(mnl_attr_get_u32(a)); break;
        case NFTA_GEN_PROC_PID: if (len >= 4) tx.pid = ntohl(mnl_attr_get_u32(a)); break;
        case NFTA_GEN_PROC_NAME: tx.proc_name = nl::attr_str(a); break;
        default: break;
      }
    });
    tx.self = own_thread(tx.pid);
    // Pending events from another socket or generation were not part of this commit.
    if (!pending_.empty() && (pending_portid_ != tx.portid || pending_res_id_ != (tx.genid & 0xffff))) flush_pending(out);
    tx.events = std::move(pending_);
    pending_.clear();
    out.push_back(std::move(tx));
    return;
  }

  Event e;
  e.msg = msg;
  e.family = nfg->nfgen_family;
  if (has_table(msg)) {
    const uint16_t name = name_attr(msg);
    nl::for_each_attr(nlh, sizeof(nfgenmsg), [&](const nlattr* a) {
      const uint16_t type = mnl_attr_get_type(a);
      if (type == 1) e.table = nl::attr_str(a);
      else if (name != 0 && type == name) e.name = nl::attr_str(a);
    });
  }
  if (!pending_.empty() && (pending_portid_ != nlh->nlmsg_pid || pending_res_id_ != res_id)) flush_pending(out);
  if (pending_.empty()) {
    pending_portid_ = nlh->nlmsg_pid;
    pending_res_id_ = res_id;
  }
  // One message per set element: a run about the same set is one event with a count.
  if (!pending_.empty()) {
    Event& last = pending_.back();
    if (last.msg == e.msg && last.family == e.family && last.table == e.table && last.name == e.name) {
      ++last.count;
      return;
    }
  }
  pending_.push_back(std::move(e));
}

bool EventReader::wait(std::vector<Transaction>& out, uint32_t& lost) {
  EventSocket::Ready ready = sock_.poll(pending_.empty() ? -1 : kPendingFlushMs, "nftables events");
  if (ready == EventSocket::Ready::kStopped) return false;
  if (ready == EventSocket::Ready::kTimeout) {  // events without their NEWGEN, and nothing more came: not a commit's (or it was cut short)
    flush_pending(out);
    return true;
  }
  for (int datagrams = 0; datagrams < kDatagramsPerWait; ++datagrams) {
    ssize_t n = recv(sock_.fd(), buf_.data(), buf_.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {  // the socket overflowed: notifications were dropped, later ones still come
        ++lost;
        flush_pending(out);
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      throw_errno("recv nftables events");
    }
    if (static_cast<size_t>(n) > buf_.size()) {  // truncated (MSG_TRUNC reports the real length): lost too
      ++lost;
      flush_pending(out);
      continue;
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) {
      on_message(h, out);
    }
  }
  return true;
}

}  // namespace portwall::nft
