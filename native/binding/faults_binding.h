// The faults build only (binding.gyp pw_faults=1): `faults.arm/disarm/hits` over native/core/faults.h.
#pragma once

#ifdef PORTWALL_FAULTS
#include <napi.h>

namespace portwall {
void RegisterFaults(Napi::Env env, Napi::Object exports);
}
#endif
