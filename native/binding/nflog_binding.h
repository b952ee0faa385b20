// nflogSubscribe (src/native.ts): an NFLOG group read on a thread of its own, delivering logged packets to a
// JS callback through a thread-safe function (binding/subscription.h).
#pragma once

#include <napi.h>

namespace portwall {

void RegisterNflog(Napi::Env env, Napi::Object exports);

}  // namespace portwall
