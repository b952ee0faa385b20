#include "core/nft_socket.h"

#include <libnftnl/common.h>
#include <libnftnl/gen.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "core/faults.h"
#include "core/netlink_util.h"
#include "core/netns.h"

namespace portwall::nft {

namespace {

// Dump replies are at most ~32 KiB per datagram, acknowledgements are small (NETLINK_CAP_ACK).
constexpr size_t kRxSlotSize = 64u << 10;
constexpr unsigned kRxSlots = 16;

// A receive that failed with `err` (EAGAIN: the receive timeout ran out).
[[noreturn]] void receive_failed(int err) {
  if (err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT) {
    throw Error(ErrorKind::kSystem, ETIMEDOUT,
                "netlink: no reply from the kernel within " + std::to_string(NlSocket::kReceiveTimeoutS) + " s");
  }
  if (err == ENOBUFS) {
    throw Error(ErrorKind::kSystem, ENOBUFS,
                "netlink receive buffer overrun: the kernel dropped replies, so the outcome is unknown");
  }
  if (err == EMSGSIZE) {
    throw Error(ErrorKind::kSystem, EMSGSIZE, "netlink reply larger than " + std::to_string(kRxSlotSize) + " bytes");
  }
  errno = err;
  throw_errno("netlink recvmmsg");
}

std::unique_ptr<NlSocket> open_in(const std::string& netns) {
  NetnsScope scope(netns);
  // Buffers are sized per batch (size_buffers), so the socket starts with the system defaults.
  return std::make_unique<NlSocket>(NETLINK_NETFILTER, 0, 0);
}

}  // namespace

NftSocket::NftSocket(const std::string& netns)
    : nl_(open_in(netns)), fd_(nl_->fd()), portid_(nl_->portid()), seq_(0x40000000u),
      rx_(new uint8_t[kRxSlots * kRxSlotSize]) {}

void NftSocket::size_buffers(size_t sndbuf, size_t rcvbuf) { nl_->grow_buffers(sndbuf, rcvbuf); }

void NftSocket::send(const void* data, size_t len) { nl_->send(data, len); }

bool NftSocket::receive(bool wait, const std::function<void(const nlmsghdr*)>& on_message, bool* drained) {
  mmsghdr msgs[kRxSlots] = {};
  iovec iov[kRxSlots];
  sockaddr_nl from[kRxSlots] = {};
  for (unsigned i = 0; i < kRxSlots; ++i) {
    iov[i] = iovec{rx_.get() + i * kRxSlotSize, kRxSlotSize};
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
#ifdef PORTWALL_FAULTS
  // docs/reliability.md, "Fault injection": this receive fails (ETIMEDOUT: no reply; ENOBUFS: replies
  // dropped; EMSGSIZE: a datagram cut short), with the kernel's replies left queued.
  if (const int injected = faults::at("recv")) receive_failed(injected);
#endif
  int n;
  while ((n = recvmmsg(fd_, msgs, kRxSlots, wait ? MSG_WAITFORONE : MSG_DONTWAIT, nullptr)) < 0) {
    if (errno == EINTR) continue;
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && !wait) return false;
    receive_failed(errno);
  }
  if (drained) *drained = static_cast<unsigned>(n) < kRxSlots;
  for (int i = 0; i < n; ++i) {
    if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) receive_failed(EMSGSIZE);
    if (from[i].nl_pid != 0) continue;  // only the kernel talks to us; ignore anything else
    const auto* nlh = static_cast<const nlmsghdr*>(iov[i].iov_base);
    int len = static_cast<int>(msgs[i].msg_len);
    for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) on_message(nlh);
  }
  return true;
}

Ack parse_ack(const nlmsghdr* nlh) {
  Ack ack;
  if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(nlmsgerr)) {
    ack.err = EBADMSG;
    ack.malformed = true;
    ack.message = "truncated netlink error message";
    return ack;
  }
  const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  ack.err = -e->error;
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return ack;
  // The TLVs follow the echoed request: just its header when capped, all of it otherwise.
  size_t offset = (nlh->nlmsg_flags & NLM_F_CAPPED) ? sizeof(nlmsgerr) : sizeof(int) + e->msg.nlmsg_len;
  if (offset > nlh->nlmsg_len - NLMSG_HDRLEN) return ack;
  nl::for_each_attr(nlh, offset, [&](const nlattr* a) {
    switch (mnl_attr_get_type(a)) {
      case NLMSGERR_ATTR_MSG: ack.message = nl::attr_str(a); break;
      case NLMSGERR_ATTR_OFFS:
        if (mnl_attr_get_payload_len(a) >= sizeof(uint32_t)) ack.offset = mnl_attr_get_u32(a);
        break;
      default: break;
    }
  });
  return ack;
}

bool NftSocket::dump(const nlmsghdr* request, const std::function<void(const nlmsghdr*)>& on_message) {
#ifdef PORTWALL_FAULTS
  faults::Phase phase("dump");
#endif
  send(request, request->nlmsg_len);
  const uint32_t seq = request->nlmsg_seq;
  bool interrupted = false, done = false;
  // A dump left half read would keep the socket busy (the kernel refuses a new dump with EBUSY while one
  // runs) and its rest would arrive as stale replies: when on_message throws, read on to the end first.
  std::exception_ptr failed;
  while (!done) {
    receive(true, [&](const nlmsghdr* nlh) {
      if (done || nlh->nlmsg_seq != seq || nlh->nlmsg_pid != portid_) return;  // stale reply of an earlier request
      // The kernel keeps sending after flagging an interrupted dump; read to the end before restarting.
      if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
#ifdef PORTWALL_FAULTS
      if (faults::at("intr")) interrupted = true;  // as if this message carried NLM_F_DUMP_INTR
#endif
      if (nlh->nlmsg_type == NLMSG_DONE) {
        int status = 0;
        if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) std::memcpy(&status, mnl_nlmsg_get_payload(nlh), sizeof status);
        if (status < 0) {
          throw Error(ErrorKind::kNetlink, -status, std::string("nftables dump failed: ") + std::strerror(-status));
        }
        done = true;
      } else if (nlh->nlmsg_type == NLMSG_ERROR) {
        Ack ack = parse_ack(nlh);
        if (ack.err == 0) return;
        std::string text = std::string("nftables dump refused: ") + std::strerror(ack.err);
        if (!ack.message.empty()) text += ": " + ack.message;
        throw Error(ErrorKind::kNetlink, ack.err, text);
      } else if (nlh->nlmsg_type >= NLMSG_MIN_TYPE && !failed) {
        try {
          on_message(nlh);
        } catch (...) {
          failed = std::current_exception();
        }
      }
    });
  }
  if (failed) std::rethrow_exception(failed);
  return !interrupted;
}

void NftSocket::discard_queued() {
  while (receive(false, [](const nlmsghdr*) {})) {
  }
}

uint32_t NftSocket::genid() {
#ifdef PORTWALL_FAULTS
  faults::Phase phase("genid");
#endif
  char buf[256];
  const uint32_t seq = next_seq();
  nlmsghdr* req = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, 0, seq);
  send(req, req->nlmsg_len);
  bool found = false;
  uint32_t id = 0;
  while (!found) {
    receive(true, [&](const nlmsghdr* nlh) {
      if (found || nlh->nlmsg_seq != seq) return;
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        Ack ack = parse_ack(nlh);
        if (ack.err == 0) return;
        throw Error(ErrorKind::kNetlink, ack.err, std::string("reading the ruleset generation: ") + std::strerror(ack.err));
      }
      if (nlh->nlmsg_type == ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) {
        GenPtr gen = make_gen();
        if (nftnl_gen_nlmsg_parse(nlh, gen.get()) < 0) {
          throw Error(ErrorKind::kNetlink, EBADMSG, "cannot parse the ruleset generation reply");
        }
        id = nftnl_gen_get_u32(gen.get(), NFTNL_GEN_ID);
        found = true;
      }
    });
  }
  return id;
}

}  // namespace portwall::nft
