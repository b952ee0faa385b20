// The faults build only: exports `faults` (docs/reliability.md, "Fault injection").
//   faults.arm({ point, nth?, errno?, times? })   nth: 1… (default 1), or 'first' | 'middle' | 'last'
//   faults.disarm()
//   faults.hits() → [{ point, index, of, errno }]  what fired since the last arm()
#include "binding/faults_binding.h"

#include <string>

#include "core/faults.h"

namespace portwall {

namespace {

const char* const kPoints[] = {"encode",     "commit.send", "commit.reject", "commit.recv", "commit.ack", "genid.send",
                               "genid.recv", "dump.send",   "dump.recv",     "dump.intr",   "dump.repeat"};

int int_field(const Napi::Object& o, const char* name, int fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("faults.arm: ") + name + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

Napi::Value Arm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "faults.arm takes { point, nth, errno, times }");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string point = o.Get("point").ToString().Utf8Value();
  bool known = false;
  for (const char* p : kPoints) known = known || point == p;
  if (!known) throw Napi::TypeError::New(env, "faults.arm: unknown point " + point);
  int nth = 1;
  Napi::Value v = o.Get("nth");
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s == "first") nth = 1;
    else if (s == "middle") nth = 0;
    else if (s == "last") nth = -1;
    else throw Napi::TypeError::New(env, "faults.arm: nth must be a number, 'first', 'middle' or 'last'");
  } else {
    nth = int_field(o, "nth", 1);
  }
  faults::arm(point, nth, int_field(o, "errno", 0), int_field(o, "times", 1));
  return env.Undefined();
}

Napi::Value Disarm(const Napi::CallbackInfo& info) {
  faults::disarm();
  return info.Env().Undefined();
}

Napi::Value Hits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto fired = faults::fired();
  Napi::Array out = Napi::Array::New(env, fired.size());
  for (size_t i = 0; i < fired.size(); ++i) {
    Napi::Object h = Napi::Object::New(env);
    h.Set("point", fired[i].point);
    h.Set("index", fired[i].index);
    h.Set("of", fired[i].of);
    h.Set("errno", fired[i].err);
    out.Set(static_cast<uint32_t>(i), h);
  }
  return out;
}

}  // namespace

void RegisterFaults(Napi::Env env, Napi::Object exports) {
  Napi::Object f = Napi::Object::New(env);
  f.Set("arm", Napi::Function::New(env, Arm, "arm"));
  f.Set("disarm", Napi::Function::New(env, Disarm, "disarm"));
  f.Set("hits", Napi::Function::New(env, Hits, "hits"));
  exports.Set("faults", f);
}

}  // namespace portwall
