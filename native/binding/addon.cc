// Registers the binding's functions; each operation lives in its own file.
#include <napi.h>

#include "binding/addon_data.h"
#include "binding/conntrack_binding.h"
#include "binding/faults_binding.h"
#include "binding/ipset_binding.h"
#include "binding/nft_binding.h"
#include "binding/nflog_binding.h"
#include "binding/nft_events_binding.h"
#include "binding/nft_trace_binding.h"
#include "binding/subscription.h"

#ifdef PORTWALL_SANITIZE
#include <sanitizer/lsan_interface.h>

// The sanitizer build only (binding.gyp, pw_sanitize): a leak check the tests run while the process is alive,
// since the test runner kills its workers before LeakSanitizer's check at exit could finish. Reports go to
// ASAN_OPTIONS' log_path; returns whether any leak was found.
static Napi::Value SanitizerLeakCheck(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), __lsan_do_recoverable_leak_check() != 0);
}
#endif

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new portwall::AddonData();  // the handle classes, filled in by the Register functions
  env.SetInstanceData(data);
  data->subscription = Napi::Persistent(portwall::DefineSubscriptionHandle(env));
  // Registered before any subscription's thread-safe function, so it runs after theirs but in the same round
  // of cleanup hooks, before node frees them: every reader thread is joined while its function still exists.
  // Node deletes `data` later, when it finalises the environment.
  napi_add_env_cleanup_hook(
      env, [](void* d) { static_cast<portwall::AddonData*>(d)->subscriptions.CloseAll(); }, data);
  portwall::RegisterNft(env, exports);
  portwall::RegisterNftEvents(env, exports);
  portwall::RegisterNflog(env, exports);
  portwall::RegisterNftTrace(env, exports);
  portwall::RegisterIpset(env, exports);
  portwall::RegisterConntrack(env, exports);
#ifdef PORTWALL_FAULTS
  portwall::RegisterFaults(env, exports);  // the faults build only (docs/reliability.md, "Fault injection")
#endif
#ifdef PORTWALL_SANITIZE
  exports.Set("sanitizerLeakCheck", Napi::Function::New(env, SanitizerLeakCheck, "sanitizerLeakCheck"));
#endif
  return exports;
}

NODE_API_MODULE(portwall, Init)
