// ipsetCreate / ipsetDestroy / ipsetFlush / ipsetRename / ipsetSwap / ipsetAdd / ipsetDel / ipsetTest /
// ipsetList. Members cross as one Buffer (docs/wire.md, "ipset members").
#pragma once

#include <napi.h>

namespace portwall {

void RegisterIpset(Napi::Env env, Napi::Object exports);

}  // namespace portwall
