// Registers the binding's functions; each operation lives in its own file.
#include <napi.h>

#include "binding/nft_binding.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  portwall::RegisterNft(env, exports);
  return exports;
}

NODE_API_MODULE(portwall, Init)
