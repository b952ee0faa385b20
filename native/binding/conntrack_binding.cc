#include "binding/conntrack_binding.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "binding/async.h"
#include "binding/held_socket.h"
#include "binding/subscription.h"
#include "core/conntrack.h"
#include "core/conntrack_events.h"

namespace portwall {
namespace {

using conntrack::Entry;
using conntrack::Filter;

constexpr size_t kEntryBytes = 96;
constexpr size_t kFilterBytes = 64;

uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t get32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24; }
void put16(uint8_t* p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
void put32(uint8_t* p, uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = (v >> (8 * i)) & 0xff; }

void encode_entry(const Entry& e, uint8_t* p) {
  p[0] = e.family;
  p[1] = e.proto;
  put16(p + 2, e.zone);
  put32(p + 4, e.mark);
  put32(p + 8, e.status);
  put32(p + 12, e.timeout);
  put32(p + 16, e.id);
  p[20] = e.tcp_state;
  p[21] = e.event;
  p[22] = p[23] = 0;
  std::memcpy(p + 24, e.orig_src, 16);
  std::memcpy(p + 40, e.orig_dst, 16);
  put16(p + 56, e.orig_sport);
  put16(p + 58, e.orig_dport);
  std::memcpy(p + 60, e.reply_src, 16);
  std::memcpy(p + 76, e.reply_dst, 16);
  put16(p + 92, e.reply_sport);
  put16(p + 94, e.reply_dport);
}

Entry decode_entry(const uint8_t* p) {
  Entry e;
  e.family = p[0];
  e.proto = p[1];
  e.zone = get16(p + 2);
  e.mark = get32(p + 4);
  e.status = get32(p + 8);
  e.timeout = get32(p + 12);
  e.id = get32(p + 16);
  e.tcp_state = p[20];
  e.event = p[21];
  std::memcpy(e.orig_src, p + 24, 16);
  std::memcpy(e.orig_dst, p + 40, 16);
  e.orig_sport = get16(p + 56);
  e.orig_dport = get16(p + 58);
  std::memcpy(e.reply_src, p + 60, 16);
  std::memcpy(e.reply_dst, p + 76, 16);
  e.reply_sport = get16(p + 92);
  e.reply_dport = get16(p + 94);
  return e;
}

Filter decode_filter(const uint8_t* p) {
  Filter f;
  f.fields = get32(p);
  f.zone = get16(p + 4);
  f.family = p[6];
  f.proto = p[7];
  f.mark = get32(p + 8);
  f.mark_mask = get32(p + 12);
  f.src_len = p[16];
  f.dst_len = p[17];
  std::memcpy(f.src, p + 20, 16);
  std::memcpy(f.dst, p + 36, 16);
  f.sport_min = get16(p + 52);
  f.sport_max = get16(p + 54);
  f.dport_min = get16(p + 56);
  f.dport_max = get16(p + 58);
  return f;
}

// A Buffer argument holding whole records of `size` bytes; anything else is an encoder bug.
template <typename T>
std::vector<T> records(const Napi::Value& v, size_t size, T (*decode)(const uint8_t*), const char* what) {
  if (v.IsUndefined() || v.IsNull()) return {};
  if (!v.IsBuffer()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Buffer");
  auto buf = v.As<Napi::Buffer<uint8_t>>();
  if (buf.Length() % size != 0)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " is not a whole number of records");
  std::vector<T> out;
  out.reserve(buf.Length() / size);
  for (size_t at = 0; at < buf.Length(); at += size) out.push_back(decode(buf.Data() + at));
  return out;
}

Napi::Buffer<uint8_t> entries_buffer(Napi::Env env, const std::vector<Entry>& entries) {
  auto buf = Napi::Buffer<uint8_t>::New(env, entries.size() * kEntryBytes);
  for (size_t i = 0; i < entries.size(); ++i) encode_entry(entries[i], buf.Data() + i * kEntryBytes);
  return buf;
}

// ---- held sockets (conntrackSocketOpen, binding/held_socket.h) ----

using CtTarget = Target<conntrack::Socket>;

// The first argument of the calls below: a namespace (a socket per call) or a conntrackSocketOpen() handle.
CtTarget ct_target(const Napi::Value& v) {
  return target_arg<conntrack::Socket>(v, &AddonData::conntrack_socket, "conntrackSocketOpen");
}

Napi::Value SocketOpen(const Napi::CallbackInfo& info) {
  return open_held<conntrack::Socket>(info, &AddonData::conntrack_socket,
                                      "the conntrack socket was closed (ConntrackSocket.close())");
}

// ---- calls ----

struct FilterBaton {
  CtTarget target;
  std::vector<Filter> filters;
  std::vector<Entry> entries;
  uint32_t count = 0;
};

// Queues `op` on the target: on the held socket, or on a socket opened in the namespace for this call (the
// per-call forms of core/conntrack.h, which skip opening one when there is nothing to do).
template <typename Op, typename Result>
Napi::Value run(const Napi::CallbackInfo& info, std::unique_ptr<FilterBaton> b, Op op, Result result) {
  return PromiseWorker<FilterBaton>::Run(
      info.Env(), std::move(b),
      [op](FilterBaton& b) { b.target.run([&](conntrack::Socket& s) { op(s, b); }, [&] { op(b.target.netns, b); }); },
      result);
}

Napi::Value count_value(Napi::Env env, FilterBaton& b) { return Napi::Number::New(env, b.count); }

Napi::Value Dump(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<FilterBaton>();
  b->target = ct_target(info[0]);
  b->filters = records<Filter>(info[1], kFilterBytes, decode_filter, "filters");
  return run(
      info, std::move(b), [](auto& where, FilterBaton& b) { b.entries = conntrack::dump(where, b.filters); },
      [](Napi::Env env, FilterBaton& b) -> Napi::Value { return entries_buffer(env, b.entries); });
}

// conntrackCount(target): the namespace's number of tracked entries, without walking the conntrack hash.
Napi::Value Count(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<FilterBaton>();
  b->target = ct_target(info[0]);
  return run(
      info, std::move(b), [](auto& where, FilterBaton& b) { b.count = conntrack::count(where); }, count_value);
}

// conntrackCountSync(socket): conntrackCount on the JS thread, for a held socket that is free at once (the
// kernel answers from a counter, in less time than a pool thread's round trip: docs/netlink.md, "Small
// batches"); undefined, asking nothing, otherwise. Errors are thrown as conntrackCount rejects them.
Napi::Value CountSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CtTarget target = ct_target(info[0]);
  if (!target.held) return env.Undefined();
  uint32_t count = 0;
  const bool ran = on_js_thread(env, [&] {
    return target.held->try_use([&](conntrack::Socket& s) { count = conntrack::count(s); });
  });
  return ran ? Napi::Number::New(env, count) : env.Undefined();
}

Napi::Value Delete(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<FilterBaton>();
  b->target = ct_target(info[0]);
  b->filters = records<Filter>(info[1], kFilterBytes, decode_filter, "filters");
  return run(
      info, std::move(b), [](auto& where, FilterBaton& b) { b.count = conntrack::remove(where, b.filters); },
      count_value);
}

Napi::Value DeleteEntries(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<FilterBaton>();
  b->target = ct_target(info[0]);
  b->entries = records<Entry>(info[1], kEntryBytes, decode_entry, "entries");
  return run(
      info, std::move(b), [](auto& where, FilterBaton& b) { b.count = conntrack::remove_entries(where, b.entries); },
      count_value);
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<FilterBaton>();
  b->target = ct_target(info[0]);
  b->entries = records<Entry>(info[1], kEntryBytes, decode_entry, "entries");
  return run(
      info, std::move(b), [](auto& where, FilterBaton& b) { b.count = conntrack::create(where, b.entries); },
      count_value);
}

Napi::Value FlushZone(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<FilterBaton>();
  b->target = ct_target(info[0]);
  Filter f;
  f.zone = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  f.family = static_cast<uint8_t>(info[2].As<Napi::Number>().Uint32Value());
  b->filters.push_back(f);
  return run(
      info, std::move(b),
      [](auto& where, FilterBaton& b) { conntrack::flush_zone(where, b.filters[0].zone, b.filters[0].family); },
      [](Napi::Env env, FilterBaton&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value events_value(Napi::Env env, const std::vector<Entry>& entries) { return entries_buffer(env, entries); }

// conntrackSubscribe(netns, groups, callback(error, entries, lost)): resolves with a subscription handle
// (binding/subscription.h) once the socket is open and joined to the groups.
Napi::Value ConntrackSubscribe(const Napi::CallbackInfo& info) {
  std::string netns = netns_arg(info[0]);
  unsigned groups = info[1].As<Napi::Number>().Uint32Value();
  if (!info[2].IsFunction()) throw Napi::TypeError::New(info.Env(), "callback must be a function");
  return Subscribe<conntrack::EventReader, Entry, events_value>(
      info.Env(), info[2].As<Napi::Function>(),
      [netns, groups] { return std::make_unique<conntrack::EventReader>(netns, groups); }, "conntrack events");
}

}  // namespace

void RegisterConntrack(Napi::Env env, Napi::Object exports) {
  env.GetInstanceData<AddonData>()->conntrack_socket =
      Napi::Persistent(HeldSocketHandle<conntrack::Socket>::Define(env, "ConntrackSocket"));
  exports.Set("conntrackSocketOpen", Napi::Function::New(env, SocketOpen, "conntrackSocketOpen"));
  exports.Set("conntrackDump", Napi::Function::New(env, Dump));
  exports.Set("conntrackCount", Napi::Function::New(env, Count));
  exports.Set("conntrackCountSync", Napi::Function::New(env, CountSync));
  exports.Set("conntrackDelete", Napi::Function::New(env, Delete));
  exports.Set("conntrackDeleteEntries", Napi::Function::New(env, DeleteEntries));
  exports.Set("conntrackCreate", Napi::Function::New(env, Create));
  exports.Set("conntrackFlushZone", Napi::Function::New(env, FlushZone));
  exports.Set("conntrackSubscribe", Napi::Function::New(env, ConntrackSubscribe));
}

}  // namespace portwall
