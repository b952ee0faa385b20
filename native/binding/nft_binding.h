// The nftables functions of the binding (src/native.ts): nftSocketOpen, nftCommit, nftEncode, nftSendEncoded,
// nftList, nftGenid. Each validates its arguments on the JS thread, copies them into a baton and runs the
// netlink I/O on a pool thread. The calls that talk to the kernel take a target: a namespace (a socket is
// opened and closed for the call) or a handle from nftSocketOpen (a HeldSocket, kept open across calls).
#pragma once

#include <napi.h>

namespace portwall {

void RegisterNft(Napi::Env env, Napi::Object exports);

}  // namespace portwall
