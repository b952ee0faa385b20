// ipsetSocketOpen / ipsetCreate / ipsetDestroy / ipsetFlush / ipsetRename / ipsetSwap / ipsetAdd / ipsetDel /
// ipsetTest / ipsetList. The first argument of a call is its target: a namespace (a socket for that call) or
// a socket from ipsetSocketOpen (binding/held_socket.h). Members cross as one Buffer (docs/wire.md, "ipset
// members").
#pragma once

#include <napi.h>

namespace portwall {

void RegisterIpset(Napi::Env env, Napi::Object exports);

}  // namespace portwall
