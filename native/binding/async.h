// Promise-returning work off the JS thread (the "baton" pattern).
//
// The entry point validates and copies JS arguments into a plain C++ struct (the baton), then queues a
// PromiseWorker. Execute() runs on a libuv pool thread, touches only the baton and may throw
// portwall::Error; OnOK/OnError run on the JS thread and are the only places that build JS values.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>

#include "core/error.h"

namespace portwall {

// A JS Error with `kind`, `errno`, `opIndex` properties, from a core error.
Napi::Error to_js_error(Napi::Env env, const Error& e);

template <typename Baton>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void(Baton&)>;
  using Result = std::function<Napi::Value(Napi::Env, Baton&)>;
  using Done = std::function<void(Baton&)>;

  // Queues the work and returns its promise. `done`, if given, runs on the JS thread once the work is over,
  // before the promise settles either way (e.g. to let go of what the work borrowed).
  static Napi::Promise Run(Napi::Env env, std::unique_ptr<Baton> baton, Work work, Result result, Done done = {}) {
    auto* w = new PromiseWorker(env, std::move(baton), std::move(work), std::move(result), std::move(done));
    auto promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      work_(*baton_);
    } catch (const Error& e) {
      error_ = std::make_unique<Error>(e);
      SetError(e.what());
    } catch (const std::exception& e) {
      error_ = std::make_unique<Error>(ErrorKind::kSystem, 0, e.what());
      SetError(e.what());
    }
  }
  // Building the result or the error may throw (a JS exception, such as a property setter a caller put on
  // Object.prototype, or an allocation failure); the promise then rejects with that instead of staying pending.
  void OnOK() override {
    Settle([this] {
      if (done_) done_(*baton_);
      deferred_.Resolve(result_(Env(), *baton_));
    });
  }
  void OnError(const Napi::Error&) override {
    Settle([this] {
      if (done_) done_(*baton_);
      deferred_.Reject(to_js_error(Env(), *error_).Value());
    });
  }

 private:
  PromiseWorker(Napi::Env env, std::unique_ptr<Baton> baton, Work work, Result result, Done done)
      : Napi::AsyncWorker(env, "portwall"),
        deferred_(Napi::Promise::Deferred::New(env)),
        baton_(std::move(baton)),
        work_(std::move(work)),
        result_(std::move(result)),
        done_(std::move(done)) {}

  template <typename Fn>
  void Settle(Fn settle) {
    try {
      settle();
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(Env(), e.what()).Value());
    }
  }

  Napi::Promise::Deferred deferred_;
  std::unique_ptr<Baton> baton_;
  Work work_;
  Result result_;
  Done done_;
  std::unique_ptr<Error> error_;
};

// Runs `work` on the JS thread (the synchronous counterparts of PromiseWorker calls: docs/netlink.md, "Small
// batches") and returns its result; a core error is thrown as the JS Error PromiseWorker would reject with.
template <typename Fn>
auto on_js_thread(Napi::Env env, Fn work) -> decltype(work()) {
  try {
    return work();
  } catch (const Error& e) {
    throw to_js_error(env, e);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw to_js_error(env, Error(ErrorKind::kSystem, 0, e.what()));
  }
}

// The netns argument: undefined/null → "" (current namespace), else a string.
std::string netns_arg(const Napi::Value& v);

}  // namespace portwall
