#include "binding/nft_events_binding.h"

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "binding/async.h"
#include "binding/held_socket.h"
#include "core/nft_events.h"

namespace portwall {
namespace {

// What one wakeup of the reader read, on its way to the JS thread.
struct EventBatch {
  std::vector<nft::Transaction> txs;
  uint32_t lost = 0;
  std::unique_ptr<Error> error;  // the reader stopped on this
  std::shared_ptr<const std::atomic<bool>> closed;
};

Napi::Object transaction_value(Napi::Env env, const nft::Transaction& tx) {
  Napi::Array events = Napi::Array::New(env, tx.events.size());
  for (uint32_t i = 0; i < tx.events.size(); ++i) {
    const nft::Event& e = tx.events[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("msg", Napi::Number::New(env, e.msg));
    o.Set("family", Napi::Number::New(env, e.family));
    o.Set("table", Napi::String::New(env, e.table));
    o.Set("name", Napi::String::New(env, e.name));
    o.Set("count", Napi::Number::New(env, e.count));
    events.Set(i, o);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("genid", Napi::Number::New(env, tx.genid));
  o.Set("pid", Napi::Number::New(env, tx.pid));
  o.Set("procName", Napi::String::New(env, tx.proc_name));
  o.Set("portid", Napi::Number::New(env, tx.portid));
  o.Set("self", Napi::Boolean::New(env, tx.self));
  o.Set("events", events);
  return o;
}

// Runs on the JS thread, or with a null env when the thread-safe function is finalised with batches still
// queued (then the batch is only freed). Nothing is delivered once close() was called, so close() is final at
// once. Nothing may escape into the event loop: an exception there would end the process.
void Deliver(Napi::Env env, Napi::Function callback, std::nullptr_t*, EventBatch* raw) {
  std::unique_ptr<EventBatch> batch(raw);
  if (env == nullptr || callback.IsEmpty() || batch->closed->load()) return;
  Napi::Value err = env.Null();
  Napi::Array txs;
  try {
    if (batch->error) err = to_js_error(env, *batch->error).Value();
    txs = Napi::Array::New(env, batch->txs.size());
    for (uint32_t i = 0; i < batch->txs.size(); ++i) txs.Set(i, transaction_value(env, batch->txs[i]));
  } catch (const std::exception& e) {
    try {
      err = Napi::Error::New(env, std::string("decoding nftables events: ") + e.what()).Value();
      txs = Napi::Array::New(env);
    } catch (const std::exception&) {
      return;
    }
  }
  try {
    callback.Call({err, txs, Napi::Number::New(env, batch->lost)});
  } catch (const std::exception&) {
    // The TypeScript side reports a listener's exceptions itself; anything still escaping is dropped here.
  }
}

using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, EventBatch, Deliver>;

// Batches waiting for the JS thread at most; a listener that falls that far behind loses batches, counted in
// the next one's `lost`, instead of the process growing without bound.
constexpr size_t kQueuedBatches = 1024;

// A reader thread delivering batches through a thread-safe function. Shared by the JS handle and close()
// calls in flight; destroyed on the JS thread, which then stops the thread if close() never did.
class Subscription {
 public:
  Subscription(std::unique_ptr<nft::EventReader> reader, Tsfn tsfn)
      : reader_(std::move(reader)), tsfn_(std::move(tsfn)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Subscription() {
    MarkClosed();
    StopReader();
    Finish();
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // JS thread: no callback runs from now on (batches already queued are dropped).
  void MarkClosed() { closed_->store(true); }

  // Any thread; idempotent: wakes the reader, joins it and closes the socket (which may wait for the kernel's
  // release work after an nf_tables commit that deleted something, hence off the JS thread in close()).
  void StopReader() {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    if (!reader_) return;
    reader_->stop();
    thread_.join();
    reader_.reset();
  }

  // JS thread, after StopReader (no thread may call the function any more); idempotent.
  void Finish() {
    if (finished_) return;
    finished_ = true;
    tsfn_.Abort();
  }

  // JS thread: whether the subscription keeps the event loop alive.
  void Ref(Napi::Env env, bool ref) {
    if (finished_) return;
    if (ref) tsfn_.Ref(env);
    else tsfn_.Unref(env);
  }

 private:
  void Loop() {
    for (bool more = true; more;) {
      auto batch = std::make_unique<EventBatch>();
      batch->closed = closed_;
      try {
        more = reader_->wait(batch->txs, batch->lost);
      } catch (const Error& e) {
        batch->error = std::make_unique<Error>(e);
        more = false;
      } catch (const std::exception& e) {
        batch->error = std::make_unique<Error>(ErrorKind::kSystem, 0, std::string("nftables events: ") + e.what());
        more = false;
      }
      batch->lost += dropped_;
      dropped_ = 0;
      if (closed_->load()) continue;
      if (batch->txs.empty() && batch->lost == 0 && !batch->error) continue;
      if (tsfn_.NonBlockingCall(batch.get()) == napi_ok) batch.release();
      else ++dropped_;
    }
  }

  std::unique_ptr<nft::EventReader> reader_;
  Tsfn tsfn_;
  std::thread thread_;
  std::shared_ptr<std::atomic<bool>> closed_ = std::make_shared<std::atomic<bool>>(false);
  std::mutex stop_mutex_;
  bool finished_ = false;  // JS thread only
  uint32_t dropped_ = 0;   // reader thread only: batches the full queue refused
};

// The JS handle of a subscription: close(), ref(), unref(). Made only by nftSubscribe, which passes the
// subscription as an External. When the collector takes it without close(), its destructor stops the thread.
class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NftEventSubscription",
                       {InstanceMethod<&Handle::Close>("close"), InstanceMethod<&Handle::RefLoop>("ref"),
                        InstanceMethod<&Handle::UnrefLoop>("unref")});
  }

  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info), env_(info.Env()) {
    if (info.Length() < 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "subscriptions come from nftSubscribe()");
    }
    sub_ = *info[0].As<Napi::External<std::shared_ptr<Subscription>>>().Data();
    // The environment going away (process or worker exit) stops the thread before the environment is gone.
    napi_add_env_cleanup_hook(env_, AtExit, this);
  }
  ~Handle() override { napi_remove_env_cleanup_hook(env_, AtExit, this); }

 private:
  static void AtExit(void* self) {
    Subscription& sub = *static_cast<Handle*>(self)->sub_;
    sub.MarkClosed();
    sub.StopReader();
    sub.Finish();
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

  napi_env env_;
  std::shared_ptr<Subscription> sub_;
};

struct SubscribeBaton {
  std::string netns;
  size_t rcvbuf = nft::EventReader::kReceiveBuffer;
  Napi::FunctionReference callback;
  std::unique_ptr<nft::EventReader> reader;
};

// nftSubscribe(netns, callback(error, transactions, lost), receiveBuffer?): resolves with a Handle once the
// socket is open and joined to the group, so every commit after that is seen.
Napi::Value Subscribe(const Napi::CallbackInfo& info) {
  auto b = std::make_unique<SubscribeBaton>();
  b->netns = netns_arg(info[0]);
  if (!info[1].IsFunction()) throw Napi::TypeError::New(info.Env(), "callback must be a function");
  b->callback = Napi::Persistent(info[1].As<Napi::Function>());
  if (!info[2].IsUndefined() && !info[2].IsNull()) {
    double d = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
    if (!(d >= 1 && d <= 1073741824.0) || d != static_cast<double>(static_cast<size_t>(d))) {
      throw Napi::TypeError::New(info.Env(), "receiveBuffer must be an integer from 1 to 2^30 (bytes)");
    }
    b->rcvbuf = static_cast<size_t>(d);
  }
  return PromiseWorker<SubscribeBaton>::Run(
      info.Env(), std::move(b),
      [](SubscribeBaton& b) { b.reader = std::make_unique<nft::EventReader>(b.netns, b.rcvbuf); },
      [](Napi::Env env, SubscribeBaton& b) -> Napi::Value {
        auto tsfn = Tsfn::New(env, b.callback.Value(), "portwall.nftEvents", kQueuedBatches, 1);
        std::shared_ptr<Subscription> sub;
        try {
          sub = std::make_shared<Subscription>(std::move(b.reader), tsfn);
        } catch (...) {
          tsfn.Abort();  // else it would keep the event loop alive for good
          throw;
        }
        auto* data = env.GetInstanceData<AddonData>();
        return data->nft_events.New({Napi::External<std::shared_ptr<Subscription>>::New(env, &sub)});
      });
}

}  // namespace

void RegisterNftEvents(Napi::Env env, Napi::Object exports) {
  env.GetInstanceData<AddonData>()->nft_events = Napi::Persistent(Handle::Define(env));
  exports.Set("nftSubscribe", Napi::Function::New(env, Subscribe, "nftSubscribe"));
}

}  // namespace portwall
