#include "binding/nft_trace_binding.h"

#include <memory>
#include <string>
#include <vector>

#include "binding/async.h"
#include "binding/subscription.h"
#include "core/nft_trace.h"

namespace portwall {
namespace {

// The events of one delivery as a JS array of compact records (field names as NativeTraceEvent in src/native.ts).
Napi::Value events_value(Napi::Env env, const std::vector<nfttrace::Event>& events) {
  Napi::Array out = Napi::Array::New(env, events.size());
  for (uint32_t i = 0; i < events.size(); ++i) {
    const nfttrace::Event& e = events[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", Napi::Number::New(env, e.id));
    o.Set("type", Napi::Number::New(env, e.type));
    o.Set("family", Napi::Number::New(env, e.family));
    o.Set("nfproto", Napi::Number::New(env, e.nfproto));
    o.Set("table", Napi::String::New(env, e.table));
    o.Set("chain", Napi::String::New(env, e.chain));
    if (e.has_handle) o.Set("handle", Napi::BigInt::New(env, e.handle));
    if (e.has_verdict) o.Set("verdict", Napi::Number::New(env, e.verdict));
    if (!e.jump_target.empty()) o.Set("target", Napi::String::New(env, e.jump_target));
    if (e.has_policy) o.Set("policy", Napi::Number::New(env, e.policy));
    o.Set("iif", Napi::Number::New(env, e.iif));
    o.Set("oif", Napi::Number::New(env, e.oif));
    o.Set("mark", Napi::Number::New(env, e.mark));
    if (!e.network.empty()) o.Set("network", Napi::Buffer<uint8_t>::Copy(env, e.network.data(), e.network.size()));
    if (!e.transport.empty()) o.Set("transport", Napi::Buffer<uint8_t>::Copy(env, e.transport.data(), e.transport.size()));
    out.Set(i, o);
  }
  return out;
}

// nftTraceSubscribe(netns, callback(error, events, lost)): resolves with a subscription handle once the socket
// has joined the trace group.
Napi::Value NftTraceSubscribe(const Napi::CallbackInfo& info) {
  std::string netns = netns_arg(info[0]);
  if (!info[1].IsFunction()) throw Napi::TypeError::New(info.Env(), "callback must be a function");
  return Subscribe<nfttrace::EventReader, nfttrace::Event, events_value>(
      info.Env(), info[1].As<Napi::Function>(), [netns] { return std::make_unique<nfttrace::EventReader>(netns); }, "nftables trace");
}

}  // namespace

void RegisterNftTrace(Napi::Env env, Napi::Object exports) {
  exports.Set("nftTraceSubscribe", Napi::Function::New(env, NftTraceSubscribe, "nftTraceSubscribe"));
}

}  // namespace portwall
