#include "core/nft_encode.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/faults.h"
#include "core/nft_expr.h"
#include "core/nft_handles.h"
#include "core/wire.h"

namespace portwall::nft {

namespace {

constexpr uint32_t kFirstSeq = 1;
// Netlink attribute lengths are u16: an element list nest must stay below 64 KiB, so long lists are split into
// several NEWSETELEM messages, and a single element must leave room for at least the others' headers.
constexpr size_t kMaxNest = UINT16_MAX;
constexpr size_t kMaxElemBound = 60000;

// An upper bound of a message's netlink size, from the wire bytes it was read from: a wire field grows at most
// 4× (a u16 becomes an 8-byte attribute); headers, u8 registers and each expression's name and nests are
// covered by the constants. Only used to reserve room: libnftnl writes without bounds checks.
size_t bound(size_t wire_bytes, size_t exprs) { return 1024 + 4 * wire_bytes + 256 * exprs; }

bool bit(uint32_t mask, unsigned n) { return (mask >> n) & 1u; }

void must(int rc, const char* what) {
  if (rc < 0) throw Error(ErrorKind::kSystem, ENOMEM, std::string("libnftnl: setting ") + what + ": out of memory");
}

// Netlink messages appended to one contiguous buffer, which becomes the single sendmsg of the commit.
class BatchBuilder {
 public:
  // A netlink batch is at most ~3× its wire form (1.25× for a full sync's elements); sizing for that up front
  // avoids regrowth, and costs nothing beyond the address space: room is only touched when a message uses it.
  explicit BatchBuilder(size_t wire_len) { buf_.reserve_total(3 * wire_len + 4096); }

  // Starts a message with `room` writable bytes; the header stays valid until the next start().
  nlmsghdr* start(uint16_t type, uint8_t family, uint16_t flags, size_t room, int record) {
    buf_.reserve_more(room);
    record_of_.push_back(record);
    last_ = buf_.size();
    return nftnl_nlmsg_build_hdr(at(), type, family, flags, seq_++);
  }
  void finish(const nlmsghdr* nlh) { buf_.commit(NLMSG_ALIGN(nlh->nlmsg_len)); }

  // Only the last message before END asks for an acknowledgement (NLM_F_ACK): the kernel reports every
  // refused message whether asked or not, and sends the asked-for ACKs after the whole batch is decided, so
  // that one ACK says the batch is done (docs/wire.md, "Acknowledgements"). BEGIN/END carry none: kernels
  // before 6.10 never acknowledge them, later ones only when asked.
  // A non-zero genid goes into BEGIN as NFNL_BATCH_GENID (u32, network order): the kernel then refuses the
  // whole batch with ERESTART unless the ruleset is still at that generation.
  void envelope(bool begin, uint32_t genid = 0) {
    if (!begin && last_ != kNone) {
      reinterpret_cast<nlmsghdr*>(buf_.tail() - (buf_.size() - last_))->nlmsg_flags |= NLM_F_ACK;
    }
    buf_.reserve_more(256);
    record_of_.push_back(-1);
    nlmsghdr* nlh = begin ? nftnl_batch_begin(at(), seq_++) : nftnl_batch_end(at(), seq_++);
    if (begin && genid != 0) mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, htonl(genid));
    finish(nlh);
  }

  // Set ids for sets the wire gave none, from the top half so they never meet the encoder's own.
  uint32_t next_set_id() { return auto_set_id_++; }

  EncodedBatch take() { return EncodedBatch{std::move(buf_), std::move(record_of_)}; }

 private:
  char* at() { return reinterpret_cast<char*>(buf_.tail()); }

  static constexpr size_t kNone = SIZE_MAX;

  ByteBuffer buf_;
  size_t last_ = kNone;  // where the last message so far starts
  uint32_t seq_ = kFirstSeq;
  uint32_t auto_set_id_ = 0x80000000u;
  std::vector<int32_t> record_of_;
};

struct Op {
  uint16_t type;
  uint16_t flags;
};
constexpr uint16_t X = 0xffff;  // not a valid verb for this kind
constexpr uint16_t C = NLM_F_CREATE, E = NLM_F_EXCL, A = NLM_F_APPEND, R = NLM_F_REPLACE;
// [kind][verb], verbs in wire order: dump, add, create, insert, replace, delete, flush, destroy.
// flush is DELRULE for tables and chains (the message names only what is flushed) and an element-less
// DELSETELEM for sets; rules are created with APPEND so that "create" keeps "add"'s order.
const Op kOps[6][8] = {
    {{X, 0}, {X, 0}, {X, 0}, {X, 0}, {X, 0}, {X, 0}, {X, 0}, {X, 0}},
    {{X, 0}, {NFT_MSG_NEWTABLE, C}, {NFT_MSG_NEWTABLE, C | E}, {X, 0}, {X, 0}, {NFT_MSG_DELTABLE, 0},
     {NFT_MSG_DELRULE, 0}, {kMsgDestroyTable, 0}},
    {{X, 0}, {NFT_MSG_NEWCHAIN, C}, {NFT_MSG_NEWCHAIN, C | E}, {X, 0}, {X, 0}, {NFT_MSG_DELCHAIN, 0},
     {NFT_MSG_DELRULE, 0}, {kMsgDestroyChain, 0}},
    {{X, 0}, {NFT_MSG_NEWRULE, C | A}, {NFT_MSG_NEWRULE, C | E | A}, {NFT_MSG_NEWRULE, C}, {NFT_MSG_NEWRULE, R},
     {NFT_MSG_DELRULE, 0}, {X, 0}, {kMsgDestroyRule, 0}},
    {{X, 0}, {NFT_MSG_NEWSET, C}, {NFT_MSG_NEWSET, C | E}, {X, 0}, {X, 0}, {NFT_MSG_DELSET, 0},
     {NFT_MSG_DELSETELEM, 0}, {kMsgDestroySet, 0}},
    {{X, 0}, {NFT_MSG_NEWSETELEM, C}, {NFT_MSG_NEWSETELEM, C | E}, {X, 0}, {X, 0}, {NFT_MSG_DELSETELEM, 0},
     {NFT_MSG_DELSETELEM, 0}, {kMsgDestroySetElem, 0}},
};

struct Record {
  uint8_t verb;
  uint8_t kind;
  uint8_t family;
  int index;
  size_t start;  // wire offset of the record, for the size bound
  Op op;
};

void encode_table(wire::Reader& r, BatchBuilder& b, const Record& rec) {
  auto t = make_table();
  uint32_t m = r.mask(5, "table");
  std::string name;
  if (bit(m, 0)) {
    name = r.str("table.name");
    must(nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, name.c_str()), "table.name");
  }
  if (bit(m, 1)) nftnl_table_set_u64(t.get(), NFTNL_TABLE_HANDLE, r.u64("table.handle"));
  if (bit(m, 2)) nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, r.u32("table.flags"));
  if (bit(m, 3)) r.u32("table.use");  // dump only
  if (bit(m, 4)) {
    wire::Bytes u = r.bytes("table.userdata");
    must(nftnl_table_set_data(t.get(), NFTNL_TABLE_USERDATA, u.data, u.len), "table.userdata");
  }
  // The kernel reads a table delete/flush without name and handle as "every table of the family".
  bool removes = rec.verb == wire::kDelete || rec.verb == wire::kDestroy || rec.verb == wire::kFlush;
  if (removes && !bit(m, 0) && !bit(m, 1)) r.fail("table delete, destroy or flush needs a name or handle");
  nlmsghdr* nlh = b.start(rec.op.type, rec.family, rec.op.flags, bound(r.offset() - rec.start, 0), rec.index);
  if (rec.verb == wire::kFlush) {
    auto flush = make_rule();
    must(nftnl_rule_set_str(flush.get(), NFTNL_RULE_TABLE, name.c_str()), "table.name");
    nftnl_rule_nlmsg_build_payload(nlh, flush.get());
  } else {
    nftnl_table_nlmsg_build_payload(nlh, t.get());
  }
  b.finish(nlh);
}

void encode_chain(wire::Reader& r, BatchBuilder& b, const Record& rec) {
  auto c = make_chain();
  uint32_t m = r.mask(11, "chain");
  // libnftnl only emits the hook nest when both are set; one without the other would silently make a
  // regular chain.
  if (bit(m, 3) != bit(m, 4)) r.fail("chain.hook and chain.priority must be given together");
  std::string table, name;
  if (bit(m, 0)) {
    table = r.str("chain.table");
    must(nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str()), "chain.table");
  }
  if (bit(m, 1)) {
    name = r.str("chain.name");
    must(nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, name.c_str()), "chain.name");
  }
  if (bit(m, 2)) nftnl_chain_set_u64(c.get(), NFTNL_CHAIN_HANDLE, r.u64("chain.handle"));
  if (bit(m, 3)) nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM, r.u32("chain.hook"));
  if (bit(m, 4)) nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, r.i32("chain.priority"));
  if (bit(m, 5)) nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, r.u32("chain.policy"));
  if (bit(m, 6)) must(nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, r.str("chain.type").c_str()), "chain.type");
  if (bit(m, 7)) must(nftnl_chain_set_str(c.get(), NFTNL_CHAIN_DEV, r.str("chain.device").c_str()), "chain.device");
  if (bit(m, 8)) r.u32("chain.use");  // dump only
  if (bit(m, 9)) {
    wire::Bytes u = r.bytes("chain.userdata");
    must(nftnl_chain_set_data(c.get(), NFTNL_CHAIN_USERDATA, u.data, u.len), "chain.userdata");
  }
  if (bit(m, 10)) nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FLAGS, r.u32("chain.flags"));
  // The kernel reads a table delete/flush without name and handle as "every table of the family".
  bool removes = rec.verb == wire::kDelete || rec.verb == wire::kDestroy || rec.verb == wire::kFlush;
  if (removes && !bit(m, 0) && !bit(m, 1)) r.fail("table delete, destroy or flush needs a name or handle");
  nlmsghdr* nlh = b.start(rec.op.type, rec.family, rec.op.flags, bound(r.offset() - rec.start, 0), rec.index);
  if (rec.verb == wire::kFlush) {
    auto flush = make_rule();
    must(nftnl_rule_set_str(flush.get(), NFTNL_RULE_TABLE, table.c_str()), "chain.table");
    must(nftnl_rule_set_str(flush.get(), NFTNL_RULE_CHAIN, name.c_str()), "chain.name");
    nftnl_rule_nlmsg_build_payload(nlh, flush.get());
  } else {
    nftnl_chain_nlmsg_build_payload(nlh, c.get());
  }
  b.finish(nlh);
}

void encode_rule(wire::Reader& r, BatchBuilder& b, const Record& rec) {
  auto rule = make_rule();
  uint32_t m = r.mask(6, "rule");
  if (bit(m, 0)) must(nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, r.str("rule.table").c_str()), "rule.table");
  if (bit(m, 1)) must(nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, r.str("rule.chain").c_str()), "rule.chain");
  if (bit(m, 2)) nftnl_rule_set_u64(rule.get(), NFTNL_RULE_HANDLE, r.u64("rule.handle"));
  if (bit(m, 3)) nftnl_rule_set_u64(rule.get(), NFTNL_RULE_POSITION, r.u64("rule.position"));
  if (bit(m, 4)) {
    wire::Bytes u = r.bytes("rule.userdata");
    must(nftnl_rule_set_data(rule.get(), NFTNL_RULE_USERDATA, u.data, u.len), "rule.userdata");
  }
  uint16_t exprs = 0;
  if (bit(m, 5)) {
    exprs = r.u16("rule.expressions count");
    for (uint16_t i = 0; i < exprs; ++i) nftnl_rule_add_expr(rule.get(), read_expr(r).release());
  }
  // Without a handle these would remove every rule of the chain: that is what flush is for.
  bool by_handle = rec.verb == wire::kReplace || rec.verb == wire::kDelete || rec.verb == wire::kDestroy;
  if (by_handle && !bit(m, 2)) r.fail("replace/delete/destroy of a rule needs rule.handle");
  nlmsghdr* nlh = b.start(rec.op.type, rec.family, rec.op.flags, bound(r.offset() - rec.start, exprs), rec.index);
  nftnl_rule_nlmsg_build_payload(nlh, rule.get());
  b.finish(nlh);
}

void read_concat(wire::Reader& r, nftnl_set* s) {
  // libnftnl counts fields up to the first zero in a 16-byte array, so at most 15 non-zero lengths fit.
  uint8_t lens[NFT_REG32_COUNT] = {};
  uint8_t n = r.u8("set.concat count");
  if (n == 0 || n >= NFT_REG32_COUNT) r.fail("set.concat must have 1 to 15 fields, not " + std::to_string(n));
  for (uint8_t i = 0; i < n; ++i) {
    lens[i] = r.u8("set.concat field length");
    if (lens[i] == 0) r.fail("set.concat field " + std::to_string(i) + " has length 0");
  }
  must(nftnl_set_set_data(s, NFTNL_SET_DESC_CONCAT, lens, n), "set.concat");
}

void encode_set(wire::Reader& r, BatchBuilder& b, const Record& rec) {
  auto s = make_set();
  uint32_t m = r.mask(16, "set");
  if (bit(m, 0)) must(nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, r.str("set.table").c_str()), "set.table");
  if (bit(m, 1)) must(nftnl_set_set_str(s.get(), NFTNL_SET_NAME, r.str("set.name").c_str()), "set.name");
  if (bit(m, 2)) nftnl_set_set_u64(s.get(), NFTNL_SET_HANDLE, r.u64("set.handle"));
  if (bit(m, 3)) nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, r.u32("set.flags"));
  if (bit(m, 4)) nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, r.u32("set.keyType"));
  if (bit(m, 5)) nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, r.u32("set.keyLen"));
  if (bit(m, 6)) nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, r.u32("set.dataType"));
  if (bit(m, 7)) nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, r.u32("set.dataLen"));
  if (bit(m, 8)) nftnl_set_set_u32(s.get(), NFTNL_SET_ID, r.u32("set.id"));
  if (bit(m, 9)) read_concat(r, s.get());
  if (bit(m, 10)) nftnl_set_set_u32(s.get(), NFTNL_SET_POLICY, r.u32("set.policy"));
  if (bit(m, 11)) nftnl_set_set_u32(s.get(), NFTNL_SET_DESC_SIZE, r.u32("set.size"));
  if (bit(m, 12)) {
    wire::Bytes u = r.bytes("set.userdata");
    must(nftnl_set_set_data(s.get(), NFTNL_SET_USERDATA, u.data, u.len), "set.userdata");
  }
  // A set-level counter expression makes the kernel give every element its own counter.
  if (bit(m, 13) && r.u8("set.counter") != 0) nftnl_set_add_expr(s.get(), make_expr("counter").release());
  if (bit(m, 14)) nftnl_set_set_u64(s.get(), NFTNL_SET_TIMEOUT, r.u64("set.timeout"));
  if (bit(m, 15)) nftnl_set_set_u32(s.get(), NFTNL_SET_GC_INTERVAL, r.u32("set.gcInterval"));
  // NEWSET without NFTA_SET_ID is refused (EINVAL); the id only needs to be unique within the batch.
  if (rec.op.type == NFT_MSG_NEWSET && !bit(m, 8)) nftnl_set_set_u32(s.get(), NFTNL_SET_ID, b.next_set_id());
  nlmsghdr* nlh = b.start(rec.op.type, rec.family, rec.op.flags, bound(r.offset() - rec.start, 1), rec.index);
  if (rec.verb == wire::kFlush) {
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());  // no elements: only table, set name and id
  } else {
    nftnl_set_nlmsg_build_payload(nlh, s.get());
  }
  b.finish(nlh);
}

ElemPtr read_elem(wire::Reader& r) {
  auto e = make_elem();
  uint32_t m = r.mask(9, "element");
  static constexpr struct {
    unsigned bit;
    uint16_t attr;
    const char* what;
  } kValues[] = {
      {0, NFTNL_SET_ELEM_KEY, "element.key"},
      {1, NFTNL_SET_ELEM_KEY_END, "element.keyEnd"},
      {2, NFTNL_SET_ELEM_DATA, "element.data"},
  };
  for (const auto& v : kValues) {
    if (!bit(m, v.bit)) continue;
    wire::Bytes b = r.bytes(v.what);
    check_value_len(r, b, v.what);
    must(nftnl_set_elem_set(e.get(), v.attr, b.data, b.len), v.what);
  }
  if (bit(m, 3)) {
    int32_t code = r.i32("element.verdict.code");
    std::string chain = r.str("element.verdict.chain");
    check_verdict_chain(r, code, chain, "element.verdict");
    nftnl_set_elem_set_u32(e.get(), NFTNL_SET_ELEM_VERDICT, static_cast<uint32_t>(code));
    if (!chain.empty()) must(nftnl_set_elem_set_str(e.get(), NFTNL_SET_ELEM_CHAIN, chain.c_str()), "element.chain");
  }
  if (bit(m, 4)) nftnl_set_elem_set_u32(e.get(), NFTNL_SET_ELEM_FLAGS, r.u32("element.flags"));
  if (bit(m, 5)) {
    wire::Bytes u = r.bytes("element.userdata");
    must(nftnl_set_elem_set(e.get(), NFTNL_SET_ELEM_USERDATA, u.data, u.len), "element.userdata");
  }
  if (bit(m, 6)) {
    auto counter = make_expr("counter");
    nftnl_expr_set_u64(counter.get(), NFTNL_EXPR_CTR_PACKETS, r.u64("element.counter.packets"));
    nftnl_expr_set_u64(counter.get(), NFTNL_EXPR_CTR_BYTES, r.u64("element.counter.bytes"));
    nftnl_set_elem_add_expr(e.get(), counter.release());
  }
  if (bit(m, 7)) nftnl_set_elem_set_u64(e.get(), NFTNL_SET_ELEM_TIMEOUT, r.u64("element.timeout"));
  // Dump only (docs/wire.md): sending it back would fail on sets without timeouts and reset timers on others.
  if (bit(m, 8)) r.u64("element.expiration");
  return e;
}

// One wire record of elements → as many NEWSETELEM/DELSETELEM messages as the u16 nest length requires,
// all owned by the same record.
void encode_elements(wire::Reader& r, BatchBuilder& b, const Record& rec) {
  auto s = make_set();  // carries only the list header: table, set name, set id
  uint32_t m = r.mask(3, "elements");
  if (bit(m, 0)) must(nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, r.str("elements.table").c_str()), "elements.table");
  if (bit(m, 1)) must(nftnl_set_set_str(s.get(), NFTNL_SET_NAME, r.str("elements.set").c_str()), "elements.set");
  if (bit(m, 2)) nftnl_set_set_u32(s.get(), NFTNL_SET_ID, r.u32("elements.setId"));
  uint32_t count = r.u32("elements.count");
  const size_t header_room = bound(r.offset() - rec.start, 0);

  if (rec.verb == wire::kFlush) {
    if (count != 0) r.fail("flush of elements takes no elements (it empties the set)");
    nlmsghdr* nlh = b.start(rec.op.type, rec.family, rec.op.flags, header_room, rec.index);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    b.finish(nlh);
    return;
  }
  // An element-less DELSETELEM would flush the set, so an empty list sends nothing at all.
  nlmsghdr* nlh = nullptr;
  nlattr* list = nullptr;
  auto open = [&] {
    nlh = b.start(rec.op.type, rec.family, rec.op.flags, header_room + kMaxNest + kMaxElemBound, rec.index);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
  };
  auto close = [&] {
    mnl_attr_nest_end(nlh, list);
    b.finish(nlh);
  };
  auto overflows = [&](const nlattr* last) {
    return reinterpret_cast<const char*>(last) + last->nla_len - reinterpret_cast<const char*>(list) >
           static_cast<ptrdiff_t>(kMaxNest);
  };
  for (uint32_t i = 0; i < count; ++i) {
    size_t start = r.offset();
    ElemPtr e = read_elem(r);
    if (256 + 4 * (r.offset() - start) > kMaxElemBound) r.fail("element " + std::to_string(i) + " is too large");
    if (!nlh) open();
    nlattr* a = nftnl_set_elem_nlmsg_build(nlh, e.get(), NFTA_LIST_ELEM);
    if (overflows(a)) {
      // Take it back and start the next message with it; its bytes are zeroed again, as the next message is
      // built over them (ByteBuffer::reserve_more zeroes each byte once).
      const uint16_t len = a->nla_len;
      nlh->nlmsg_len -= len;
      std::memset(a, 0, MNL_ALIGN(len));
      close();
      open();
      nftnl_set_elem_nlmsg_build(nlh, e.get(), NFTA_LIST_ELEM);
    }
  }
  if (nlh) close();
}

bool known_family(uint8_t f) {
  return f == NFPROTO_INET || f == NFPROTO_IPV4 || f == NFPROTO_ARP || f == NFPROTO_NETDEV || f == NFPROTO_BRIDGE ||
         f == NFPROTO_IPV6;
}

}  // namespace

EncodedBatch encode(const uint8_t* data, size_t len, uint32_t genid) {
  wire::Reader r(data, len);
  if (r.u32("magic") != wire::kMagic) r.fail("bad magic: not a PWB1 stream");
  uint32_t count = r.u32("record count");
#ifdef PORTWALL_FAULTS
  int fault_err = 0;
  const int fail_at = faults::pick("encode", static_cast<int>(std::min<uint32_t>(count, 1u << 30)), &fault_err);
#endif
  BatchBuilder b(len);
  b.envelope(true, genid);
  for (uint32_t i = 0; i < count; ++i) {
    r.set_record(static_cast<int>(i));
#ifdef PORTWALL_FAULTS
    if (static_cast<int>(i) == fail_at) {
      throw Error(ErrorKind::kSystem, fault_err ? fault_err : ENOMEM,
                  "injected fault: encoding record " + std::to_string(i) + " failed", static_cast<int>(i));
    }
#endif
    Record rec{};
    rec.start = r.offset();
    rec.index = static_cast<int>(i);
    rec.verb = r.u8("verb");
    rec.kind = r.u8("kind");
    rec.family = r.u8("family");
    if (rec.kind < wire::kTable || rec.kind > wire::kElements) r.fail("unknown kind " + std::to_string(rec.kind));
    // Family 0 (AF_UNSPEC) would widen deletes to every family; only the NFPROTO values nftables has pass.
    if (!known_family(rec.family)) r.fail("unknown family " + std::to_string(rec.family));
    if (rec.verb > wire::kDestroy || kOps[rec.kind][rec.verb].type == X) {
      r.fail("verb " + std::to_string(rec.verb) + " is not valid for kind " + std::to_string(rec.kind));
    }
    rec.op = kOps[rec.kind][rec.verb];
    switch (rec.kind) {
      case wire::kTable: encode_table(r, b, rec); break;
      case wire::kChain: encode_chain(r, b, rec); break;
      case wire::kRule: encode_rule(r, b, rec); break;
      case wire::kSet: encode_set(r, b, rec); break;
      case wire::kElements: encode_elements(r, b, rec); break;
    }
  }
  r.set_record(-1);
  if (!r.at_end()) r.fail("trailing bytes after the last record");
  b.envelope(false);
  return b.take();
}

}  // namespace portwall::nft
