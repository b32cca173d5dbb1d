#include "agent/uds_listener.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace meshid::agent {
namespace fs = std::filesystem;

Result<std::unique_ptr<UdsListener>> UdsListener::bind(const fs::path& path, unsigned mode) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path)
    return Error::invalidArgument(fmt::format("socket path {} is too long", path.string()));
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);

  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error::failedPrecondition(
          fmt::format("{} exists and is not a socket; refusing to replace it", path.string()));
    }
    ::unlink(path.c_str());
  }
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return Error::internal(fmt::format("socket: {}", std::strerror(errno)));
  // Bind under a umask that leaves nothing wider than asked, then chmod to it.
  mode_t old = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0 || ::chmod(path.c_str(), mode) != 0 || ::listen(fd, 512) != 0) {
    std::string why = std::strerror(errno);
    ::close(fd);
    return Error::unavailable(fmt::format("cannot listen on {}: {}", path.string(), why));
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    ::close(fd);
    return Error::internal("pipe2 failed");
  }
  return std::unique_ptr<UdsListener>(new UdsListener(path, fd, pipefd[0], pipefd[1]));
}

UdsListener::~UdsListener() {
  stop();
  ::close(fd_);
  ::close(wake_read_);
  ::close(wake_write_);
  std::error_code ec;
  fs::remove(path_, ec);
}

void UdsListener::start(grpc::Server* server, PeerRegistry& registry) {
  thread_ = std::thread([this, server, &registry] { loop(server, &registry); });
}

void UdsListener::stop() {
  if (!thread_.joinable())
    return;
  char b = 1;
  (void)!::write(wake_write_, &b, 1);
  thread_.join();
}

void UdsListener::loop(grpc::Server* server, PeerRegistry* registry) {
  pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      spdlog::error("poll on {} failed: {}", path_.string(), std::strerror(errno));
      return;
    }
    if (fds[1].revents)
      return;
    if (!(fds[0].revents & POLLIN))
      continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        spdlog::warn("accept on {} failed: {}", path_.string(), std::strerror(errno));
        if (errno == EMFILE || errno == ENFILE)
          ::poll(nullptr, 0, 100);  // let connections close instead of spinning
      }
      continue;
    }
    auto peer = peerOf(c);
    if (!peer.ok()) {
      spdlog::warn("dropping a connection on {}: {}", path_.string(), peer.error().message);
      ::close(c);
      continue;
    }
    registry->remember(c, std::move(*peer));
    accepted_.fetch_add(1);
    grpc::AddInsecureChannelFromFd(server, c);
  }
}

}  // namespace meshid::agent
