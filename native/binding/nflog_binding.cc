#include "binding/nflog_binding.h"

#include <memory>
#include <string>
#include <vector>

#include "binding/async.h"
#include "binding/subscription.h"
#include "core/nflog.h"

namespace portwall {
namespace {

// The packets of one delivery as a JS array.
Napi::Value packets_value(Napi::Env env, const std::vector<nflog::Packet>& packets) {
  Napi::Array out = Napi::Array::New(env, packets.size());
  for (uint32_t i = 0; i < packets.size(); ++i) {
    const nflog::Packet& p = packets[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("prefix", Napi::String::New(env, p.prefix));
    o.Set("hwProtocol", Napi::Number::New(env, p.hw_protocol));
    o.Set("hook", Napi::Number::New(env, p.hook));
    o.Set("indev", Napi::Number::New(env, p.indev));
    o.Set("outdev", Napi::Number::New(env, p.outdev));
    o.Set("physindev", Napi::Number::New(env, p.physindev));
    o.Set("physoutdev", Napi::Number::New(env, p.physoutdev));
    o.Set("payload", Napi::Buffer<uint8_t>::Copy(env, p.payload.data(), p.payload.size()));
    out.Set(i, o);
  }
  return out;
}

uint32_t u32_arg(const Napi::Value& v, uint32_t max, const char* what) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an integer from 0 to " + std::to_string(max));
  }
  return static_cast<uint32_t>(d);
}

// nflogSubscribe(netns, group, copyRange, callback(error, packets, lost)): resolves with a subscription handle
// once the group is bound (EBUSY when another socket of the namespace has it).
Napi::Value NflogSubscribe(const Napi::CallbackInfo& info) {
  std::string netns = netns_arg(info[0]);
  uint16_t group = static_cast<uint16_t>(u32_arg(info[1], 65535, "group"));
  uint32_t range = u32_arg(info[2], 65535, "copyRange");
  if (!info[3].IsFunction()) throw Napi::TypeError::New(info.Env(), "callback must be a function");
  return Subscribe<nflog::EventReader, nflog::Packet, packets_value>(
      info.Env(), info[3].As<Napi::Function>(), [netns, group, range] { return std::make_unique<nflog::EventReader>(netns, group, range); },
      "nflog");
}

}  // namespace

void RegisterNflog(Napi::Env env, Napi::Object exports) {
  exports.Set("nflogSubscribe", Napi::Function::New(env, NflogSubscribe, "nflogSubscribe"));
}

}  // namespace portwall
