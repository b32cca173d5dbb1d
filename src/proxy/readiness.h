// Socket readiness kept by the proxy itself, as nginx keeps it, and the
// worker's event loop that gathers it.
//
// Why readiness of our own: asio 1.22's `async_wait` is a non-speculative
// reactor operation, and its epoll reactor issues `EPOLL_CTL_MOD` for every
// such wait to re-arm the edge. The pipe waits on each side once per request,
// so a keep-alive request cost two `epoll_ctl` beyond the four reads and
// writes it needs (strace). A build with the re-arm removed used ≈ 11 % less
// CPU per request (docs/PERFORMANCE.md), but lost wake-ups: asio neither
// registers `EPOLLRDHUP` nor tells a wait what woke it, so a short read cannot
// tell "empty" from "empty, and the FIN is already here".
//
// Each worker has an epoll set of its own (ReadinessLoop). A socket joins it
// once, edge triggered, with EPOLLIN | EPOLLOUT | EPOLLRDHUP. Its Readiness
// remembers what the edges said until a read or write proves otherwise: a
// short read clears "readable" unless the peer's FIN was seen (sticky, like
// nginx's `pending_eof`), an EAGAIN write clears "writable". A wait on a ready
// side completes at once; otherwise it is stored and completed by the next
// edge.
//
// Why the loop is ours too: when asio's reactor watched this epoll set as one
// descriptor, every wake-up cost a second epoll_wait and an `EPOLL_CTL_MOD`
// (asio re-arming that descriptor), and the kernel woke the worker through
// two epoll sets (perf stat: 0.74 epoll_wait and 0.37 epoll_ctl per
// keep-alive request). Now the worker blocks in one epoll_wait on this set;
// the io_context only runs posted handlers (coroutines resumed, waits ended
// at once), from io_context::poll() between waits, and timers are the loop's
// own (LoopTimer). So nothing on a worker's io_context may use asio's
// reactor: no asio sockets, timers or descriptors there (they would never
// wake the worker).
//
// One worker thread touches a loop and its sockets: no locks. Only stop() is
// called from other threads.
#pragma once

#include <sys/epoll.h>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/detail/thread_context.hpp>
#include <asio/detail/thread_info_base.hpp>
#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "proxy/poll_backoff.h"

namespace meshid::proxy {

class ReadinessLoop;

namespace detail {
// A stored completion handler: a socket wait's, or an event's.
//
// Its memory comes from asio's per-thread recycler, as asio's own handlers'
// does: a keep-alive request stores and ends a wait on each side, and malloc
// with free for them was ≈ 0.5 % of the proxy's CPU (perf, 32 connections).
// Off a worker's loop (no WorkerThreadContext, readiness.cc) it is plain new
// and delete.
struct Waiter {
  virtual ~Waiter() = default;
  virtual void complete(asio::error_code ec) = 0;  // posts the handler
  // Calls the handler here, on the worker, after `self` (this) was freed:
  // the handler's next wait then gets this memory back from the recycler.
  virtual void runNow(std::unique_ptr<Waiter> self) = 0;

  static void* operator new(std::size_t size) {
    return asio::detail::thread_info_base::allocate(
        asio::detail::thread_context::top_of_thread_call_stack(), size);
  }
  static void operator delete(void* p, std::size_t size) {
    asio::detail::thread_info_base::deallocate(
        asio::detail::thread_context::top_of_thread_call_stack(), p, size);
  }
};
template <class Handler>
struct WaiterFor final : Waiter {
  WaiterFor(Handler h, asio::any_io_executor fallback)
      : handler(std::move(h)), executor(asio::get_associated_executor(handler, fallback)) {}
  void complete(asio::error_code ec) override {
    asio::post(executor, [h = std::move(handler), ec]() mutable { std::move(h)(ec); });
  }
  void runNow(std::unique_ptr<Waiter> self) override {
    Handler h = std::move(handler);
    self.reset();  // `this` is gone from here on
    std::move(h)(asio::error_code());
  }
  Handler handler;
  asio::associated_executor_t<Handler, asio::any_io_executor> executor;
};
}  // namespace detail

class Readiness {
 public:
  Readiness() = default;
  ~Readiness();
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  // Joins `loop`'s epoll set. False when epoll refuses the fd (errno says why).
  bool watch(ReadinessLoop& loop, int fd);

  bool readReady() const { return read_ready_ || peer_closed_ || failed_; }
  bool writeReady() const { return write_ready_ || failed_; }
  // A read got less than it asked for (or EAGAIN): nothing more until the next edge.
  void readDrained() { read_ready_ = false; }
  // A write got EAGAIN: no room until the next edge.
  void writeBlocked() { write_ready_ = false; }
  // Completes both waits with operation_aborted; every later wait fails at once.
  void fail();

  // Completion signature void(asio::error_code); success once the side is
  // ready. Only after watch() succeeded, and one wait per side at a time.
  // Ended by an edge, the handler runs inside the loop's dispatch of that
  // edge; ended at once (already ready, or failed), it is posted.
  template <class Token>
  auto waitRead(Token&& token) {
    return wait(reader_, &Readiness::readReady, std::forward<Token>(token));
  }
  template <class Token>
  auto waitWrite(Token&& token) {
    return wait(writer_, &Readiness::writeReady, std::forward<Token>(token));
  }

 private:
  friend class ReadinessLoop;
  using Waiter = detail::Waiter;

  template <class Token>
  auto wait(std::unique_ptr<Waiter>& slot, bool (Readiness::*ready)() const, Token&& token) {
    return asio::async_initiate<Token, void(asio::error_code)>(
        [this, &slot, ready](auto handler) {
          using Handler = decltype(handler);
          auto w = std::make_unique<detail::WaiterFor<Handler>>(std::move(handler), executor());
          if (failed_ || !loop_)
            w->complete(asio::error::operation_aborted);
          else if ((this->*ready)())
            w->complete({});
          else
            slot = std::move(w);  // one wait per side at a time: the pipe's shape
        },
        token);
  }

  asio::any_io_executor executor() const;
  // Notes what an edge said; the waits it ends go to `woken`.
  void onEvents(uint32_t events, std::vector<std::unique_ptr<Waiter>>& woken);
  static void wake(std::unique_ptr<Waiter>& slot, asio::error_code ec);

  ReadinessLoop* loop_ = nullptr;
  int fd_ = -1;
  bool read_ready_ = true;  // unknown counts as ready: the first read finds out
  bool write_ready_ = true;
  bool peer_closed_ = false;  // EPOLLRDHUP/HUP/ERR seen: reads end now, never wait
  bool failed_ = false;
  std::unique_ptr<Waiter> reader_, writer_;
  Readiness* prev_ = nullptr;  // the loop's list, for shutdown
  Readiness* next_ = nullptr;
};

// A deadline on a worker's loop: the callback runs on the worker once the
// time has come, unless the timer was set again, cancelled or destroyed
// first. Touched only on its worker's thread.
class LoopTimer {
 public:
  using Clock = std::chrono::steady_clock;
  LoopTimer() = default;
  ~LoopTimer() { cancel(); }
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;

  void set(ReadinessLoop& loop, Clock::time_point when, std::function<void()> fn);
  void cancel();
  bool pending() const { return loop_ != nullptr; }

 private:
  friend class ReadinessLoop;
  ReadinessLoop* loop_ = nullptr;  // set while queued
  std::multimap<Clock::time_point, LoopTimer*>::iterator queued_;
  std::function<void()> fn_;
};

// Something a coroutine waits for on its worker that another part of the
// worker signals once: fire() ends the wait (the handler is posted), or
// makes a later wait end at once. The loop knows its events, so that
// detach() ends their waits too. Touched only on its worker's thread.
class LoopEvent {
 public:
  explicit LoopEvent(ReadinessLoop& loop);
  ~LoopEvent();
  LoopEvent(const LoopEvent&) = delete;
  LoopEvent& operator=(const LoopEvent&) = delete;

  // Completion signature void(asio::error_code): success when fired,
  // operation_aborted when the loop was detached first.
  template <class Token>
  auto wait(Token&& token) {
    return asio::async_initiate<Token, void(asio::error_code)>(
        [this](auto handler) {
          auto w = std::make_unique<detail::WaiterFor<decltype(handler)>>(std::move(handler),
                                                                          executor());
          if (fired_ || aborted_)
            w->complete(aborted_ ? asio::error::operation_aborted : asio::error_code());
          else
            waiter_ = std::move(w);
        },
        token);
  }
  void fire();

 private:
  friend class ReadinessLoop;
  asio::any_io_executor executor() const;
  void abort();

  ReadinessLoop* loop_;
  bool fired_ = false;
  bool aborted_ = false;
  std::unique_ptr<detail::Waiter> waiter_;
  LoopEvent* prev_ = nullptr;  // the loop's list, for detach()
  LoopEvent* next_ = nullptr;
};

// One worker's event loop: its epoll set, its timers, and the io_context
// whose posted handlers it runs. Create it with the worker's io_context
// before any socket joins; run() it on the worker thread. At shutdown, after
// the worker thread ended, call detach() while the io_context still exists,
// and destroy the loop after it.
class ReadinessLoop {
 public:
  explicit ReadinessLoop(asio::io_context& io);
  ~ReadinessLoop();
  ReadinessLoop(const ReadinessLoop&) = delete;
  ReadinessLoop& operator=(const ReadinessLoop&) = delete;

  bool ok() const { return epoll_fd_ >= 0 && wake_fd_ >= 0; }
  asio::any_io_executor executor() const { return io_.get_executor(); }

  // Before run(): with nothing to do, keep polling epoll for up to `d`
  // before sleeping in it (0: sleep at once). An event that comes within `d`
  // then needs no wake-up of this thread, which on this VM costs tens of
  // microseconds of latency per hop; the price is the CPU spent polling.
  // `adaptive`: poll only while polls catch events (PollBackoff), for `d` to
  // `adaptive_max`, as long as the waits the worker sees (PollBudget).
  void setBusyPoll(std::chrono::microseconds d, bool adaptive,
                   std::chrono::microseconds adaptive_max = std::chrono::microseconds(0)) {
    busy_poll_ = d;
    adaptive_ = adaptive;
    budget_ = PollBudget(d, std::max(d, adaptive_max));
    budget_ns_.store(std::chrono::nanoseconds(d).count(), std::memory_order_relaxed);
  }
  // Waits that polled before sleeping, by whether an event came within the
  // budget, and how long the next poll would last (0: the next wait sleeps
  // at once). From any thread (the admin port's scrapes).
  struct PollStats {
    uint64_t caught = 0;
    uint64_t missed = 0;
    std::chrono::nanoseconds budget{0};
  };
  PollStats pollStats() const {
    return {caught_.load(std::memory_order_relaxed), missed_.load(std::memory_order_relaxed),
            std::chrono::nanoseconds(budget_ns_.load(std::memory_order_relaxed))};
  }

  // The worker: posted handlers, edges and timers, until stop().
  void run();
  // The same for at most `d`, or until stop() (tests).
  void runFor(std::chrono::milliseconds d);
  // When the loop last woke from epoll_wait: what its handlers take for
  // "now" where a clock read per call would cost more than it tells (the
  // pipe's activity stamp, read against idle timeouts of seconds). Late by
  // at most the handlers run since.
  LoopTimer::Clock::time_point now() const { return now_; }
  // From any thread: run() returns soon after.
  void stop();

  // Fails every socket's and event's waits and drops every timer: their
  // handlers go to the io_context, which is not running now and destroys
  // them without running them.
  void detach();

 private:
  friend class Readiness;
  friend class LoopTimer;
  friend class LoopEvent;
  // One round: what the io_context has ready, then the edges (waiting at
  // most until `until`), then the timers that are due.
  void runOnce(LoopTimer::Clock::time_point until);
  void runDueTimers();
  // Polls epoll for up to the budget from `start` (not past `deadline`): the
  // events seen.
  int poll(epoll_event* events, int max, LoopTimer::Clock::time_point deadline,
           LoopTimer::Clock::time_point start);
  void add(Readiness& r);
  void remove(Readiness& r);

  std::vector<std::unique_ptr<detail::Waiter>> woken_;  // reused by every round
  LoopTimer::Clock::time_point now_ = LoopTimer::Clock::now();
  std::chrono::microseconds busy_poll_{0};
  bool adaptive_ = false;
  PollBackoff backoff_;
  PollBudget budget_{std::chrono::microseconds(0), std::chrono::microseconds(0)};
  // Written by the worker only; atomics so that scrapes may read them.
  std::atomic<uint64_t> caught_{0};
  std::atomic<uint64_t> missed_{0};
  std::atomic<int64_t> budget_ns_{0};

  asio::io_context& io_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd in the set: stop() from another thread
  std::atomic<bool> stopping_{false};
  std::multimap<LoopTimer::Clock::time_point, LoopTimer*> timers_;
  Readiness* head_ = nullptr;
  LoopEvent* events_ = nullptr;
};

}  // namespace meshid::proxy
