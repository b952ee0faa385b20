// The nftables functions of the binding (src/native.ts): nftCommit, nftEncode, nftSendEncoded, nftList,
// nftGenid. Each validates its arguments on the JS thread, copies them into a baton and runs the netlink I/O
// on a pool thread.
#pragma once

#include <napi.h>

namespace portwall {

void RegisterNft(Napi::Env env, Napi::Object exports);

}  // namespace portwall
