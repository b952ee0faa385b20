#include "binding/ipset_binding.h"

#include <cstring>
#include <memory>

#include "binding/addon_data.h"
#include "binding/async.h"
#include "binding/held_socket.h"
#include "core/ipset.h"

namespace portwall {
namespace {

std::string string_arg(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

uint32_t u32_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : 0;
}

// Members: u32 count, then per member u8 family, u8 cidr, u8 iface length, u8 0, 16 address bytes, iface bytes.
std::vector<ipset::Member> members_arg(const Napi::Value& v) {
  Napi::Env env = v.Env();
  if (!v.IsBuffer()) throw Napi::TypeError::New(env, "members must be a Buffer");
  auto buf = v.As<Napi::Buffer<uint8_t>>();
  const uint8_t* p = buf.Data();
  const size_t len = buf.Length();
  auto bad = [&] { return Napi::TypeError::New(env, "members buffer is malformed"); };
  if (len < 4) throw bad();
  uint32_t count = p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24;
  // Each member takes at least 20 bytes: check before allocating, so a bad count cannot exhaust memory.
  if (count > (len - 4) / 20) throw bad();
  std::vector<ipset::Member> out(count);
  size_t at = 4;
  for (auto& m : out) {
    if (at + 20 > len) throw bad();
    m.family = p[at];
    m.cidr = p[at + 1];
    size_t iface_len = p[at + 2];
    std::memcpy(m.addr, p + at + 4, 16);
    at += 20;
    if (at + iface_len > len || (m.family != 4 && m.family != 6)) throw bad();
    m.iface.assign(reinterpret_cast<const char*>(p + at), iface_len);
    at += iface_len;
  }
  if (at != len) throw bad();
  return out;
}

using IpsetTarget = Target<ipset::Socket>;

struct Baton {
  IpsetTarget target;
  std::string name, other;
  ipset::CreateOptions create;
  std::vector<ipset::Member> members;
  std::vector<uint8_t> found;
  std::string text;
  bool headers_only = false;
};

Napi::Value Undefined(Napi::Env env, Baton&) { return env.Undefined(); }

// Queues `op(socket, baton)` on the target (argument 0): on the held socket, or on one opened in the namespace
// for this call and closed when it ends.
using Op = void (*)(ipset::Socket&, Baton&);
Napi::Promise Run(const Napi::CallbackInfo& info, std::unique_ptr<Baton> b, Op op,
                  PromiseWorker<Baton>::Result result = Undefined) {
  b->target = target_arg<ipset::Socket>(info[0], &AddonData::ipset_socket, "ipsetSocketOpen");
  return PromiseWorker<Baton>::Run(
      info.Env(), std::move(b),
      [op](Baton& b) {
        b.target.run([&](ipset::Socket& s) { op(s, b); }, [&] {
          ipset::Socket s(b.target.netns);
          op(s, b);
        });
      },
      std::move(result));
}

Napi::Value SocketOpen(const Napi::CallbackInfo& info) {
  return open_held<ipset::Socket>(info, &AddonData::ipset_socket, "the ipset socket was closed (IpsetSocket.close())");
}

std::unique_ptr<Baton> named(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<Baton>();
  b->name = string_arg(info[1], "name");
  return b;
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<Baton>();
  if (!info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "options must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  b->create.name = string_arg(o.Get("name"), "name");
  b->create.type = string_arg(o.Get("type"), "type");
  b->create.family = static_cast<uint8_t>(u32_field(o, "family"));
  b->create.hashsize = u32_field(o, "hashsize");
  b->create.maxelem = u32_field(o, "maxelem");
  b->create.timeout = u32_field(o, "timeout");
  b->create.counters = o.Get("counters").ToBoolean();
  b->create.comment = o.Get("comment").ToBoolean();
  return Run(info, std::move(b), [](ipset::Socket& s, Baton& b) { ipset::create(s, b.create); });
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  return Run(info, named(info), [](ipset::Socket& s, Baton& b) { ipset::destroy(s, b.name); });
}

Napi::Value Flush(const Napi::CallbackInfo& info) {
  return Run(info, named(info), [](ipset::Socket& s, Baton& b) { ipset::flush(s, b.name); });
}

Napi::Value Rename(const Napi::CallbackInfo& info) {
  auto b = named(info);
  b->other = string_arg(info[2], "to");
  return Run(info, std::move(b), [](ipset::Socket& s, Baton& b) { ipset::rename(s, b.name, b.other); });
}

Napi::Value Swap(const Napi::CallbackInfo& info) {
  auto b = named(info);
  b->other = string_arg(info[2], "other");
  return Run(info, std::move(b), [](ipset::Socket& s, Baton& b) { ipset::swap(s, b.name, b.other); });
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  auto b = named(info);
  b->members = members_arg(info[2]);
  return Run(info, std::move(b), [](ipset::Socket& s, Baton& b) { ipset::add(s, b.name, b.members); });
}

Napi::Value Del(const Napi::CallbackInfo& info) {
  auto b = named(info);
  b->members = members_arg(info[2]);
  return Run(info, std::move(b), [](ipset::Socket& s, Baton& b) { ipset::del(s, b.name, b.members); });
}

Napi::Value Test(const Napi::CallbackInfo& info) {
  auto b = named(info);
  b->members = members_arg(info[2]);
  return Run(
      info, std::move(b), [](ipset::Socket& s, Baton& b) { b.found = ipset::test(s, b.name, b.members); },
      [](Napi::Env env, Baton& b) -> Napi::Value {
        return Napi::Buffer<uint8_t>::Copy(env, b.found.data(), b.found.size());
      });
}

Napi::Value List(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<Baton>();
  if (!info[1].IsUndefined() && !info[1].IsNull()) b->name = string_arg(info[1], "name");
  b->headers_only = info[2].ToBoolean();
  return Run(
      info, std::move(b), [](ipset::Socket& s, Baton& b) { b.text = ipset::list(s, b.name, b.headers_only); },
      [](Napi::Env env, Baton& b) -> Napi::Value { return Napi::String::New(env, b.text); });
}

}  // namespace

void RegisterIpset(Napi::Env env, Napi::Object exports) {
  env.GetInstanceData<AddonData>()->ipset_socket =
      Napi::Persistent(HeldSocketHandle<ipset::Socket>::Define(env, "IpsetSocket"));
  exports.Set("ipsetSocketOpen", Napi::Function::New(env, SocketOpen, "ipsetSocketOpen"));
  exports.Set("ipsetCreate", Napi::Function::New(env, Create));
  exports.Set("ipsetDestroy", Napi::Function::New(env, Destroy));
  exports.Set("ipsetFlush", Napi::Function::New(env, Flush));
  exports.Set("ipsetRename", Napi::Function::New(env, Rename));
  exports.Set("ipsetSwap", Napi::Function::New(env, Swap));
  exports.Set("ipsetAdd", Napi::Function::New(env, Add));
  exports.Set("ipsetDel", Napi::Function::New(env, Del));
  exports.Set("ipsetTest", Napi::Function::New(env, Test));
  exports.Set("ipsetList", Napi::Function::New(env, List));
}

}  // namespace portwall
