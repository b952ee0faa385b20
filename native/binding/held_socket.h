// Held sockets as JS values (nftSocketOpen, conntrackSocketOpen, ipsetSocketOpen) and the call targets that
// accept them.
//
// `<x>SocketOpen(netns)` opens a HeldSocket<Socket> (core/held_socket.h) on a pool thread and resolves with a
// handle object of a class of its own; the calls that talk to the kernel take a target as first argument: a
// namespace (a socket opened and closed for that call) or such a handle. Every queued call holds its own
// reference to the HeldSocket, so a handle JS lets go of is only closed by the collector once no call needs
// it any more, and that last reference is dropped on the pool thread.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "binding/addon_data.h"
#include "binding/async.h"
#include "core/held_socket.h"

namespace portwall {

// Which constructor of AddonData a kind of handle is made by.
using HandleClass = Napi::FunctionReference AddonData::*;

// A JS handle on a HeldSocket<Socket>, with one method: close().
template <typename Socket>
class HeldSocketHandle : public Napi::ObjectWrap<HeldSocketHandle<Socket>> {
 public:
  using Held = HeldSocket<Socket>;

  static Napi::Function Define(Napi::Env env, const char* name) {
    return HeldSocketHandle::DefineClass(env, name, {HeldSocketHandle::template InstanceMethod<&HeldSocketHandle::Close>("close")});
  }

  // Only open_held() makes handles (AddonData::Construct).
  explicit HeldSocketHandle(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<HeldSocketHandle>(info), held_(info.Env().GetInstanceData<AddonData>()->Constructing<Held>()) {
    if (!held_) throw Napi::TypeError::New(info.Env(), "socket objects come from nftSocketOpen(), conntrackSocketOpen() or ipsetSocketOpen()");
  }

  const std::shared_ptr<Held>& held() const { return held_; }

 private:
  // Idempotent; a call already running finishes first (and closes the socket when it ends), later calls
  // reject. Closing may block for the kernel's release work (an RCU grace period after nf_tables deletions).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    held_->close();
    return info.Env().Undefined();
  }

  std::shared_ptr<Held> held_;
};

// Where a call goes: a held socket, or (held == nullptr) a socket opened in `netns` for this call only.
template <typename Socket>
struct Target {
  std::string netns;
  std::shared_ptr<HeldSocket<Socket>> held;

  // Runs `io` on the held socket, or `per_call` when the target is a namespace. The baton's reference is
  // dropped here, on the pool thread, so that a socket the collector let go of closes here, not on the JS thread.
  void run(const std::function<void(Socket&)>& io, const std::function<void()>& per_call) {
    std::shared_ptr<HeldSocket<Socket>> h = std::move(held);
    if (h) {
      h->use(io);
    } else {
      per_call();
    }
  }
};

// A call's first argument: a namespace (string, null or undefined) or a handle made by `cls`; `opener` names
// the function that makes such handles, for the error message.
template <typename Socket>
Target<Socket> target_arg(const Napi::Value& v, HandleClass cls, const char* opener) {
  if (v.IsObject()) {
    auto* data = v.Env().GetInstanceData<AddonData>();
    Napi::Object o = v.As<Napi::Object>();
    if (data && !(data->*cls).IsEmpty() && o.InstanceOf((data->*cls).Value())) {
      if (auto* h = HeldSocketHandle<Socket>::Unwrap(o)) return Target<Socket>{h->held()->netns(), h->held()};
    }
    throw Napi::TypeError::New(
        v.Env(), std::string("target must be a network namespace (a string or null) or a socket from ") + opener + "()");
  }
  return Target<Socket>{netns_arg(v), nullptr};
}

// `<opener>(netns)`: opens a HeldSocket<Socket> in netns on a pool thread; resolves with a handle made by
// `cls`. Calls on it after close() reject with kind 'system', EBADF and `closed_message`.
template <typename Socket>
Napi::Value open_held(const Napi::CallbackInfo& info, HandleClass cls, const char* closed_message) {
  struct OpenBaton {
    std::string netns;
    std::string closed_message;
    std::shared_ptr<HeldSocket<Socket>> held;
  };
  auto b = std::make_unique<OpenBaton>();
  b->netns = netns_arg(info[0]);
  b->closed_message = closed_message;
  return PromiseWorker<OpenBaton>::Run(
      info.Env(), std::move(b),
      [](OpenBaton& b) { b.held = std::make_shared<HeldSocket<Socket>>(b.netns, b.closed_message); },
      [cls](Napi::Env env, OpenBaton& b) -> Napi::Value {
        auto* data = env.GetInstanceData<AddonData>();
        return data->Construct(data->*cls, b.held);
      });
}

}  // namespace portwall
