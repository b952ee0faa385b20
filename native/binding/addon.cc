// Registers the binding's functions; each operation lives in its own file.
#include <napi.h>

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  return exports;
}

NODE_API_MODULE(portwall, Init)
