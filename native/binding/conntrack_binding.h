// conntrackSocketOpen / conntrackDump / conntrackDelete / conntrackDeleteEntries / conntrackCreate /
// conntrackFlushZone / conntrackSubscribe. Entries and filters cross as Buffers of fixed-size records
// (docs/wire.md, "Conntrack records"). Every call but conntrackSubscribe takes a target: a namespace (a socket
// is opened and closed for the call) or a handle from conntrackSocketOpen (a HeldSocket, kept open across calls).
#pragma once

#include <napi.h>

namespace portwall {

void RegisterConntrack(Napi::Env env, Napi::Object exports);

}  // namespace portwall
