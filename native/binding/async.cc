#include "binding/async.h"

#include <cstring>

namespace portwall {

static const char* kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::kSystem: return "system";
    case ErrorKind::kNetlink: return "netlink";
    case ErrorKind::kWire: return "wire";
  }
  return "system";
}

Napi::Error to_js_error(Napi::Env env, const Error& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  Napi::Object o = err.Value();
  o.Set("kind", Napi::String::New(env, kind_name(e.kind())));
  o.Set("errno", Napi::Number::New(env, e.err()));
  const char* name = e.err() > 0 ? strerrorname_np(e.err()) : nullptr;
  if (name) o.Set("errnoName", Napi::String::New(env, name));
  o.Set("opIndex", Napi::Number::New(env, e.op_index()));
  return err;
}

std::string netns_arg(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), "netns must be a string, null or undefined");
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace portwall
