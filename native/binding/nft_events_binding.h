// nftSubscribe (src/native.ts): an nftables event subscription (NFNLGRP_NFTABLES) read on a thread of its own,
// delivering the kernel's committed transactions to a JS callback through a thread-safe function.
#pragma once

#include <napi.h>

namespace portwall {

void RegisterNftEvents(Napi::Env env, Napi::Object exports);

}  // namespace portwall
