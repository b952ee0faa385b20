#include "core/nflog.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace portwall::nflog {
namespace {

constexpr size_t kReceiveBuffer = 4 << 20;

uint32_t be32_attr(const nlattr* a) { return a ? ntohl(mnl_attr_get_u32(a)) : 0; }

// NFULNL_MSG_PACKET into a Packet; false for anything else.
bool parse_packet(const nlmsghdr* h, Packet& p) {
  if (h->nlmsg_type != ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) return false;
  const nlattr* tb[NFULA_MAX + 1] = {};
  auto collect = [](const nlattr* a, void* data) -> int {
    auto** t = static_cast<const nlattr**>(data);
    unsigned type = mnl_attr_get_type(a);
    if (type <= NFULA_MAX) t[type] = a;
    return MNL_CB_OK;
  };
  if (mnl_attr_parse(h, sizeof(nfgenmsg), collect, tb) < 0) return false;
  if (const nlattr* a = tb[NFULA_PACKET_HDR]; a && mnl_attr_get_payload_len(a) >= sizeof(nfulnl_msg_packet_hdr)) {
    const auto* hdr = static_cast<const nfulnl_msg_packet_hdr*>(mnl_attr_get_payload(a));
    p.hw_protocol = ntohs(hdr->hw_protocol);
    p.hook = hdr->hook;
  }
  if (const nlattr* a = tb[NFULA_PREFIX]) {
    const char* s = static_cast<const char*>(mnl_attr_get_payload(a));
    p.prefix.assign(s, strnlen(s, mnl_attr_get_payload_len(a)));
  }
  if (const nlattr* a = tb[NFULA_PAYLOAD]) {
    const auto* b = static_cast<const uint8_t*>(mnl_attr_get_payload(a));
    p.payload.assign(b, b + mnl_attr_get_payload_len(a));
  }
  p.indev = be32_attr(tb[NFULA_IFINDEX_INDEV]);
  p.outdev = be32_attr(tb[NFULA_IFINDEX_OUTDEV]);
  p.physindev = be32_attr(tb[NFULA_IFINDEX_PHYSINDEV]);
  p.physoutdev = be32_attr(tb[NFULA_IFINDEX_PHYSOUTDEV]);
  return true;
}

}  // namespace

EventReader::EventReader(const std::string& netns, uint16_t group, uint32_t copy_range)
    : sock_(netns, NETLINK_NETFILTER, 0, kReceiveBuffer) {
  nfulnl_msg_config_cmd cmd{};
  cmd.command = NFULNL_CFG_CMD_BIND;
  configure(group, NFULA_CFG_CMD, &cmd, sizeof(cmd));
  nfulnl_msg_config_mode mode{};
  mode.copy_range = htonl(copy_range);
  mode.copy_mode = NFULNL_COPY_PACKET;
  configure(group, NFULA_CFG_MODE, &mode, sizeof(mode));
  uint32_t qthresh = htonl(1);  // each packet as it comes, not batched for up to a second
  configure(group, NFULA_CFG_QTHRESH, &qthresh, sizeof(qthresh));
}

void EventReader::configure(uint16_t group, uint16_t attr, const void* data, size_t len) {
  char buf[256] = {};  // zeroed: libmnl < 1.0.5 leaves attribute padding unwritten, and it goes to the kernel
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = ++seq_;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = htons(group);
  mnl_attr_put(nlh, attr, len, data);
  NlSocket& s = sock_.socket();
  s.send(nlh, nlh->nlmsg_len);
  char reply[8192];
  for (;;) {
    ssize_t n = s.recv(reply, sizeof(reply));
    int rc = mnl_cb_run(reply, n, nlh->nlmsg_seq, s.portid(), nullptr, nullptr);
    if (rc == MNL_CB_ERROR) {
      int err = errno;
      throw Error(ErrorKind::kNetlink, err, std::string("nflog group ") + std::to_string(group) + ": " + strerror(err));
    }
    if (rc == MNL_CB_STOP) return;
  }
}

void EventReader::stop() { sock_.stop(); }

bool EventReader::wait(std::vector<Packet>& out, uint32_t& lost) {
  if (sock_.poll(-1, "nflog") == EventSocket::Ready::kStopped) return false;
  std::vector<char> buf(64 * 1024);
  sock_.drain(buf, lost, "nflog", [&out](const nlmsghdr* h) {
    Packet p;
    if (parse_packet(h, p)) out.push_back(std::move(p));
  });
  return true;
}

}  // namespace portwall::nflog
