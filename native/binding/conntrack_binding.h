// conntrackDump / conntrackDelete / conntrackDeleteEntries / conntrackCreate / conntrackFlushZone / conntrackSubscribe.
// Entries and filters cross as Buffers of fixed-size records (docs/wire.md, "Conntrack records").
#pragma once

#include <napi.h>

namespace portwall {

void RegisterConntrack(Napi::Env env, Napi::Object exports);

}  // namespace portwall
