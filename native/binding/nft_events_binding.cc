#include "binding/nft_events_binding.h"

#include <memory>
#include <string>
#include <vector>

#include "binding/async.h"
#include "binding/subscription.h"
#include "core/nft_events.h"

namespace portwall {
namespace {

Napi::Object transaction_value(Napi::Env env, const nft::Transaction& tx) {
  Napi::Array events = Napi::Array::New(env, tx.events.size());
  for (uint32_t i = 0; i < tx.events.size(); ++i) {
    const nft::Event& e = tx.events[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("msg", Napi::Number::New(env, e.msg));
    o.Set("family", Napi::Number::New(env, e.family));
    o.Set("table", Napi::String::New(env, e.table));
    o.Set("name", Napi::String::New(env, e.name));
    o.Set("count", Napi::Number::New(env, e.count));
    events.Set(i, o);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("genid", Napi::Number::New(env, tx.genid));
  o.Set("pid", Napi::Number::New(env, tx.pid));
  o.Set("procName", Napi::String::New(env, tx.proc_name));
  o.Set("portid", Napi::Number::New(env, tx.portid));
  o.Set("self", Napi::Boolean::New(env, tx.self));
  o.Set("events", events);
  return o;
}

// The transactions of one delivery as a JS array.
Napi::Value transactions_value(Napi::Env env, const std::vector<nft::Transaction>& txs) {
  Napi::Array out = Napi::Array::New(env, txs.size());
  for (uint32_t i = 0; i < txs.size(); ++i) out.Set(i, transaction_value(env, txs[i]));
  return out;
}

// nftSubscribe(netns, callback(error, transactions, lost), receiveBuffer?): resolves with a subscription handle
// (binding/subscription.h) once the socket is open and joined to the group, so every commit after that is seen.
Napi::Value NftSubscribe(const Napi::CallbackInfo& info) {
  std::string netns = netns_arg(info[0]);
  if (!info[1].IsFunction()) throw Napi::TypeError::New(info.Env(), "callback must be a function");
  size_t rcvbuf = nft::EventReader::kReceiveBuffer;
  if (!info[2].IsUndefined() && !info[2].IsNull()) {
    double d = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
    if (!(d >= 1 && d <= 1073741824.0) || d != static_cast<double>(static_cast<size_t>(d))) {
      throw Napi::TypeError::New(info.Env(), "receiveBuffer must be an integer from 1 to 2^30 (bytes)");
    }
    rcvbuf = static_cast<size_t>(d);
  }
  return Subscribe<nft::EventReader, nft::Transaction, transactions_value>(
      info.Env(), info[1].As<Napi::Function>(), [netns, rcvbuf] { return std::make_unique<nft::EventReader>(netns, rcvbuf); },
      "nftables events");
}

}  // namespace

void RegisterNftEvents(Napi::Env env, Napi::Object exports) {
  exports.Set("nftSubscribe", Napi::Function::New(env, NftSubscribe, "nftSubscribe"));
}

}  // namespace portwall
