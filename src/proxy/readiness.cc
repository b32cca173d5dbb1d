#include "proxy/readiness.h"

#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace meshid::proxy {
namespace {

// Makes the worker's thread one asio knows as running an io_context, for as
// long as the loop runs. asio recycles the memory of coroutine frames and
// handlers (and our Waiters) only on such a thread, and the loop resumes the
// pipes' coroutines outside io_context::poll(): without this every frame of
// a wait or a write was malloc'd and freed (perf, 32 connections: malloc and
// free ≈ 2 % of the proxy's CPU). io_context::poll() pushes a context of its
// own on top while it runs, as it would anyway.
class WorkerThreadContext : asio::detail::thread_context {
 public:
  WorkerThreadContext() : on_stack_(this, info_) {}

 private:
  asio::detail::thread_info_base info_;  // its cache is freed after it leaves the stack
  thread_call_stack::context on_stack_;
};

// epoll_wait(2) without glibc's cancellation-point wrapper, as recvNow and
// sendNow do (socket_fd.h): the proxy never cancels a thread, and the
// adaptive busy poll calls it with no timeout again and again (perf, 32
// connections: the wrapper's __pthread_disable_asynccancel alone was 0.7 %
// of the proxy's CPU). epoll_pwait with no signal mask is epoll_wait, and
// every architecture has it.
int waitForEvents(int epoll_fd, epoll_event* events, int max, int timeout_ms) {
  return static_cast<int>(
      ::syscall(SYS_epoll_pwait, epoll_fd, events, max, timeout_ms, nullptr, size_t{0}));
}

}  // namespace

Readiness::~Readiness() {
  if (!loop_)
    return;
  // Leaving the set before the fd closes: no later harvest can name us.
  epoll_ctl(loop_->epoll_fd_, EPOLL_CTL_DEL, fd_, nullptr);
  loop_->remove(*this);
  // A waiter's handler may own the frames that own this object's owner; let
  // it go after we are unlinked.
  auto r = std::move(reader_);
  auto w = std::move(writer_);
}

bool Readiness::watch(ReadinessLoop& loop, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = this;
  if (!loop.ok() || epoll_ctl(loop.epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0)
    return false;
  loop_ = &loop;
  fd_ = fd;
  loop.add(*this);
  return true;
}

asio::any_io_executor Readiness::executor() const {
  return loop_ ? loop_->executor() : asio::any_io_executor();
}

void Readiness::wake(std::unique_ptr<Waiter>& slot, asio::error_code ec) {
  if (auto w = std::move(slot))
    w->complete(ec);
}

void Readiness::fail() {
  failed_ = true;
  wake(reader_, asio::error::operation_aborted);
  wake(writer_, asio::error::operation_aborted);
}

void Readiness::onEvents(uint32_t events, std::vector<std::unique_ptr<Waiter>>& woken) {
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    peer_closed_ = true;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    read_ready_ = true;
    if (reader_)
      woken.push_back(std::move(reader_));
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    write_ready_ = true;
    if (writer_)
      woken.push_back(std::move(writer_));
  }
}

ReadinessLoop::ReadinessLoop(asio::io_context& io)
    : io_(io),
      epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (epoll_fd_ < 0 || wake_fd_ < 0)
    return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // no Readiness: the wake-up
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    ::close(wake_fd_);
    wake_fd_ = -1;
  }
}

ReadinessLoop::~ReadinessLoop() {
  for (auto& [when, t] : timers_)
    t->loop_ = nullptr;
  for (LoopEvent* e = events_; e; e = e->next_)
    e->loop_ = nullptr;
  if (wake_fd_ >= 0)
    ::close(wake_fd_);
  if (epoll_fd_ >= 0)
    ::close(epoll_fd_);
}

void ReadinessLoop::detach() {
  for (Readiness* r = head_; r; r = r->next_)
    r->fail();
  for (LoopEvent* e = events_; e; e = e->next_)
    e->abort();
  // A timer's callback may own a coroutine frame (a sleep): handed to the
  // io_context like the waits, so the frame is freed with it, never run.
  for (auto& [when, t] : timers_) {
    t->loop_ = nullptr;
    asio::post(io_, std::exchange(t->fn_, nullptr));
  }
  timers_.clear();
}

void ReadinessLoop::stop() {
  stopping_.store(true, std::memory_order_release);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

// The io_context stops when it runs out of work (the last guard going, at
// the end of an earlier runFor): restarted, and kept in work while we run.
void ReadinessLoop::run() {
  WorkerThreadContext asio_thread;
  io_.restart();
  auto work = asio::make_work_guard(io_);
  while (!stopping_.load(std::memory_order_acquire))
    runOnce(LoopTimer::Clock::time_point::max());
}

void ReadinessLoop::runFor(std::chrono::milliseconds d) {
  WorkerThreadContext asio_thread;
  io_.restart();
  auto work = asio::make_work_guard(io_);
  const auto until = LoopTimer::Clock::now() + d;
  while (!stopping_.load(std::memory_order_acquire) && LoopTimer::Clock::now() < until)
    runOnce(until);
}

// First every event is noted and the waits it ends are taken out; only then
// do they run, here and now: a wait that ends may close connections whose
// events came in this same batch, so no event is touched after one has run.
void ReadinessLoop::runOnce(LoopTimer::Clock::time_point until) {
  io_.poll();  // handlers posted since the last round (and by them)
  auto deadline = until;
  if (!timers_.empty())
    deadline = std::min(deadline, timers_.begin()->first);
  auto timeout = [&] {
    if (deadline == LoopTimer::Clock::time_point::max())
      return -1;
    auto left = deadline - LoopTimer::Clock::now();
    // Rounded up: waking before the deadline would only wait again.
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
  };
  std::array<epoll_event, 128> events;
  const int max = static_cast<int>(events.size());
  int wait_ms = timeout();
  int n = 0;
  const bool polls = busy_poll_.count() > 0 && wait_ms != 0 &&
                     (!adaptive_ || (budget_.worthPolling() && backoff_.shouldPoll()));
  // One clock read for both: where the wait starts (PollBudget) and the poll's.
  const auto wait_start =
      adaptive_ || polls ? LoopTimer::Clock::now() : LoopTimer::Clock::time_point();
  if (polls) {
    n = poll(events.data(), max, deadline, wait_start);
    if (n == 0 && wait_ms > 0)
      wait_ms = timeout();  // the poll took some of it
  }
  if (n == 0)
    n = waitForEvents(epoll_fd_, events.data(), max, wait_ms);
  now_ = LoopTimer::Clock::now();
  if (adaptive_ && n > 0) {
    budget_.noteWait(now_ - wait_start);
    budget_ns_.store(budget_.worthPolling() ? budget_.budget().count() : 0,
                     std::memory_order_relaxed);
  }
  for (int i = 0; i < n; ++i) {
    if (events[i].data.ptr == nullptr) {
      uint64_t count = 0;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof count);
      continue;
    }
    static_cast<Readiness*>(events[i].data.ptr)->onEvents(events[i].events, woken_);
  }
  for (auto& w : woken_) {  // only onEvents adds to it, and only above
    detail::Waiter* waiter = w.get();
    waiter->runNow(std::move(w));
  }
  woken_.clear();  // keeps the capacity for the next round
  if (!timers_.empty())
    runDueTimers();
}

int ReadinessLoop::poll(epoll_event* events, int max, LoopTimer::Clock::time_point deadline,
                        LoopTimer::Clock::time_point start) {
  // A fixed budget is a PollBudget whose minimum and maximum are the same.
  const auto length = std::chrono::duration_cast<LoopTimer::Clock::duration>(budget_.budget());
  const auto until = std::min(start + length, deadline);
  int n = 0;
  do {
    n = waitForEvents(epoll_fd_, events, max, 0);
  } while (n == 0 && LoopTimer::Clock::now() < until);
  auto& counter = n > 0 ? caught_ : missed_;
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (adaptive_)
    backoff_.pollEnded(n > 0);
  return n;
}

void ReadinessLoop::runDueTimers() {
  const auto now = now_;
  // Taken out before it runs: its callback may set it again, or end others.
  while (!timers_.empty() && timers_.begin()->first <= now) {
    LoopTimer* t = timers_.begin()->second;
    timers_.erase(timers_.begin());
    t->loop_ = nullptr;
    auto fn = std::move(t->fn_);
    t->fn_ = nullptr;
    fn();
  }
}

LoopEvent::LoopEvent(ReadinessLoop& loop) : loop_(&loop) {
  next_ = loop.events_;
  if (next_)
    next_->prev_ = this;
  loop.events_ = this;
}

LoopEvent::~LoopEvent() {
  auto w = std::move(waiter_);  // its handler may own our owner's frame
  if (!loop_)
    return;
  if (prev_)
    prev_->next_ = next_;
  else
    loop_->events_ = next_;
  if (next_)
    next_->prev_ = prev_;
}

asio::any_io_executor LoopEvent::executor() const {
  return loop_->executor();
}

void LoopEvent::fire() {
  fired_ = true;
  if (auto w = std::move(waiter_))
    w->complete({});
}

void LoopEvent::abort() {
  aborted_ = true;
  if (auto w = std::move(waiter_))
    w->complete(asio::error::operation_aborted);
}

void LoopTimer::set(ReadinessLoop& loop, Clock::time_point when, std::function<void()> fn) {
  cancel();
  fn_ = std::move(fn);
  queued_ = loop.timers_.emplace(when, this);
  loop_ = &loop;
}

void LoopTimer::cancel() {
  if (!loop_)
    return;
  loop_->timers_.erase(queued_);
  loop_ = nullptr;
  fn_ = nullptr;
}

void ReadinessLoop::add(Readiness& r) {
  r.prev_ = nullptr;
  r.next_ = head_;
  if (head_)
    head_->prev_ = &r;
  head_ = &r;
}

void ReadinessLoop::remove(Readiness& r) {
  if (r.prev_)
    r.prev_->next_ = r.next_;
  else
    head_ = r.next_;
  if (r.next_)
    r.next_->prev_ = r.prev_;
  r.prev_ = r.next_ = nullptr;
}

}  // namespace meshid::proxy
