#include "core/nft_expr.h"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/netlink_util.h"

namespace portwall::nft {

namespace {

// Every wire register slot is a u8 holding the kernel's register number; libnftnl stores them as u32.
void set_reg(nftnl_expr* e, uint16_t attr, uint8_t reg) {
  if (reg != 0) nftnl_expr_set_u32(e, attr, reg);
}

void set_value(wire::Reader& r, nftnl_expr* e, uint16_t attr, const char* what) {
  wire::Bytes b = r.bytes(what);
  check_value_len(r, b, what);
  nftnl_expr_set(e, attr, b.data, b.len);
}

ExprPtr read_payload(wire::Reader& r) {
  auto e = make_expr("payload");
  uint8_t base = r.u8("payload.base");
  uint32_t offset = r.u32("payload.offset");
  uint32_t len = r.u32("payload.len");
  uint8_t dreg = r.u8("payload.dreg");
  uint8_t sreg = r.u8("payload.sreg");
  uint32_t csum_type = r.u32("payload.csumType");
  uint32_t csum_offset = r.u32("payload.csumOffset");
  uint32_t csum_flags = r.u32("payload.csumFlags");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_LEN, len);
  set_reg(e.get(), NFTNL_EXPR_PAYLOAD_DREG, dreg);
  if (sreg != 0) {  // the checksum fields belong to the set (mangle) form only
    set_reg(e.get(), NFTNL_EXPR_PAYLOAD_SREG, sreg);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_CSUM_TYPE, csum_type);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_CSUM_OFFSET, csum_offset);
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_FLAGS, csum_flags);
  }
  return e;
}

ExprPtr read_meta_or_ct(wire::Reader& r, bool ct) {
  auto e = make_expr(ct ? "ct" : "meta");
  uint32_t key = r.u32("key");
  uint8_t dreg = r.u8("dreg");
  uint8_t sreg = r.u8("sreg");
  if (ct) {
    uint8_t dir = r.u8("ct.dir");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_KEY, key);
    set_reg(e.get(), NFTNL_EXPR_CT_DREG, dreg);
    set_reg(e.get(), NFTNL_EXPR_CT_SREG, sreg);
    if (dir != kCtDirUnset) nftnl_expr_set_u8(e.get(), NFTNL_EXPR_CT_DIR, dir);
  } else {
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_KEY, key);
    set_reg(e.get(), NFTNL_EXPR_META_DREG, dreg);
    set_reg(e.get(), NFTNL_EXPR_META_SREG, sreg);
  }
  return e;
}

ExprPtr read_lookup(wire::Reader& r) {
  auto e = make_expr("lookup");
  uint8_t sreg = r.u8("lookup.sreg");
  uint8_t dreg = r.u8("lookup.dreg");
  std::string set = r.str("lookup.set");
  uint32_t set_id = r.u32("lookup.setId");
  uint32_t flags = r.u32("lookup.flags");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SREG, sreg);
  if (dreg != kNoLookupDreg) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_DREG, dreg);
  nftnl_expr_set_str(e.get(), NFTNL_EXPR_LOOKUP_SET, set.c_str());
  // The kernel resolves by name first; the id only matters for a set added earlier in the same batch.
  if (set_id != 0) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SET_ID, set_id);
  if (flags != 0) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_FLAGS, flags);
  return e;
}

ExprPtr read_immediate(wire::Reader& r) {
  auto e = make_expr("immediate");
  uint8_t dreg = r.u8("immediate.dreg");
  uint8_t is_verdict = r.u8("immediate.isVerdict");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_DREG, dreg);  // 0 is the verdict register: always sent
  if (is_verdict) {
    int32_t code = r.i32("immediate.verdict.code");
    std::string chain = r.str("immediate.verdict.chain");
    check_verdict_chain(r, code, chain, "immediate.verdict");
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(code));
    if (!chain.empty()) nftnl_expr_set_str(e.get(), NFTNL_EXPR_IMM_CHAIN, chain.c_str());
  } else {
    set_value(r, e.get(), NFTNL_EXPR_IMM_DATA, "immediate.data");
  }
  return e;
}

ExprPtr read_log(wire::Reader& r) {
  auto e = make_expr("log");
  uint32_t m = r.mask(6, "log");
  if (m & 1u << 0) nftnl_expr_set_str(e.get(), NFTNL_EXPR_LOG_PREFIX, r.str("log.prefix").c_str());
  if (m & 1u << 1) nftnl_expr_set_u16(e.get(), NFTNL_EXPR_LOG_GROUP, r.u16("log.group"));
  if (m & 1u << 2) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOG_SNAPLEN, r.u32("log.snaplen"));
  if (m & 1u << 3) nftnl_expr_set_u16(e.get(), NFTNL_EXPR_LOG_QTHRESHOLD, r.u16("log.qthreshold"));
  if (m & 1u << 4) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOG_LEVEL, r.u32("log.level"));
  if (m & 1u << 5) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOG_FLAGS, r.u32("log.flags"));
  return e;
}

ExprPtr read_nat(wire::Reader& r) {
  auto e = make_expr("nat");
  uint32_t type = r.u32("nat.type");
  uint32_t family = r.u32("nat.family");
  uint8_t addr_min = r.u8("nat.regAddrMin");
  uint8_t addr_max = r.u8("nat.regAddrMax");
  uint8_t proto_min = r.u8("nat.regProtoMin");
  uint8_t proto_max = r.u8("nat.regProtoMax");
  uint32_t flags = r.u32("nat.flags");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_TYPE, type);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_FAMILY, family);
  set_reg(e.get(), NFTNL_EXPR_NAT_REG_ADDR_MIN, addr_min);
  set_reg(e.get(), NFTNL_EXPR_NAT_REG_ADDR_MAX, addr_max);
  set_reg(e.get(), NFTNL_EXPR_NAT_REG_PROTO_MIN, proto_min);
  set_reg(e.get(), NFTNL_EXPR_NAT_REG_PROTO_MAX, proto_max);
  if (flags != 0) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_FLAGS, flags);
  return e;
}

// masq and redir share a layout but not libnftnl's attribute numbers.
struct PortAttrs {
  const char* name;
  uint16_t flags, proto_min, proto_max;
};
constexpr PortAttrs kMasqAttrs{"masq", NFTNL_EXPR_MASQ_FLAGS, NFTNL_EXPR_MASQ_REG_PROTO_MIN, NFTNL_EXPR_MASQ_REG_PROTO_MAX};
constexpr PortAttrs kRedirAttrs{"redir", NFTNL_EXPR_REDIR_FLAGS, NFTNL_EXPR_REDIR_REG_PROTO_MIN,
                                NFTNL_EXPR_REDIR_REG_PROTO_MAX};

ExprPtr read_masq_or_redir(wire::Reader& r, const PortAttrs& a) {
  auto e = make_expr(a.name);
  uint32_t flags = r.u32("flags");
  uint8_t proto_min = r.u8("regProtoMin");
  uint8_t proto_max = r.u8("regProtoMax");
  if (flags != 0) nftnl_expr_set_u32(e.get(), a.flags, flags);
  set_reg(e.get(), a.proto_min, proto_min);
  set_reg(e.get(), a.proto_max, proto_max);
  return e;
}

// ---- dump side ----

uint8_t get_reg(const nftnl_expr* e, uint16_t attr) {
  return static_cast<uint8_t>(nftnl_expr_get_u32(e, attr));
}

void put_value(wire::Writer& w, const nftnl_expr* e, uint16_t attr) {
  uint32_t len = 0;
  const void* p = nftnl_expr_get(e, attr, &len);
  w.bytes(p, p ? len : 0);
}

// The expression's own netlink attributes (the inside of NFTA_EXPR_DATA), as libnftnl rebuilds them.
void put_other(wire::Writer& w, nftnl_expr* e, const char* name) {
  std::vector<char> buf(1 << 17);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nftnl_expr_build_payload(nlh, e);
  const nlattr* data = nullptr;
  nl::for_each_attr(nlh, 0, [&](const nlattr* a) {
    if (mnl_attr_get_type(a) == NFTA_EXPR_DATA) data = a;
  });
  w.u8(kOther);
  w.str(name);
  if (data) {
    w.bytes(mnl_attr_get_payload(data), mnl_attr_get_payload_len(data));
  } else {
    w.bytes(nullptr, 0);
  }
}

void put_masq_or_redir(wire::Writer& w, const nftnl_expr* e, ExprType type, const PortAttrs& a) {
  w.u8(type);
  w.u32(nftnl_expr_get_u32(e, a.flags));
  w.u8(get_reg(e, a.proto_min));
  w.u8(get_reg(e, a.proto_max));
}

}  // namespace

void check_value_len(wire::Reader& r, const wire::Bytes& b, const char* what) {
  if (b.len > NFT_DATA_VALUE_MAXLEN) {
    r.fail(std::string(what) + " is " + std::to_string(b.len) + " bytes, more than the kernel's " +
           std::to_string(NFT_DATA_VALUE_MAXLEN));
  }
}

void check_verdict_chain(wire::Reader& r, int32_t code, const std::string& chain, const char* what) {
  const bool jumps = code == NFT_JUMP || code == NFT_GOTO;
  if (jumps && chain.empty()) r.fail(std::string(what) + ": jump and goto need a chain");
  if (!jumps && !chain.empty()) r.fail(std::string(what) + ": only jump and goto take a chain");
}

ExprPtr read_expr(wire::Reader& r) {
  uint8_t type = r.u8("expression type");
  switch (type) {
    case kPayload: return read_payload(r);
    case kMeta: return read_meta_or_ct(r, false);
    case kCt: return read_meta_or_ct(r, true);
    case kCmp: {
      auto e = make_expr("cmp");
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_SREG, r.u8("cmp.sreg"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_OP, r.u32("cmp.op"));
      set_value(r, e.get(), NFTNL_EXPR_CMP_DATA, "cmp.data");
      return e;
    }
    case kBitwise: {
      auto e = make_expr("bitwise");
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_SREG, r.u8("bitwise.sreg"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_DREG, r.u8("bitwise.dreg"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_LEN, r.u32("bitwise.len"));
      set_value(r, e.get(), NFTNL_EXPR_BITWISE_MASK, "bitwise.mask");
      set_value(r, e.get(), NFTNL_EXPR_BITWISE_XOR, "bitwise.xor");
      return e;
    }
    case kRange: {
      auto e = make_expr("range");
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_RANGE_SREG, r.u8("range.sreg"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_RANGE_OP, r.u32("range.op"));
      set_value(r, e.get(), NFTNL_EXPR_RANGE_FROM_DATA, "range.from");
      set_value(r, e.get(), NFTNL_EXPR_RANGE_TO_DATA, "range.to");
      return e;
    }
    case kLookup: return read_lookup(r);
    case kImmediate: return read_immediate(r);
    case kCounter: {
      auto e = make_expr("counter");
      nftnl_expr_set_u64(e.get(), NFTNL_EXPR_CTR_PACKETS, r.u64("counter.packets"));
      nftnl_expr_set_u64(e.get(), NFTNL_EXPR_CTR_BYTES, r.u64("counter.bytes"));
      return e;
    }
    case kLog: return read_log(r);
    case kNat: return read_nat(r);
    case kLimit: {
      auto e = make_expr("limit");
      nftnl_expr_set_u64(e.get(), NFTNL_EXPR_LIMIT_RATE, r.u64("limit.rate"));
      nftnl_expr_set_u64(e.get(), NFTNL_EXPR_LIMIT_UNIT, r.u64("limit.unit"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LIMIT_BURST, r.u32("limit.burst"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LIMIT_TYPE, r.u32("limit.type"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LIMIT_FLAGS, r.u32("limit.flags"));
      return e;
    }
    case kNotrack: return make_expr("notrack");
    case kReject: {
      auto e = make_expr("reject");
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_REJECT_TYPE, r.u32("reject.type"));
      nftnl_expr_set_u8(e.get(), NFTNL_EXPR_REJECT_CODE, r.u8("reject.code"));
      return e;
    }
    case kMasq: return read_masq_or_redir(r, kMasqAttrs);
    case kRedir: return read_masq_or_redir(r, kRedirAttrs);
    case kByteorder: {
      auto e = make_expr("byteorder");
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BYTEORDER_SREG, r.u8("byteorder.sreg"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BYTEORDER_DREG, r.u8("byteorder.dreg"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BYTEORDER_OP, r.u32("byteorder.op"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BYTEORDER_LEN, r.u32("byteorder.len"));
      nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BYTEORDER_SIZE, r.u32("byteorder.size"));
      return e;
    }
    case kOther: r.fail("expression type 255 (other) only appears in dumps and cannot be sent");
    default: r.fail("unknown expression type " + std::to_string(type));
  }
}

void write_expr(wire::Writer& w, nftnl_expr* e) {
  const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
  const std::string n = name ? name : "";
  if (n == "payload") {
    w.u8(kPayload);
    w.u8(static_cast<uint8_t>(nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_BASE)));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_LEN));
    w.u8(get_reg(e, NFTNL_EXPR_PAYLOAD_DREG));
    w.u8(get_reg(e, NFTNL_EXPR_PAYLOAD_SREG));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_CSUM_TYPE));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_CSUM_OFFSET));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_FLAGS));
  } else if (n == "meta") {
    w.u8(kMeta);
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_META_KEY));
    w.u8(get_reg(e, NFTNL_EXPR_META_DREG));
    w.u8(get_reg(e, NFTNL_EXPR_META_SREG));
  } else if (n == "ct") {
    w.u8(kCt);
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_CT_KEY));
    w.u8(get_reg(e, NFTNL_EXPR_CT_DREG));
    w.u8(get_reg(e, NFTNL_EXPR_CT_SREG));
    w.u8(nftnl_expr_is_set(e, NFTNL_EXPR_CT_DIR) ? nftnl_expr_get_u8(e, NFTNL_EXPR_CT_DIR) : kCtDirUnset);
  } else if (n == "cmp") {
    w.u8(kCmp);
    w.u8(get_reg(e, NFTNL_EXPR_CMP_SREG));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_CMP_OP));
    put_value(w, e, NFTNL_EXPR_CMP_DATA);
  } else if (n == "bitwise" && nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_OP) == NFT_BITWISE_BOOL) {
    w.u8(kBitwise);  // shifts have no wire form and fall through to kOther
    w.u8(get_reg(e, NFTNL_EXPR_BITWISE_SREG));
    w.u8(get_reg(e, NFTNL_EXPR_BITWISE_DREG));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_LEN));
    put_value(w, e, NFTNL_EXPR_BITWISE_MASK);
    put_value(w, e, NFTNL_EXPR_BITWISE_XOR);
  } else if (n == "range") {
    w.u8(kRange);
    w.u8(get_reg(e, NFTNL_EXPR_RANGE_SREG));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_RANGE_OP));
    put_value(w, e, NFTNL_EXPR_RANGE_FROM_DATA);
    put_value(w, e, NFTNL_EXPR_RANGE_TO_DATA);
  } else if (n == "lookup") {
    w.u8(kLookup);
    w.u8(get_reg(e, NFTNL_EXPR_LOOKUP_SREG));
    w.u8(nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_DREG) ? get_reg(e, NFTNL_EXPR_LOOKUP_DREG) : kNoLookupDreg);
    w.str(nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_SET_ID));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_FLAGS));
  } else if (n == "immediate") {
    w.u8(kImmediate);
    w.u8(get_reg(e, NFTNL_EXPR_IMM_DREG));
    bool verdict = nftnl_expr_is_set(e, NFTNL_EXPR_IMM_VERDICT);
    w.u8(verdict ? 1 : 0);
    if (verdict) {
      w.i32(static_cast<int32_t>(nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT)));
      w.str(nftnl_expr_is_set(e, NFTNL_EXPR_IMM_CHAIN) ? nftnl_expr_get_str(e, NFTNL_EXPR_IMM_CHAIN) : "");
    } else {
      put_value(w, e, NFTNL_EXPR_IMM_DATA);
    }
  } else if (n == "counter") {
    w.u8(kCounter);
    w.u64(nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS));
    w.u64(nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES));
  } else if (n == "log") {
    w.u8(kLog);
    size_t m = w.begin_mask();
    if (nftnl_expr_is_set(e, NFTNL_EXPR_LOG_PREFIX)) {
      w.set_bit(m, 0);
      w.str(nftnl_expr_get_str(e, NFTNL_EXPR_LOG_PREFIX));
    }
    if (nftnl_expr_is_set(e, NFTNL_EXPR_LOG_GROUP)) {
      w.set_bit(m, 1);
      w.u16(nftnl_expr_get_u16(e, NFTNL_EXPR_LOG_GROUP));
    }
    if (nftnl_expr_is_set(e, NFTNL_EXPR_LOG_SNAPLEN)) {
      w.set_bit(m, 2);
      w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_LOG_SNAPLEN));
    }
    if (nftnl_expr_is_set(e, NFTNL_EXPR_LOG_QTHRESHOLD)) {
      w.set_bit(m, 3);
      w.u16(nftnl_expr_get_u16(e, NFTNL_EXPR_LOG_QTHRESHOLD));
    }
    if (nftnl_expr_is_set(e, NFTNL_EXPR_LOG_LEVEL)) {
      w.set_bit(m, 4);
      w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_LOG_LEVEL));
    }
    if (nftnl_expr_is_set(e, NFTNL_EXPR_LOG_FLAGS)) {
      w.set_bit(m, 5);
      w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_LOG_FLAGS));
    }
  } else if (n == "nat") {
    w.u8(kNat);
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_TYPE));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_FAMILY));
    w.u8(get_reg(e, NFTNL_EXPR_NAT_REG_ADDR_MIN));
    w.u8(get_reg(e, NFTNL_EXPR_NAT_REG_ADDR_MAX));
    w.u8(get_reg(e, NFTNL_EXPR_NAT_REG_PROTO_MIN));
    w.u8(get_reg(e, NFTNL_EXPR_NAT_REG_PROTO_MAX));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_FLAGS));
  } else if (n == "limit") {
    w.u8(kLimit);
    w.u64(nftnl_expr_get_u64(e, NFTNL_EXPR_LIMIT_RATE));
    w.u64(nftnl_expr_get_u64(e, NFTNL_EXPR_LIMIT_UNIT));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_LIMIT_BURST));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_LIMIT_TYPE));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_LIMIT_FLAGS));
  } else if (n == "notrack") {
    w.u8(kNotrack);
  } else if (n == "reject") {
    w.u8(kReject);
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_REJECT_TYPE));
    w.u8(nftnl_expr_get_u8(e, NFTNL_EXPR_REJECT_CODE));
  } else if (n == "masq") {
    put_masq_or_redir(w, e, kMasq, kMasqAttrs);
  } else if (n == "redir") {
    put_masq_or_redir(w, e, kRedir, kRedirAttrs);
  } else if (n == "byteorder") {
    w.u8(kByteorder);
    w.u8(get_reg(e, NFTNL_EXPR_BYTEORDER_SREG));
    w.u8(get_reg(e, NFTNL_EXPR_BYTEORDER_DREG));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_BYTEORDER_OP));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_BYTEORDER_LEN));
    w.u32(nftnl_expr_get_u32(e, NFTNL_EXPR_BYTEORDER_SIZE));
  } else {
    put_other(w, e, n.c_str());
  }
}

}  // namespace portwall::nft
