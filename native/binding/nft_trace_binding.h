// nftTraceSubscribe (src/native.ts): nftables trace events read on a thread of their own, delivered to a JS
// callback through a thread-safe function (binding/subscription.h).
#pragma once

#include <napi.h>

namespace portwall {

void RegisterNftTrace(Napi::Env env, Napi::Object exports);

}  // namespace portwall
