// A proxy worker's sockets as plain descriptors. The worker's loop watches
// them itself (readiness.h), so they are not asio sockets: those would bring
// asio's reactor onto the worker, which the loop never runs.
#pragma once

#include <sys/socket.h>

#include <cerrno>

#include "common/result.h"

namespace meshid::proxy {

// Owns one descriptor; closes it when destroyed or reset.
class SocketFd {
 public:
  SocketFd() = default;
  explicit SocketFd(int fd) : fd_(fd) {}
  ~SocketFd() { reset(); }
  SocketFd(SocketFd&& o) noexcept : fd_(o.release()) {}
  SocketFd& operator=(SocketFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  SocketFd(const SocketFd&) = delete;
  SocketFd& operator=(const SocketFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_ = -1;
};

// A non-blocking TCP listener on `addr` with SO_REUSEADDR and SO_REUSEPORT
// (each worker binds its own on the same port).
Result<SocketFd> listenTcp(const sockaddr* addr, socklen_t len, int backlog);
// The port a bound socket has (0 when it cannot tell).
int localPort(int fd);

// A non-blocking connect to `addr`, begun. `in_progress` says whether the
// outcome comes later: the first writable edge, then connectError().
Result<SocketFd> startConnect(const sockaddr* addr, socklen_t len, bool& in_progress);
// SO_ERROR: 0 when a begun connect succeeded, its errno otherwise.
int connectError(int fd);

void setNoDelay(int fd);

// A non-blocking call's "try again when the socket is ready".
inline bool wouldBlock(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

// recv(2) and send(2) on the data path, without glibc's cancellation-point
// wrapper: the proxy never cancels a thread, and the wrapper's two calls
// around every system call were 0.9 % of the keep-alive CPU (perf, 32
// connections). Same results and errno as recv and send; EINTR is retried.
ssize_t recvNow(int fd, void* buf, size_t len, int flags);
ssize_t sendNow(int fd, const void* buf, size_t len);  // MSG_NOSIGNAL

}  // namespace meshid::proxy
