#include "core/nft_dump.h"

#include <libnftnl/common.h>
#include <linux/netfilter/nf_tables.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/faults.h"
#include "core/nft_expr.h"
#include "core/nft_handles.h"
#include "core/nft_socket.h"
#include "core/wire.h"

namespace portwall::nft {

namespace {

constexpr int kMaxAttempts = 16;
// A set's element dump that repeats elements is taken again after 1, 2, 4 … this many milliseconds.
constexpr int kRepeatPauseMaxMs = 64;

using ElemIterPtr = std::unique_ptr<nftnl_set_elems_iter, Deleter<nftnl_set_elems_iter_destroy>>;

// Thrown while dumping when the snapshot can no longer be consistent; list() starts over.
struct Restart {};

// Tables, chains, set definitions and rules; the sets' elements are dumped (GETSETELEM is per set) as the
// records are written, one set at a time, so their libnftnl objects never all live at once.
struct Snapshot {
  std::vector<TablePtr> tables;
  std::vector<ChainPtr> chains;
  std::vector<SetPtr> sets;
  std::vector<RulePtr> rules;
};

struct Filter {
  uint8_t family;      // 0 = all
  std::string table;   // "" = all
  const Look* look;    // null = everything
  bool operator()(uint32_t f, const char* t) const {
    return (family == 0 || f == family) && (table.empty() || (t && table == t));
  }
  bool full() const { return look == nullptr; }
  bool named(const char* set) const {
    for (const std::string& n : look->elements_of) if (set && n == set) return true;
    return false;
  }
  bool wants_set(const char* set) const { return full() || !look->named_sets_only || named(set); }
  bool wants_elements(const char* set) const { return full() || named(set); }
};

void parsed(int rc, const char* what) {
  if (rc < 0) throw Error(ErrorKind::kNetlink, EBADMSG, std::string("libnftnl cannot parse a dumped ") + what);
}

// One dump of one object type; `make` allocates, `parse` fills from a message, `keep` filters.
template <typename Ptr, typename Make, typename Parse, typename Keep>
void dump_into(NftSocket& s, const nlmsghdr* req, std::vector<Ptr>& out, Make make, Parse parse, Keep keep,
               const char* what) {
  bool complete = s.dump(req, [&](const nlmsghdr* nlh) {
    Ptr obj = make();
    parsed(parse(nlh, obj.get()), what);
    if (keep(obj.get())) out.push_back(std::move(obj));
  });
  if (!complete) throw Restart{};
}

// Whether a set's dumped elements name one element twice (key, end of range and whether it ends an interval).
bool repeats(nftnl_set* elems) {
  ElemIterPtr it = checked<ElemIterPtr>(nftnl_set_elems_iter_create(elems), "nftnl_set_elems_iter");
  std::unordered_set<std::string> seen;
  std::string id;
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it.get()); e; e = nftnl_set_elems_iter_next(it.get())) {
    id.clear();
    for (uint16_t attr : {NFTNL_SET_ELEM_KEY, NFTNL_SET_ELEM_KEY_END}) {
      uint32_t len = 0;
      const void* p = nftnl_set_elem_is_set(e, attr) ? nftnl_set_elem_get(e, attr, &len) : nullptr;
      id.push_back(static_cast<char>(len));
      if (p) id.append(static_cast<const char*>(p), len);
    }
    const bool end = nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS) &&
                     (nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS) & NFT_SET_ELEM_INTERVAL_END);
    id.push_back(end ? 1 : 0);
    if (!seen.insert(id).second) return true;
  }
  return false;
}

// One set's elements. The kernel walks a hash set afresh for every receive, skipping what it sent before; a
// resize of the table (a kernel worker does it some time after the commit that grew or shrank the set) reorders
// that walk, so the dump repeats some elements and leaves out as many, and nothing flags it. A repeated element
// is the sign: take the set again, after a pause that lets the resize finish (docs/netlink.md, "Dumps of a hash
// set that is being resized").
SetPtr dump_elements(NftSocket& s, const nftnl_set* set) {
  const char* table = nftnl_set_get_str(set, NFTNL_SET_TABLE);
  const char* name = nftnl_set_get_str(set, NFTNL_SET_NAME);
  const auto family = static_cast<uint8_t>(nftnl_set_get_u32(set, NFTNL_SET_FAMILY));
  // Interval sets (rbtree, pipapo) keep their order between commits, which the generation check covers.
  const bool hashed = !(nftnl_set_get_u32(set, NFTNL_SET_FLAGS) & NFT_SET_INTERVAL);
  std::vector<char> buf(4096 + std::strlen(table) + std::strlen(name));
  for (int pause_ms = 1; pause_ms <= kRepeatPauseMaxMs; pause_ms *= 2) {
    SetPtr elems = make_set();
    nftnl_set_set_str(elems.get(), NFTNL_SET_TABLE, table);
    nftnl_set_set_str(elems.get(), NFTNL_SET_NAME, name);
    nlmsghdr* req = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETSETELEM, family, NLM_F_DUMP, s.next_seq());
    nftnl_set_elems_nlmsg_build_payload(req, elems.get());
    try {
      bool complete = s.dump(req, [&](const nlmsghdr* nlh) {
        parsed(nftnl_set_elems_nlmsg_parse(nlh, elems.get()), "set element list");
#ifdef PORTWALL_FAULTS
        // As if the kernel's walk had sent this part of a hash set twice.
        if (hashed && faults::at("repeat")) parsed(nftnl_set_elems_nlmsg_parse(nlh, elems.get()), "set element list");
#endif
      });
      if (!complete) throw Restart{};
    } catch (const Error& e) {
      if (e.err() == ENOENT) throw Restart{};  // the set went away after the set dump
      throw;
    }
    if (!hashed || !repeats(elems.get())) return elems;
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  }
  throw Restart{};
}

void dump_all(NftSocket& s, const Filter& want, Snapshot& snap) {
  std::vector<char> buf(4096);
  auto request = [&](uint16_t type, uint8_t family) {
    return nftnl_nlmsg_build_hdr(buf.data(), type, family, NLM_F_DUMP, s.next_seq());
  };
  dump_into(s, request(NFT_MSG_GETTABLE, want.family), snap.tables, make_table, nftnl_table_nlmsg_parse,
            [&](const nftnl_table* t) {
              return want(nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY), nftnl_table_get_str(t, NFTNL_TABLE_NAME));
            },
            "table");
  if (want.full()) {
    dump_into(s, request(NFT_MSG_GETCHAIN, want.family), snap.chains, make_chain, nftnl_chain_nlmsg_parse,
              [&](const nftnl_chain* c) {
                return want(nftnl_chain_get_u32(c, NFTNL_CHAIN_FAMILY), nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE));
              },
              "chain");
  }
  dump_into(s, request(NFT_MSG_GETSET, want.family), snap.sets, make_set, nftnl_set_nlmsg_parse,
            [&](const nftnl_set* st) {
              return want(nftnl_set_get_u32(st, NFTNL_SET_FAMILY), nftnl_set_get_str(st, NFTNL_SET_TABLE)) &&
                     want.wants_set(nftnl_set_get_str(st, NFTNL_SET_NAME));
            },
            "set");
  // Rules are the bulk: let the kernel skip other tables (it filters rule dumps by NFTA_RULE_TABLE).
  if (want.full()) {
    nlmsghdr* rules_req = request(NFT_MSG_GETRULE, want.family);
    if (!want.table.empty()) {
      RulePtr only = make_rule();
      nftnl_rule_set_str(only.get(), NFTNL_RULE_TABLE, want.table.c_str());
      nftnl_rule_nlmsg_build_payload(rules_req, only.get());
    }
    dump_into(s, rules_req, snap.rules, make_rule, nftnl_rule_nlmsg_parse,
              [&](const nftnl_rule* r) {
                return want(nftnl_rule_get_u32(r, NFTNL_RULE_FAMILY), nftnl_rule_get_str(r, NFTNL_RULE_TABLE));
              },
              "rule");
  }

  for (const SetPtr& set : snap.sets) {
    if (!nftnl_set_get_str(set.get(), NFTNL_SET_TABLE) || !nftnl_set_get_str(set.get(), NFTNL_SET_NAME)) {
      throw Error(ErrorKind::kNetlink, EBADMSG, "a dumped set has no table or name");
    }
  }
}

// ---- records ----

// A record's presence mask, filled in as fields are written in bit order.
class Fields {
 public:
  explicit Fields(wire::Writer& w) : w_(w), mask_(w.begin_mask()) {}
  wire::Writer& at(unsigned bit) {
    w_.set_bit(mask_, bit);
    return w_;
  }

 private:
  wire::Writer& w_;
  size_t mask_;
};

void header(wire::Writer& w, wire::Kind kind, uint32_t family) {
  w.u8(wire::kDump);
  w.u8(kind);
  w.u8(static_cast<uint8_t>(family));
}

void write_table(wire::Writer& w, const nftnl_table* t) {
  header(w, wire::kTable, nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY));
  Fields f(w);
  f.at(0).str(nftnl_table_get_str(t, NFTNL_TABLE_NAME));
  if (nftnl_table_is_set(t, NFTNL_TABLE_HANDLE)) f.at(1).u64(nftnl_table_get_u64(t, NFTNL_TABLE_HANDLE));
  if (nftnl_table_is_set(t, NFTNL_TABLE_FLAGS)) f.at(2).u32(nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS));
  if (nftnl_table_is_set(t, NFTNL_TABLE_USE)) f.at(3).u32(nftnl_table_get_u32(t, NFTNL_TABLE_USE));
  if (nftnl_table_is_set(t, NFTNL_TABLE_USERDATA)) {
    uint32_t len = 0;
    const void* p = nftnl_table_get_data(t, NFTNL_TABLE_USERDATA, &len);
    f.at(4).bytes(p, len);
  }
}

void write_chain(wire::Writer& w, const nftnl_chain* c) {
  header(w, wire::kChain, nftnl_chain_get_u32(c, NFTNL_CHAIN_FAMILY));
  Fields f(w);
  f.at(0).str(nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE));
  f.at(1).str(nftnl_chain_get_str(c, NFTNL_CHAIN_NAME));
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_HANDLE)) f.at(2).u64(nftnl_chain_get_u64(c, NFTNL_CHAIN_HANDLE));
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM)) f.at(3).u32(nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM));
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_PRIO)) f.at(4).i32(nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO));
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY)) f.at(5).u32(nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY));
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE)) f.at(6).str(nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE));
  // A single device is reported both alone and as a one-entry list; the wire has room for one.
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_DEV)) {
    f.at(7).str(nftnl_chain_get_str(c, NFTNL_CHAIN_DEV));
  } else if (nftnl_chain_is_set(c, NFTNL_CHAIN_DEVICES)) {
    const char* const* devs = nftnl_chain_get_array(c, NFTNL_CHAIN_DEVICES);
    if (devs && devs[0]) f.at(7).str(devs[0]);
  }
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_USE)) f.at(8).u32(nftnl_chain_get_u32(c, NFTNL_CHAIN_USE));
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_USERDATA)) {
    uint32_t len = 0;
    const void* p = nftnl_chain_get_data(c, NFTNL_CHAIN_USERDATA, &len);
    f.at(9).bytes(p, len);
  }
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_FLAGS)) f.at(10).u32(nftnl_chain_get_u32(c, NFTNL_CHAIN_FLAGS));
}

int find_counter(nftnl_expr* e, void* data) {
  const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
  if (name && std::strcmp(name, "counter") == 0) *static_cast<nftnl_expr**>(data) = e;
  return 0;
}

void write_set(wire::Writer& w, const nftnl_set* s) {
  header(w, wire::kSet, nftnl_set_get_u32(s, NFTNL_SET_FAMILY));
  Fields f(w);
  f.at(0).str(nftnl_set_get_str(s, NFTNL_SET_TABLE));
  f.at(1).str(nftnl_set_get_str(s, NFTNL_SET_NAME));
  static constexpr struct {
    unsigned bit;
    uint16_t attr;
  } kU32[] = {{3, NFTNL_SET_FLAGS}, {4, NFTNL_SET_KEY_TYPE}, {5, NFTNL_SET_KEY_LEN},
              {6, NFTNL_SET_DATA_TYPE}, {7, NFTNL_SET_DATA_LEN}, {8, NFTNL_SET_ID}};
  if (nftnl_set_is_set(s, NFTNL_SET_HANDLE)) f.at(2).u64(nftnl_set_get_u64(s, NFTNL_SET_HANDLE));
  for (const auto& v : kU32) {
    if (nftnl_set_is_set(s, v.attr)) f.at(v.bit).u32(nftnl_set_get_u32(s, v.attr));
  }
  if (nftnl_set_is_set(s, NFTNL_SET_DESC_CONCAT)) {
    uint32_t n = 0;
    const auto* lens = static_cast<const uint8_t*>(nftnl_set_get_data(s, NFTNL_SET_DESC_CONCAT, &n));
    f.at(9).u8(static_cast<uint8_t>(n));
    for (uint32_t i = 0; i < n; ++i) w.u8(lens[i]);
  }
  if (nftnl_set_is_set(s, NFTNL_SET_POLICY)) f.at(10).u32(nftnl_set_get_u32(s, NFTNL_SET_POLICY));
  if (nftnl_set_is_set(s, NFTNL_SET_DESC_SIZE)) f.at(11).u32(nftnl_set_get_u32(s, NFTNL_SET_DESC_SIZE));
  if (nftnl_set_is_set(s, NFTNL_SET_USERDATA)) {
    uint32_t len = 0;
    const void* p = nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len);
    f.at(12).bytes(p, len);
  }
  nftnl_expr* counter = nullptr;
  nftnl_set_expr_foreach(s, find_counter, &counter);
  if (counter) f.at(13).u8(1);
  if (nftnl_set_is_set(s, NFTNL_SET_TIMEOUT)) f.at(14).u64(nftnl_set_get_u64(s, NFTNL_SET_TIMEOUT));
  if (nftnl_set_is_set(s, NFTNL_SET_GC_INTERVAL)) f.at(15).u32(nftnl_set_get_u32(s, NFTNL_SET_GC_INTERVAL));
}

void write_element(wire::Writer& w, nftnl_set_elem* e) {
  Fields f(w);
  static constexpr struct {
    unsigned bit;
    uint16_t attr;
  } kValues[] = {{0, NFTNL_SET_ELEM_KEY}, {1, NFTNL_SET_ELEM_KEY_END}, {2, NFTNL_SET_ELEM_DATA}};
  for (const auto& v : kValues) {
    if (!nftnl_set_elem_is_set(e, v.attr)) continue;
    uint32_t len = 0;
    const void* p = nftnl_set_elem_get(e, v.attr, &len);
    f.at(v.bit).bytes(p, len);
  }
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT)) {
    f.at(3).i32(static_cast<int32_t>(nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT)));
    w.str(nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN) ? nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN) : "");
  }
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS)) f.at(4).u32(nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS));
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_USERDATA)) {
    uint32_t len = 0;
    const void* p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &len);
    f.at(5).bytes(p, len);
  }
  nftnl_expr* counter = nullptr;
  nftnl_set_elem_expr_foreach(e, find_counter, &counter);
  if (counter) {
    f.at(6).u64(nftnl_expr_get_u64(counter, NFTNL_EXPR_CTR_PACKETS));
    w.u64(nftnl_expr_get_u64(counter, NFTNL_EXPR_CTR_BYTES));
  }
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_TIMEOUT)) f.at(7).u64(nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_TIMEOUT));
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION)) {
    f.at(8).u64(nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION));
  }
}

void write_elements(wire::Writer& w, const nftnl_set* set, const nftnl_set* elems) {
  header(w, wire::kElements, nftnl_set_get_u32(set, NFTNL_SET_FAMILY));
  Fields f(w);
  f.at(0).str(nftnl_set_get_str(set, NFTNL_SET_TABLE));
  f.at(1).str(nftnl_set_get_str(set, NFTNL_SET_NAME));
  const size_t count_pos = w.size();
  w.u32(0);
  uint32_t count = 0;
  ElemIterPtr it = checked<ElemIterPtr>(nftnl_set_elems_iter_create(elems), "nftnl_set_elems_iter");
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it.get()); e; e = nftnl_set_elems_iter_next(it.get())) {
    write_element(w, e);
    ++count;
  }
  w.patch_u32(count_pos, count);
}

void write_rule(wire::Writer& w, const nftnl_rule* r) {
  header(w, wire::kRule, nftnl_rule_get_u32(r, NFTNL_RULE_FAMILY));
  Fields f(w);
  f.at(0).str(nftnl_rule_get_str(r, NFTNL_RULE_TABLE));
  f.at(1).str(nftnl_rule_get_str(r, NFTNL_RULE_CHAIN));
  if (nftnl_rule_is_set(r, NFTNL_RULE_HANDLE)) f.at(2).u64(nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE));
  if (nftnl_rule_is_set(r, NFTNL_RULE_POSITION)) f.at(3).u64(nftnl_rule_get_u64(r, NFTNL_RULE_POSITION));
  if (nftnl_rule_is_set(r, NFTNL_RULE_USERDATA)) {
    uint32_t len = 0;
    const void* p = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
    f.at(4).bytes(p, len);
  }
  std::vector<nftnl_expr*> exprs;
  ExprIterPtr it = checked<ExprIterPtr>(nftnl_expr_iter_create(r), "nftnl_expr_iter");
  for (nftnl_expr* e = nftnl_expr_iter_next(it.get()); e; e = nftnl_expr_iter_next(it.get())) exprs.push_back(e);
  f.at(5).u16(static_cast<uint16_t>(exprs.size()));
  for (nftnl_expr* e : exprs) write_expr(w, e);
}

std::string table_key(uint32_t family, const char* table) {
  return std::to_string(family) + '/' + (table ? table : "");
}

// Per table, in kernel order: table, chains, sets each followed by its elements, rules. Each set's elements
// are dumped here, written, and let go before the next set's: a 5000-port listing's ~100k elements as libnftnl
// objects were tens of MB of fresh memory, each page of which costs a fault (docs/wire.md, "Fresh memory").
// Throws Restart as dump_all does.
ByteBuffer write_records(NftSocket& sock, const Filter& want, const Snapshot& snap) {
  struct Bucket {
    std::vector<const nftnl_chain*> chains;
    std::vector<size_t> sets;
    std::vector<const nftnl_rule*> rules;
  };
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < snap.tables.size(); ++i) {
    const nftnl_table* t = snap.tables[i].get();
    index[table_key(nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY), nftnl_table_get_str(t, NFTNL_TABLE_NAME))] = i;
  }
  std::vector<Bucket> buckets(snap.tables.size());
  auto bucket = [&](uint32_t family, const char* table) -> Bucket* {
    auto it = index.find(table_key(family, table));
    return it == index.end() ? nullptr : &buckets[it->second];
  };
  for (const ChainPtr& c : snap.chains) {
    if (Bucket* b = bucket(nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_FAMILY), nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)))
      b->chains.push_back(c.get());
  }
  for (size_t i = 0; i < snap.sets.size(); ++i) {
    const nftnl_set* s = snap.sets[i].get();
    if (Bucket* b = bucket(nftnl_set_get_u32(s, NFTNL_SET_FAMILY), nftnl_set_get_str(s, NFTNL_SET_TABLE)))
      b->sets.push_back(i);
  }
  for (const RulePtr& r : snap.rules) {
    if (Bucket* b = bucket(nftnl_rule_get_u32(r.get(), NFTNL_RULE_FAMILY), nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE)))
      b->rules.push_back(r.get());
  }

  wire::Writer w;
  w.u32(wire::kMagic);
  w.u32(0);  // record count, patched below
  uint32_t count = 0;
  for (size_t i = 0; i < snap.tables.size(); ++i) {
    write_table(w, snap.tables[i].get());
    ++count;
    for (const nftnl_chain* c : buckets[i].chains) {
      write_chain(w, c);
      ++count;
    }
    for (size_t s : buckets[i].sets) {
      const nftnl_set* set = snap.sets[s].get();
      write_set(w, set);
      ++count;
      // A listing of set definitions leaves the elements of the sets it does not name out.
      if (!want.wants_elements(nftnl_set_get_str(set, NFTNL_SET_NAME))) continue;
      write_elements(w, set, dump_elements(sock, set).get());
      ++count;
    }
    for (const nftnl_rule* r : buckets[i].rules) {
      write_rule(w, r);
      ++count;
    }
  }
  w.patch_u32(4, count);
  return std::move(w.buffer());
}

}  // namespace

ListResult list(const std::string& netns, uint8_t family, const std::string& table, const Look* look) {
  NftSocket s(netns);
  return list(s, family, table, look);
}

ListResult list(NftSocket& s, uint8_t family, const std::string& table, const Look* look) {
  const Filter want{family, table, look};
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    // Several dumps make one snapshot only if no commit landed in between: compare generations around them.
    const uint32_t before = s.genid();
    Snapshot snap;
    ByteBuffer records;
    try {
      dump_all(s, want, snap);
      records = write_records(s, want, snap);
    } catch (const Restart&) {
      continue;
    }
    if (s.genid() != before) continue;
    return ListResult{before, std::move(records)};
  }
  throw Error(ErrorKind::kSystem, EAGAIN,
              "the ruleset kept changing (commits, or hash sets being resized): no consistent dump in " +
                  std::to_string(kMaxAttempts) + " attempts");
}

uint32_t genid(const std::string& netns) {
  NftSocket s(netns);
  return s.genid();
}

}  // namespace portwall::nft
