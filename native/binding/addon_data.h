// The addon's per-environment data (napi keeps one per environment), set by addon.cc before anything
// registers: the constructors of the handle classes, to make handles and recognise them among arguments, and
// the registry of live subscriptions.
#pragma once

#include <napi.h>

#include <memory>
#include <utility>

#include "binding/subscription.h"

namespace portwall {

struct AddonData {
  Napi::FunctionReference nft_socket;
  Napi::FunctionReference conntrack_socket;
  Napi::FunctionReference ipset_socket;
  Napi::FunctionReference subscription;  // the handle class of conntrackSubscribe and nftSubscribe
  SubscriptionRegistry subscriptions;

  // The native object of the handle being constructed, set right before calling a handle class's constructor
  // and taken by it: JS cannot forge handles (a constructor called from JS finds nothing here), and no
  // External is made per handle (node frees an External's bookkeeping only when the collector takes it, which
  // it never does for those still alive at exit).
  template <typename T>
  Napi::Object Construct(const Napi::FunctionReference& cls, std::shared_ptr<T> native) {
    constructing = std::move(native);
    struct Clear {
      std::shared_ptr<void>& slot;
      ~Clear() { slot.reset(); }
    } clear{constructing};
    return cls.New({});
  }
  // For the constructor: the object passed to Construct, or null when JS called the constructor itself.
  template <typename T>
  std::shared_ptr<T> Constructing() {
    return std::static_pointer_cast<T>(std::exchange(constructing, nullptr));
  }

 private:
  std::shared_ptr<void> constructing;
};

}  // namespace portwall
