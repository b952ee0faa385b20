#include "core/nft_trace.h"

#include <libmnl/libmnl.h>
#include <libnftnl/trace.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <memory>

namespace portwall::nfttrace {
namespace {

constexpr size_t kReceiveBuffer = 4 << 20;
constexpr size_t kDatagramBuffer = 64 * 1024;

struct TraceFree {
  void operator()(nftnl_trace* t) const { nftnl_trace_free(t); }
};

std::vector<uint8_t> bytes(const nftnl_trace* t, uint16_t attr) {
  if (!nftnl_trace_is_set(t, attr)) return {};
  uint32_t len = 0;
  const auto* p = static_cast<const uint8_t*>(nftnl_trace_get_data(t, attr, &len));
  return p ? std::vector<uint8_t>(p, p + len) : std::vector<uint8_t>{};
}

std::string text(const nftnl_trace* t, uint16_t attr) {
  if (!nftnl_trace_is_set(t, attr)) return {};
  const char* s = nftnl_trace_get_str(t, attr);
  return s ? s : "";
}

uint32_t u32(const nftnl_trace* t, uint16_t attr) { return nftnl_trace_is_set(t, attr) ? nftnl_trace_get_u32(t, attr) : 0; }

// One NFT_MSG_TRACE message into an Event; false for anything else or a message libnftnl refuses.
bool parse(const nlmsghdr* h, Event& e) {
  if (h->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE)) return false;
  std::unique_ptr<nftnl_trace, TraceFree> t(nftnl_trace_alloc());
  if (!t || nftnl_trace_nlmsg_parse(h, t.get()) < 0) return false;
  const nftnl_trace* tr = t.get();
  e.id = u32(tr, NFTNL_TRACE_ID);
  e.type = u32(tr, NFTNL_TRACE_TYPE);
  e.family = static_cast<uint8_t>(u32(tr, NFTNL_TRACE_FAMILY));
  e.nfproto = u32(tr, NFTNL_TRACE_NFPROTO);
  e.table = text(tr, NFTNL_TRACE_TABLE);
  e.chain = text(tr, NFTNL_TRACE_CHAIN);
  if ((e.has_handle = nftnl_trace_is_set(tr, NFTNL_TRACE_RULE_HANDLE))) e.handle = nftnl_trace_get_u64(tr, NFTNL_TRACE_RULE_HANDLE);
  if ((e.has_verdict = nftnl_trace_is_set(tr, NFTNL_TRACE_VERDICT))) e.verdict = static_cast<int32_t>(nftnl_trace_get_u32(tr, NFTNL_TRACE_VERDICT));
  e.jump_target = text(tr, NFTNL_TRACE_JUMP_TARGET);
  if ((e.has_policy = nftnl_trace_is_set(tr, NFTNL_TRACE_POLICY))) e.policy = nftnl_trace_get_u32(tr, NFTNL_TRACE_POLICY);
  e.iif = u32(tr, NFTNL_TRACE_IIF);
  e.oif = u32(tr, NFTNL_TRACE_OIF);
  e.mark = u32(tr, NFTNL_TRACE_MARK);
  e.network = bytes(tr, NFTNL_TRACE_NETWORK_HEADER);
  e.transport = bytes(tr, NFTNL_TRACE_TRANSPORT_HEADER);
  return true;
}

}  // namespace

EventReader::EventReader(const std::string& netns)
    : sock_(netns, NETLINK_NETFILTER, 1u << (NFNLGRP_NFTRACE - 1), kReceiveBuffer), buf_(kDatagramBuffer) {}

void EventReader::stop() { sock_.stop(); }

bool EventReader::wait(std::vector<Event>& out, uint32_t& lost) {
  if (sock_.poll(-1, "nftables trace") == EventSocket::Ready::kStopped) return false;
  sock_.drain(buf_, lost, "nftables trace", [&out](const nlmsghdr* h) {
    Event e;
    if (parse(h, e)) out.push_back(std::move(e));
  });
  return true;
}

}  // namespace portwall::nfttrace
