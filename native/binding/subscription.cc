#include "binding/subscription.h"

#include "binding/addon_data.h"

namespace portwall {
namespace {

// The JS handle of a subscription: close(), ref(), unref(). Made only by NewSubscriptionHandle
// (AddonData::Construct). When the collector takes it without close(), its subscription stops.
class Handle : public Napi::ObjectWrap<Handle> {
 public:
  explicit Handle(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Handle>(info), sub_(info.Env().GetInstanceData<AddonData>()->Constructing<Subscription>()) {
    if (!sub_) throw Napi::TypeError::New(info.Env(), "subscriptions come from conntrackSubscribe() or nftSubscribe()");
  }

  // Final at once (no callback runs after this call), idempotent; the promise resolves once the thread is
  // joined and the socket closed.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    sub_->MarkClosed();
    struct CloseBaton {
      std::shared_ptr<Subscription> sub;
    };
    auto b = std::make_unique<CloseBaton>();
    b->sub = sub_;
    return PromiseWorker<CloseBaton>::Run(
        info.Env(), std::move(b), [](CloseBaton& b) { b.sub->StopReader(); },
        [](Napi::Env env, CloseBaton& b) -> Napi::Value {
          b.sub->Finish();
          return env.Undefined();
        });
  }

  Napi::Value RefLoop(const Napi::CallbackInfo& info) {
    sub_->Ref(info.Env(), true);
    return info.Env().Undefined();
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    sub_->Ref(info.Env(), false);
    return info.Env().Undefined();
  }

 private:
  std::shared_ptr<Subscription> sub_;
};

}  // namespace

Napi::Function DefineSubscriptionHandle(Napi::Env env) {
  return Handle::DefineClass(env, "EventSubscription",
                             {Handle::InstanceMethod<&Handle::Close>("close"), Handle::InstanceMethod<&Handle::RefLoop>("ref"),
                              Handle::InstanceMethod<&Handle::UnrefLoop>("unref")});
}

Napi::Value NewSubscriptionHandle(Napi::Env env, const std::shared_ptr<Subscription>& sub) {
  auto* data = env.GetInstanceData<AddonData>();
  data->subscriptions.Add(sub);
  return data->Construct(data->subscription, sub);
}

}  // namespace portwall
