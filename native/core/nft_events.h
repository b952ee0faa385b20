// An nftables event subscription: a NETLINK_NETFILTER socket in the target namespace, joined to
// NFNLGRP_NFTABLES, read by one thread and woken for closing through an eventfd (as conntrack_events.h).
//
// The kernel announces a committed transaction as the notifications of its objects (one message per table,
// chain, rule, set, object, flowtable, and one per set element) followed by one NFT_MSG_NEWGEN carrying the
// new generation id and the committing thread's pid and name. The reader groups them into Transactions:
// every object message since the previous NEWGEN belongs to the next one. Each message also carries the
// committing socket's port id (nlmsg_pid) and the low 16 bits of the new generation (nfgenmsg res_id); a
// message that does not match what is pending starts a new group, so notifications the kernel sends outside a
// commit are never attributed to someone else's commit. Such groups, and groups cut short by an overrun, are
// delivered with genid 0 (a generation the kernel never reports).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/event_socket.h"

namespace portwall::nft {

// One kernel notification, or a run of consecutive ones about the same object (set elements: one message per
// element), counted in `count`.
struct Event {
  uint16_t msg = 0;     // NFT_MSG_* (the nlmsg_type within NFNL_SUBSYS_NFTABLES)
  uint8_t family = 0;   // nfgen_family: NFPROTO_*
  std::string table;    // the table's name ("" when the message has none)
  std::string name;     // the chain (chains, rules), set (sets, elements), object or flowtable name, else ""
  uint32_t count = 1;   // messages merged into this event
};

struct Transaction {
  uint32_t genid = 0;     // NFTA_GEN_ID; 0 when no NEWGEN framed these events
  uint32_t pid = 0;       // NFTA_GEN_PROC_PID: the committing *thread* (task_pid_nr), 0 when unframed
  std::string proc_name;  // NFTA_GEN_PROC_NAME: that thread's comm
  uint32_t portid = 0;    // nlmsg_pid: the netlink port id of the committing socket
  bool self = false;      // the committing thread belonged to this process when the NEWGEN was read
  std::vector<Event> events;
};

class EventReader {
 public:
  // Opens the socket inside `netns` (on the calling thread) with a receive buffer of at least `rcvbuf` bytes
  // (never less than the system default); the reader may then run on any thread.
  explicit EventReader(const std::string& netns, size_t rcvbuf = kReceiveBuffer);
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Waits for notifications (or stop()), then reads what is queued and appends every transaction completed
  // by a NEWGEN to `out`. Events of a transaction whose NEWGEN has not come yet stay pending for the next
  // call, unless nothing more arrives within kPendingFlushMs (then they go out unframed). `lost` grows by one
  // per overrun (ENOBUFS: the kernel dropped notifications; pending events then go out unframed) or
  // truncated datagram. Returns false once stopped. Only one thread may call it.
  bool wait(std::vector<Transaction>& out, uint32_t& lost);
  // Wakes wait() for good; callable from any thread.
  void stop();

  static constexpr size_t kReceiveBuffer = 16 << 20;
  static constexpr int kPendingFlushMs = 200;

 private:
  // Decodes one notification: an object message joins the pending events, a NEWGEN completes a transaction.
  void on_message(const nlmsghdr* nlh, std::vector<Transaction>& out);
  // Moves the pending events out as one unframed transaction (genid 0).
  void flush_pending(std::vector<Transaction>& out);

  EventSocket sock_;
  std::vector<char> buf_;
  // Events since the last NEWGEN, and the committing port and generation (low 16 bits) they came with.
  std::vector<Event> pending_;
  uint32_t pending_portid_ = 0;
  uint16_t pending_res_id_ = 0;
};

}  // namespace portwall::nft
