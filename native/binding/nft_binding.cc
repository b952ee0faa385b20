#include "binding/nft_binding.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "binding/async.h"
#include "binding/held_socket.h"
#include "core/nft_commit.h"
#include "core/nft_dump.h"
#include "core/nft_encode.h"

namespace portwall {

namespace {

// The bytes a call works on off the JS thread. Copied (the caller may reuse its Buffer as soon as the call
// returns), or lent: the caller's Buffer itself, held until the call settles, for callers that leave it
// unchanged meanwhile. A full sync's batch is megabytes, and a copy of it as many megabytes of fresh pages,
// ~2.5 ms a megabyte on a virtual machine (docs/wire.md, "Fresh memory").
class InputBytes {
 public:
  InputBytes() = default;
  static InputBytes copy(const Napi::Value& v, const char* name) {
    auto buf = buffer(v, name);
    InputBytes in;
    in.copy_.assign(buf.Data(), buf.Data() + buf.Length());
    return in;
  }
  static InputBytes lend(const Napi::Value& v, const char* name) {
    auto buf = buffer(v, name);
    InputBytes in;
    in.lent_ = Napi::Persistent(buf);
    in.lent_data_ = buf.Data();
    in.lent_size_ = buf.Length();
    return in;
  }

  const uint8_t* data() const { return lent_.IsEmpty() ? copy_.data() : lent_data_; }
  size_t size() const { return lent_.IsEmpty() ? copy_.size() : lent_size_; }
  // Frees a copy once it has been read (any thread); lent bytes stay the caller's.
  void drop_copy() { std::vector<uint8_t>().swap(copy_); }

  // On the JS thread, once the call is done with lent bytes: a Buffer that owns its ArrayBuffer (nftCommit's
  // `release`) is detached, so its memory goes back now instead of when the collector gets to it; a slice of
  // something larger is left alone. An ArrayBuffer that cannot be detached is simply left to the collector.
  void detach() {
    if (lent_.IsEmpty()) return;
    Napi::Buffer<uint8_t> buf = lent_.Value();
    if (buf.ByteOffset() == 0) napi_detach_arraybuffer(buf.Env(), buf.ArrayBuffer());
    lent_.Reset();
  }

 private:
  static Napi::Buffer<uint8_t> buffer(const Napi::Value& v, const char* name) {
    if (!v.IsBuffer()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a Buffer");
    return v.As<Napi::Buffer<uint8_t>>();
  }

  std::vector<uint8_t> copy_;
  Napi::Reference<Napi::Buffer<uint8_t>> lent_;
  const uint8_t* lent_data_ = nullptr;
  size_t lent_size_ = 0;
};

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

// ---- held sockets (nftSocketOpen, binding/held_socket.h) ----

using NftTarget = Target<nft::NftSocket>;

NftTarget nft_target(const Napi::Value& v) { return target_arg<nft::NftSocket>(v, &AddonData::nft_socket, "nftSocketOpen"); }

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

Napi::Value NftSocketOpen(const Napi::CallbackInfo& info) {
  return open_held<nft::NftSocket>(info, &AddonData::nft_socket, "the nftables socket was closed (NftSocket.close())");
}

// ---- calls ----

Napi::Value commit_value(Napi::Env env, const nft::CommitResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("genid", Napi::Number::New(env, r.genid));
  o.Set("messages", Napi::Number::New(env, r.messages));
  return o;
}

struct CommitBaton {
  NftTarget target;
  InputBytes input;     // wire batch (nftCommit, nftEncode) or netlink bytes (nftSendEncoded)
  uint32_t genid = 0;   // nftCommit: the generation the batch is conditional on (0 = none)
  nft::CommitResult result{};
  ByteBuffer encoded;   // nftEncode's result
};

// nftCommit's optional `release`: the caller's Buffer is its own (a Transaction's encoding, allocated unpooled)
// and never read or written again, so it is read in place and its memory goes back once the commit is done —
// a full sync's batch is megabytes (docs/wire.md, "Writing"). Without it the batch is copied.
Napi::Value NftCommit(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<CommitBaton>();
  b->target = nft_target(info[0]);
  const bool release = info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  b->input = release ? InputBytes::lend(info[1], "batch") : InputBytes::copy(info[1], "batch");
  b->genid = genid_arg(info[2]);
  return PromiseWorker<CommitBaton>::Run(
      info.Env(), std::move(b),
      [](CommitBaton& b) {
        // Encoded before the socket is taken: a held socket is busy only while the kernel works.
        nft::EncodedBatch enc = nft::encode(b.input.data(), b.input.size(), b.genid);
        b.input.drop_copy();  // a wire copy is no longer needed while the kernel works
        b.target.run(
            [&](nft::NftSocket& s) {
              b.result = nft::send_batch(s, enc.bytes.data(), enc.bytes.size(), &enc.record_of_message);
            },
            [&] {
              b.result = nft::send_batch(b.target.netns, enc.bytes.data(), enc.bytes.size(), &enc.record_of_message);
            });
      },
      [](Napi::Env env, CommitBaton& b) { return commit_value(env, b.result); },
      [](CommitBaton& b) { b.input.detach(); });
}

// nftCommitSync(socket, batch, genid?): the commit on the JS thread, for small batches whose kernel work is
// shorter than a pool thread's round trip (docs/netlink.md, "Small batches"). Returns undefined, sending
// nothing, when the target is not a held socket or that socket is not free at once (busy, closed, to be
// reopened); the caller then uses nftCommit. Errors are thrown as nftCommit rejects them.
Napi::Value NftCommitSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NftTarget target = nft_target(info[0]);
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "batch must be a Buffer");
  auto batch = info[1].As<Napi::Buffer<uint8_t>>();
  const uint32_t genid = genid_arg(info[2]);
  if (!target.held) return env.Undefined();
  nft::CommitResult result{};
  const bool ran = on_js_thread(env, [&] {
    nft::EncodedBatch enc = nft::encode(batch.Data(), batch.Length(), genid);
    return target.held->try_use([&](nft::NftSocket& s) {
      result = nft::send_batch(s, enc.bytes.data(), enc.bytes.size(), &enc.record_of_message);
    });
  });
  return ran ? commit_value(env, result) : env.Undefined();
}

Napi::Value NftEncode(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<CommitBaton>();
  b->input = InputBytes::copy(info[0], "batch");
  return PromiseWorker<CommitBaton>::Run(
      info.Env(), std::move(b),
      [](CommitBaton& b) { b.encoded = std::move(nft::encode(b.input.data(), b.input.size()).bytes); },
      [](Napi::Env env, CommitBaton& b) -> Napi::Value {
        return Napi::Buffer<uint8_t>::Copy(env, b.encoded.data(), b.encoded.size());
      });
}

// The caller leaves `netlink` unchanged until the call settles: it is sent in place, as the kernel reads it.
Napi::Value NftSendEncoded(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<CommitBaton>();
  b->target = nft_target(info[0]);
  b->input = InputBytes::lend(info[1], "netlink");
  return PromiseWorker<CommitBaton>::Run(
      info.Env(), std::move(b),
      [](CommitBaton& b) {
        b.target.run(
            [&](nft::NftSocket& s) { b.result = nft::send_batch(s, b.input.data(), b.input.size(), nullptr); },
            [&] { b.result = nft::send_batch(b.target.netns, b.input.data(), b.input.size(), nullptr); });
      },
      [](Napi::Env env, CommitBaton& b) { return commit_value(env, b.result); });
}

struct ListBaton {
  NftTarget target;
  uint8_t family = 0;
  std::string table;
  bool partial = false;  // a look (nft::Look): set definitions, the elements of the named sets only
  nft::Look look;
  nft::ListResult result{};
};

// nftList's optional fourth argument: an array of set names, or null/undefined for a full listing.
bool elements_of_arg(const Napi::Value& v, std::vector<std::string>& out) {
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "elementsOf must be an array of set names, null or undefined");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value n = a.Get(i);
    if (!n.IsString()) throw Napi::TypeError::New(v.Env(), "elementsOf must hold set names (strings)");
    out.push_back(n.As<Napi::String>().Utf8Value());
  }
  return true;
}

Napi::Value NftList(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<ListBaton>();
  b->target = nft_target(info[0]);
  b->family = family_arg(info[1]);
  b->table = table_arg(info[2]);
  b->partial = elements_of_arg(info[3], b->look.elements_of);
  // Fifth: with elementsOf, true lists the definitions of those sets alone.
  if (!info[4].IsUndefined() && !info[4].IsNull()) {
    if (!info[4].IsBoolean()) throw Napi::TypeError::New(info.Env(), "namedSetsOnly must be a boolean");
    b->look.named_sets_only = info[4].As<Napi::Boolean>().Value();
  }
  return PromiseWorker<ListBaton>::Run(
      info.Env(), std::move(b),
      [](ListBaton& b) {
        const nft::Look* only = b.partial ? &b.look : nullptr;
        b.target.run(
            [&](nft::NftSocket& s) { b.result = nft::list(s, b.family, b.table, only); },
            [&] { b.result = nft::list(b.target.netns, b.family, b.table, only); });
      },
      [](Napi::Env env, ListBaton& b) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("genid", Napi::Number::New(env, b.result.genid));
        // Handed over, not copied: a 5000-port listing is ~8 MB, each fresh page of a copy a fault.
        const size_t size = b.result.records.size();
        uint8_t* records = b.result.records.release();
        o.Set("records", Napi::Buffer<uint8_t>::NewOrCopy(env, records, size, [](Napi::Env, uint8_t* p) { std::free(p); }));
        return o;
      });
}

struct GenidBaton {
  NftTarget target;
  uint32_t genid = 0;
};

Napi::Value NftGenid(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<GenidBaton>();
  b->target = nft_target(info[0]);
  return PromiseWorker<GenidBaton>::Run(
      info.Env(), std::move(b),
      [](GenidBaton& b) {
        b.target.run(
            [&](nft::NftSocket& s) { b.genid = s.genid(); }, [&] { b.genid = nft::genid(b.target.netns); });
      },
      [](Napi::Env env, GenidBaton& b) -> Napi::Value { return Napi::Number::New(env, b.genid); });
}

}  // namespace

void RegisterNft(Napi::Env env, Napi::Object exports) {
  env.GetInstanceData<AddonData>()->nft_socket = Napi::Persistent(HeldSocketHandle<nft::NftSocket>::Define(env, "NftSocket"));
  exports.Set("nftSocketOpen", Napi::Function::New(env, NftSocketOpen, "nftSocketOpen"));
  exports.Set("nftCommit", Napi::Function::New(env, NftCommit, "nftCommit"));
  exports.Set("nftCommitSync", Napi::Function::New(env, NftCommitSync, "nftCommitSync"));
  exports.Set("nftEncode", Napi::Function::New(env, NftEncode, "nftEncode"));
  exports.Set("nftSendEncoded", Napi::Function::New(env, NftSendEncoded, "nftSendEncoded"));
  exports.Set("nftList", Napi::Function::New(env, NftList, "nftList"));
  exports.Set("nftGenid", Napi::Function::New(env, NftGenid, "nftGenid"));
}

}  // namespace portwall
