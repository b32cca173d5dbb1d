#include "proxy/readiness.h"

#include <unistd.h>

#include <array>
#include <cerrno>

namespace meshid::proxy {

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
    : executor_(io.get_executor()), epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0)
    return;
  watcher_.emplace(io, epoll_fd_);
  arm();
}

ReadinessLoop::~ReadinessLoop() {
  stopWatching();
  if (epoll_fd_ >= 0)
    ::close(epoll_fd_);
}

void ReadinessLoop::detach() {
  for (Readiness* r = head_; r; r = r->next_)
    r->fail();
  stopWatching();
}

void ReadinessLoop::stopWatching() {
  if (watcher_) {
    watcher_->release();  // the fd stays ours; closed in the destructor
    watcher_.reset();
  }
}

void ReadinessLoop::arm() {
  watcher_->async_wait(asio::posix::stream_descriptor::wait_read, [this](asio::error_code ec) {
    if (ec || !watcher_)
      return;
    harvest();
    arm();
  });
}

// First every event is noted and the waits it ends are taken out; only then
// do they run, here and now: a wait that ends may close connections whose
// events came in this same batch, so no event is touched after one has run.
// Running them here rather than posting them spares the worker a second
// trip through its scheduler (and the zero-timeout epoll_wait that costs).
void ReadinessLoop::harvest() {
  std::array<epoll_event, 128> events;
  int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 0);
  for (int i = 0; i < n; ++i)
    static_cast<Readiness*>(events[i].data.ptr)->onEvents(events[i].events, woken_);
  for (auto& w : woken_)  // only onEvents adds to it, and only above
    w->runNow();
  woken_.clear();  // keeps the capacity for the next harvest
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
