#include "proxy/socket_fd.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace meshid::proxy {

void SocketFd::reset() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

Result<SocketFd> listenTcp(const sockaddr* addr, socklen_t len, int backlog) {
  SocketFd fd(::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid())
    return Error::unavailable(fmt::format("socket: {}", std::strerror(errno)));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd.get(), addr, len) != 0 || ::listen(fd.get(), backlog) != 0)
    return Error::unavailable(std::strerror(errno));
  return fd;
}

int localPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return 0;
  if (ss.ss_family == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

Result<SocketFd> startConnect(const sockaddr* addr, socklen_t len, bool& in_progress) {
  SocketFd fd(::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid())
    return Error::unavailable(fmt::format("socket: {}", std::strerror(errno)));
  int r;
  do {
    r = ::connect(fd.get(), addr, len);
  } while (r != 0 && errno == EINTR);
  in_progress = r != 0 && errno == EINPROGRESS;
  if (r != 0 && !in_progress)
    return Error::unavailable(std::strerror(errno));
  return fd;
}

int connectError(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    return errno;
  return err;
}

void setNoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

ssize_t recvNow(int fd, void* buf, size_t len, int flags) {
  long n;
  do {
    n = ::syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr);
  } while (n < 0 && errno == EINTR);
  return static_cast<ssize_t>(n);
}

ssize_t sendNow(int fd, const void* buf, size_t len) {
  long n;
  do {
    n = ::syscall(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, nullptr, 0);
  } while (n < 0 && errno == EINTR);
  return static_cast<ssize_t>(n);
}

}  // namespace meshid::proxy
