// Registers the binding's functions; each operation lives in its own file.
#include <napi.h>

#include "binding/conntrack_binding.h"
#include "binding/held_socket.h"
#include "binding/ipset_binding.h"
#include "binding/nft_binding.h"
#include "binding/nft_events_binding.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new portwall::AddonData());  // the handle classes, filled in by the Register functions
  portwall::RegisterNft(env, exports);
  portwall::RegisterNftEvents(env, exports);
  portwall::RegisterIpset(env, exports);
  portwall::RegisterConntrack(env, exports);
  return exports;
}

NODE_API_MODULE(portwall, Init)
