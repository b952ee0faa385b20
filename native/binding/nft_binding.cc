#include "binding/nft_binding.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "binding/async.h"
#include "core/nft_commit.h"
#include "core/nft_dump.h"
#include "core/nft_encode.h"
#include "core/nft_held_socket.h"

namespace portwall {

namespace {

// Copied on the JS thread: the caller may reuse its Buffer as soon as the call returns.
std::vector<uint8_t> buffer_arg(const Napi::Value& v, const char* name) {
  if (!v.IsBuffer()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a Buffer");
  auto buf = v.As<Napi::Buffer<uint8_t>>();
  return std::vector<uint8_t>(buf.Data(), buf.Data() + buf.Length());
}

uint8_t family_arg(const Napi::Value& v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), "family must be a number (an NFPROTO value, 0 = all)");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 255) || d != static_cast<double>(static_cast<int>(d))) {
    throw Napi::TypeError::New(v.Env(), "family must be an integer from 0 to 255");
  }
  return static_cast<uint8_t>(d);
}

std::string table_arg(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), "table must be a string, null or undefined");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty()) throw Napi::TypeError::New(v.Env(), "table must not be empty (use null for all tables)");
  return s;
}

// ---- held sockets (nftSocketOpen) ----

// A JS handle on a HeldSocket. Every queued call holds its own reference (Target below), so a handle JS lets go
// of is only closed by the collector once no call needs it any more.
class NftSocketHandle : public Napi::ObjectWrap<NftSocketHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NftSocket", {InstanceMethod<&NftSocketHandle::Close>("close")});
  }

  // Only nftSocketOpen makes handles: it passes the socket as an External, which JS cannot forge.
  explicit NftSocketHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftSocketHandle>(info) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "NftSocket objects come from nftSocketOpen()");
    }
    held_ = *info[0].As<Napi::External<std::shared_ptr<nft::HeldSocket>>>().Data();
  }

  const std::shared_ptr<nft::HeldSocket>& held() const { return held_; }

 private:
  // Idempotent; a call already running finishes first (and closes the socket when it ends), later calls
  // reject. Closing may block for the kernel's release work (an RCU grace period after deletions).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    held_->close();
    return info.Env().Undefined();
  }

  std::shared_ptr<nft::HeldSocket> held_;
};

// Per-environment data: the handle class, to recognise handles among arguments.
struct NftData {
  Napi::FunctionReference socket_class;
};

// Where a call goes: a held socket, or (held == nullptr) a socket opened in `netns` for this call only.
struct Target {
  std::string netns;
  std::shared_ptr<nft::HeldSocket> held;
};

Target target_arg(const Napi::Value& v) {
  if (v.IsObject()) {
    auto* data = v.Env().GetInstanceData<NftData>();
    Napi::Object o = v.As<Napi::Object>();
    if (data && o.InstanceOf(data->socket_class.Value())) {
      if (NftSocketHandle* h = NftSocketHandle::Unwrap(o)) return Target{h->held()->netns(), h->held()};
    }
    throw Napi::TypeError::New(v.Env(), "target must be a network namespace (a string or null) or a socket from nftSocketOpen()");
  }
  return Target{netns_arg(v), nullptr};
}

// Runs `io` on the target's held socket, or `per_call` when the target is a namespace. The baton's reference
// is dropped here, on the pool thread, so that a socket the collector let go of closes here, not on the JS thread.
void on_target(Target& t, const std::function<void(nft::NftSocket&)>& io, const std::function<void()>& per_call) {
  std::shared_ptr<nft::HeldSocket> held = std::move(t.held);
  if (held) {
    held->use(io);
  } else {
    per_call();
  }
}

// The optional generation of nftCommit: absent (undefined/null) → 0, no check.
uint32_t genid_arg(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return 0;
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), "genid must be a number (a ruleset generation id)");
  double d = v.As<Napi::Number>().DoubleValue();
  // 0 would silently disable the kernel's check, and the kernel never reports generation 0.
  if (!(d >= 1 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    throw Napi::TypeError::New(v.Env(), "genid must be an integer from 1 to 2^32-1");
  }
  return static_cast<uint32_t>(d);
}

struct OpenBaton {
  std::string netns;
  std::shared_ptr<nft::HeldSocket> held;
};

Napi::Value NftSocketOpen(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<OpenBaton>();
  b->netns = netns_arg(info[0]);
  return PromiseWorker<OpenBaton>::Run(
      info.Env(), std::move(b), [](OpenBaton& b) { b.held = std::make_shared<nft::HeldSocket>(b.netns); },
      [](Napi::Env env, OpenBaton& b) -> Napi::Value {
        auto* data = env.GetInstanceData<NftData>();
        return data->socket_class.New({Napi::External<std::shared_ptr<nft::HeldSocket>>::New(env, &b.held)});
      });
}

// ---- calls ----

Napi::Value commit_value(Napi::Env env, const nft::CommitResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("genid", Napi::Number::New(env, r.genid));
  o.Set("messages", Napi::Number::New(env, r.messages));
  return o;
}

struct CommitBaton {
  Target target;
  std::vector<uint8_t> input;  // wire batch (nftCommit, nftEncode) or netlink bytes (nftSendEncoded)
  uint32_t genid = 0;          // nftCommit: the generation the batch is conditional on (0 = none)
  nft::CommitResult result{};
  ByteBuffer encoded;            // nftEncode's result
};

Napi::Value NftCommit(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<CommitBaton>();
  b->target = target_arg(info[0]);
  b->input = buffer_arg(info[1], "batch");
  b->genid = genid_arg(info[2]);
  return PromiseWorker<CommitBaton>::Run(
      info.Env(), std::move(b),
      [](CommitBaton& b) {
        // Encoded before the socket is taken: a held socket is busy only while the kernel works.
        nft::EncodedBatch enc = nft::encode(b.input.data(), b.input.size(), b.genid);
        std::vector<uint8_t>().swap(b.input);  // the wire copy is no longer needed while the kernel works
        on_target(
            b.target,
            [&](nft::NftSocket& s) {
              b.result = nft::send_batch(s, enc.bytes.data(), enc.bytes.size(), &enc.record_of_message);
            },
            [&] {
              b.result = nft::send_batch(b.target.netns, enc.bytes.data(), enc.bytes.size(), &enc.record_of_message);
            });
      },
      [](Napi::Env env, CommitBaton& b) { return commit_value(env, b.result); });
}

Napi::Value NftEncode(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<CommitBaton>();
  b->input = buffer_arg(info[0], "batch");
  return PromiseWorker<CommitBaton>::Run(
      info.Env(), std::move(b),
      [](CommitBaton& b) { b.encoded = std::move(nft::encode(b.input.data(), b.input.size()).bytes); },
      [](Napi::Env env, CommitBaton& b) -> Napi::Value {
        return Napi::Buffer<uint8_t>::Copy(env, b.encoded.data(), b.encoded.size());
      });
}

Napi::Value NftSendEncoded(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<CommitBaton>();
  b->target = target_arg(info[0]);
  b->input = buffer_arg(info[1], "netlink");
  return PromiseWorker<CommitBaton>::Run(
      info.Env(), std::move(b),
      [](CommitBaton& b) {
        on_target(
            b.target, [&](nft::NftSocket& s) { b.result = nft::send_batch(s, b.input.data(), b.input.size(), nullptr); },
            [&] { b.result = nft::send_batch(b.target.netns, b.input.data(), b.input.size(), nullptr); });
      },
      [](Napi::Env env, CommitBaton& b) { return commit_value(env, b.result); });
}

struct ListBaton {
  Target target;
  uint8_t family = 0;
  std::string table;
  nft::ListResult result{};
};

Napi::Value NftList(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<ListBaton>();
  b->target = target_arg(info[0]);
  b->family = family_arg(info[1]);
  b->table = table_arg(info[2]);
  return PromiseWorker<ListBaton>::Run(
      info.Env(), std::move(b),
      [](ListBaton& b) {
        on_target(
            b.target, [&](nft::NftSocket& s) { b.result = nft::list(s, b.family, b.table); },
            [&] { b.result = nft::list(b.target.netns, b.family, b.table); });
      },
      [](Napi::Env env, ListBaton& b) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("genid", Napi::Number::New(env, b.result.genid));
        o.Set("records", Napi::Buffer<uint8_t>::Copy(env, b.result.records.data(), b.result.records.size()));
        return o;
      });
}

struct GenidBaton {
  Target target;
  uint32_t genid = 0;
};

Napi::Value NftGenid(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<GenidBaton>();
  b->target = target_arg(info[0]);
  return PromiseWorker<GenidBaton>::Run(
      info.Env(), std::move(b),
      [](GenidBaton& b) {
        on_target(
            b.target, [&](nft::NftSocket& s) { b.genid = s.genid(); }, [&] { b.genid = nft::genid(b.target.netns); });
      },
      [](Napi::Env env, GenidBaton& b) -> Napi::Value { return Napi::Number::New(env, b.genid); });
}

}  // namespace

void RegisterNft(Napi::Env env, Napi::Object exports) {
  auto* data = new NftData();
  data->socket_class = Napi::Persistent(NftSocketHandle::Define(env));
  env.SetInstanceData(data);
  exports.Set("nftSocketOpen", Napi::Function::New(env, NftSocketOpen, "nftSocketOpen"));
  exports.Set("nftCommit", Napi::Function::New(env, NftCommit, "nftCommit"));
  exports.Set("nftEncode", Napi::Function::New(env, NftEncode, "nftEncode"));
  exports.Set("nftSendEncoded", Napi::Function::New(env, NftSendEncoded, "nftSendEncoded"));
  exports.Set("nftList", Napi::Function::New(env, NftList, "nftList"));
  exports.Set("nftGenid", Napi::Function::New(env, NftGenid, "nftGenid"));
}

}  // namespace portwall
