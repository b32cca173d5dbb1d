// Socket readiness kept by the proxy itself, as nginx keeps it, instead of
// asio's per-wait re-arm.
//
// Why: asio 1.22's `async_wait` is a non-speculative reactor operation, and
// its epoll reactor issues `EPOLL_CTL_MOD` for every such wait to re-arm the
// edge. The pipe waits on each side once per request, so a keep-alive request
// cost two `epoll_ctl` beyond the four reads and writes it needs (strace). A
// build with the re-arm removed used ≈ 11 % less CPU per request
// (docs/PERFORMANCE.md), but lost wake-ups: asio neither registers
// `EPOLLRDHUP` nor tells a wait what woke it, so a short read cannot tell
// "empty" from "empty, and the FIN is already here".
//
// Here each worker has an epoll set of its own (ReadinessLoop), watched by the
// worker's io_context as one descriptor. A socket joins it once, edge
// triggered, with EPOLLIN | EPOLLOUT | EPOLLRDHUP. Its Readiness remembers what
// the edges said until a read or write proves otherwise: a short read clears
// "readable" unless the peer's FIN was seen (sticky, like nginx's
// `pending_eof`), an EAGAIN write clears "writable". A wait on a ready side
// completes at once; otherwise it is stored and completed by the next edge.
//
// One worker thread touches a loop and its sockets: no locks.
#pragma once

#include <sys/epoll.h>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace meshid::proxy {

class ReadinessLoop;

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
  // Ended by an edge, the handler runs inside the loop's harvest; ended at
  // once (already ready, or failed), it is posted.
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

  struct Waiter {
    virtual ~Waiter() = default;
    virtual void complete(asio::error_code ec) = 0;  // posts the handler
    virtual void runNow() = 0;                       // calls it here, on the worker
  };
  template <class Handler>
  struct WaiterFor final : Waiter {
    WaiterFor(Handler h, asio::any_io_executor fallback)
        : handler(std::move(h)), executor(asio::get_associated_executor(handler, fallback)) {}
    void complete(asio::error_code ec) override {
      asio::post(executor, [h = std::move(handler), ec]() mutable { std::move(h)(ec); });
    }
    void runNow() override {
      Handler h = std::move(handler);
      std::move(h)(asio::error_code());
    }
    Handler handler;
    asio::associated_executor_t<Handler, asio::any_io_executor> executor;
  };

  template <class Token>
  auto wait(std::unique_ptr<Waiter>& slot, bool (Readiness::*ready)() const, Token&& token) {
    return asio::async_initiate<Token, void(asio::error_code)>(
        [this, &slot, ready](auto handler) {
          using Handler = decltype(handler);
          auto w = std::make_unique<WaiterFor<Handler>>(std::move(handler), executor());
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

// One worker's epoll set. Create it on the worker's io_context before any
// socket joins; at shutdown, after the worker thread ended, call detach()
// while the io_context still exists, and destroy the loop after it.
class ReadinessLoop {
 public:
  explicit ReadinessLoop(asio::io_context& io);
  ~ReadinessLoop();
  ReadinessLoop(const ReadinessLoop&) = delete;
  ReadinessLoop& operator=(const ReadinessLoop&) = delete;

  bool ok() const { return epoll_fd_ >= 0; }
  asio::any_io_executor executor() const { return executor_; }

  // Fails every socket's waits (their handlers go to the stopped io_context,
  // which destroys them) and lets go of the io_context's descriptor.
  void detach();

 private:
  friend class Readiness;
  void arm();
  void harvest();
  void stopWatching();
  void add(Readiness& r);
  void remove(Readiness& r);

  std::vector<std::unique_ptr<Readiness::Waiter>> woken_;  // reused by every harvest

  asio::any_io_executor executor_;
  int epoll_fd_ = -1;
  std::optional<asio::posix::stream_descriptor> watcher_;  // epoll_fd_, seen by asio's reactor
  Readiness* head_ = nullptr;
};

}  // namespace meshid::proxy
