// Event subscriptions (conntrackSubscribe, nftSubscribe): a reader thread delivering batches to a JS callback
// through a thread-safe function, behind a JS handle with close(), ref() and unref().
//
// close() is final as soon as it is called: a closed flag that every delivery checks on the JS thread (so a
// batch already queued is dropped), then the reader is woken and joined and its socket closed on a pool thread,
// and the thread-safe function is aborted, not released, so nothing queued runs. The addon keeps every live
// subscription in one registry (AddonData::subscriptions) and closes them all when its environment goes away;
// a handle the collector takes closes its subscription too.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "binding/async.h"
#include "core/error.h"

namespace portwall {

// What the handle and the registry need of a subscription, whatever it reads.
class Subscription {
 public:
  virtual ~Subscription() = default;

  // JS thread: no callback runs from now on (batches already queued are dropped).
  void MarkClosed() { closed_->store(true); }
  // Any thread; idempotent: wakes the reader, joins it and closes its socket (which may wait for the kernel's
  // release work after an nf_tables commit that deleted something, hence on a pool thread in close()).
  virtual void StopReader() = 0;
  // JS thread, after StopReader (no thread may call the function any more); idempotent.
  virtual void Finish() = 0;
  // JS thread: whether the subscription keeps the event loop alive.
  virtual void Ref(Napi::Env env, bool ref) = 0;

  // JS thread: all of close() at once (environment teardown, collection).
  void CloseNow() {
    MarkClosed();
    StopReader();
    Finish();
  }

 protected:
  std::shared_ptr<std::atomic<bool>> closed_ = std::make_shared<std::atomic<bool>>(false);
};

// The live subscriptions of one addon environment.
class SubscriptionRegistry {
 public:
  void Add(const std::shared_ptr<Subscription>& sub) {
    subs_.remove_if([](const std::weak_ptr<Subscription>& w) { return w.expired(); });
    subs_.push_back(sub);
  }
  // JS thread, when the environment goes away: stops every reader before node frees the thread-safe functions.
  void CloseAll() {
    for (auto& w : subs_) {
      if (auto s = w.lock()) s->CloseNow();
    }
    subs_.clear();
  }

 private:
  std::list<std::weak_ptr<Subscription>> subs_;  // weak: a subscription lives as long as its handle or a close()
};

// Registers `sub` with the environment's registry and wraps it in a JS handle (subscription.cc).
Napi::Value NewSubscriptionHandle(Napi::Env env, const std::shared_ptr<Subscription>& sub);
// Defines the handle class; called once per environment by addon.cc.
Napi::Function DefineSubscriptionHandle(Napi::Env env);

// One wakeup of a reader, on its way to the JS thread.
template <typename Item>
struct EventBatch {
  std::vector<Item> items;
  uint32_t lost = 0;
  std::unique_ptr<Error> error;  // the reader stopped on this
  std::shared_ptr<const std::atomic<bool>> closed;
};

// Batches waiting for the JS thread at most; a listener that falls that far behind loses batches, counted in
// the next one's `lost`, instead of the process growing without bound.
constexpr size_t kQueuedBatches = 1024;

// Runs on the JS thread, or with a null env when the thread-safe function is finalised with batches still
// queued (then the batch is only freed). Calls callback(error, items, lost) unless the subscription was closed.
// Nothing may escape into the event loop: an exception there would end the process.
template <typename Item, Napi::Value (*ToJs)(Napi::Env, const std::vector<Item>&)>
void DeliverBatch(Napi::Env env, Napi::Function callback, std::nullptr_t*, EventBatch<Item>* raw) {
  std::unique_ptr<EventBatch<Item>> batch(raw);
  if (env == nullptr || callback.IsEmpty() || batch->closed->load()) return;
  Napi::Value err = env.Null();
  Napi::Value items;
  try {
    if (batch->error) err = to_js_error(env, *batch->error).Value();
    items = ToJs(env, batch->items);
  } catch (const std::exception& e) {
    try {
      err = Napi::Error::New(env, std::string("decoding events: ") + e.what()).Value();
      items = ToJs(env, {});
    } catch (const std::exception&) {
      return;
    }
  }
  try {
    callback.Call({err, items, Napi::Number::New(env, batch->lost)});
  } catch (const std::exception&) {
    // The TypeScript side reports a listener's exceptions itself; anything still escaping is dropped here.
  }
}

// A Reader has `bool wait(std::vector<Item>& out, uint32_t& lost)` (false once stopped) and `void stop()`
// (callable from any thread), as conntrack::EventReader and nft::EventReader do.
template <typename Reader, typename Item, Napi::Value (*ToJs)(Napi::Env, const std::vector<Item>&)>
class EventSubscription : public Subscription {
 public:
  using Batch = EventBatch<Item>;
  using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Batch, DeliverBatch<Item, ToJs>>;

  EventSubscription(std::unique_ptr<Reader> reader, Tsfn tsfn, std::string what)
      : reader_(std::move(reader)), tsfn_(std::move(tsfn)), what_(std::move(what)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~EventSubscription() override {
    MarkClosed();
    StopReader();
    Finish();
  }
  EventSubscription(const EventSubscription&) = delete;
  EventSubscription& operator=(const EventSubscription&) = delete;

  void StopReader() override {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    if (!reader_) return;
    reader_->stop();
    thread_.join();
    reader_.reset();
  }

  void Finish() override {
    if (finished_) return;
    finished_ = true;
    tsfn_.Abort();
  }

  void Ref(Napi::Env env, bool ref) override {
    if (finished_) return;
    if (ref) tsfn_.Ref(env);
    else tsfn_.Unref(env);
  }

 private:
  void Loop() {
    for (bool more = true; more;) {
      auto batch = std::make_unique<Batch>();
      batch->closed = closed_;
      try {
        more = reader_->wait(batch->items, batch->lost);
      } catch (const Error& e) {
        batch->error = std::make_unique<Error>(e);
        more = false;
      } catch (const std::exception& e) {
        batch->error = std::make_unique<Error>(ErrorKind::kSystem, 0, what_ + ": " + e.what());
        more = false;
      }
      batch->lost += dropped_;
      dropped_ = 0;
      if (closed_->load()) continue;
      if (batch->items.empty() && batch->lost == 0 && !batch->error) continue;
      if (tsfn_.NonBlockingCall(batch.get()) == napi_ok) batch.release();
      else ++dropped_;
    }
  }

  std::unique_ptr<Reader> reader_;
  Tsfn tsfn_;
  const std::string what_;  // names the subscription in errors
  std::thread thread_;
  std::mutex stop_mutex_;
  bool finished_ = false;  // JS thread only
  uint32_t dropped_ = 0;   // reader thread only: batches the full queue refused
};

// Opens a reader with `open` on a pool thread and resolves with a subscription handle delivering its batches
// to `callback(error, items, lost)`. `name` names the thread-safe function and the subscription in errors.
template <typename Reader, typename Item, Napi::Value (*ToJs)(Napi::Env, const std::vector<Item>&)>
Napi::Value Subscribe(Napi::Env env, Napi::Function callback, std::function<std::unique_ptr<Reader>()> open,
                      const char* name) {
  using Sub = EventSubscription<Reader, Item, ToJs>;
  struct Baton {
    Napi::FunctionReference callback;
    std::function<std::unique_ptr<Reader>()> open;
    std::unique_ptr<Reader> reader;
    std::string name;
  };
  auto b = std::make_unique<Baton>();
  b->callback = Napi::Persistent(callback);
  b->open = std::move(open);
  b->name = name;
  return PromiseWorker<Baton>::Run(
      env, std::move(b), [](Baton& b) { b.reader = b.open(); },
      [](Napi::Env env, Baton& b) -> Napi::Value {
        auto tsfn = Sub::Tsfn::New(env, b.callback.Value(), b.name, kQueuedBatches, 1);
        std::shared_ptr<Subscription> sub;
        try {
          sub = std::make_shared<Sub>(std::move(b.reader), tsfn, b.name);
        } catch (...) {
          tsfn.Abort();  // else it would keep the event loop alive for good
          throw;
        }
        return NewSubscriptionHandle(env, sub);
      });
}

}  // namespace portwall
