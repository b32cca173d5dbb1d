// A Unix socket whose connections are handed to a gRPC server after the
// kernel has told us who connected (TOOLCHAIN.md §2: gRPC's own UDS listener
// gives handlers no peer credentials). Our accept loop records SO_PEERCRED,
// makes the fd non-blocking (gRPC hangs otherwise) and gives it to gRPC.
#pragma once

#include <atomic>
#include <filesystem>
#include <thread>

#include "agent/attestation.h"
#include "common/result.h"

namespace grpc {
class Server;
}

namespace meshid::agent {

class UdsListener {
 public:
  // Binds path (a stale socket file is replaced; any other file is not) with
  // the given mode: 0666 for the workload sockets (attestation is the
  // control), 0600 for admin.
  static Result<std::unique_ptr<UdsListener>> bind(const std::filesystem::path& path,
                                                   unsigned mode);
  ~UdsListener();

  // Accepts until stop(); each connection is registered, then served by server.
  void start(grpc::Server* server, PeerRegistry& registry);
  void stop();
  const std::filesystem::path& path() const { return path_; }
  uint64_t accepted() const { return accepted_.load(); }

 private:
  UdsListener(std::filesystem::path path, int fd, int wake_read, int wake_write)
      : path_(std::move(path)), fd_(fd), wake_read_(wake_read), wake_write_(wake_write) {}
  void loop(grpc::Server* server, PeerRegistry* registry);

  std::filesystem::path path_;
  int fd_;
  int wake_read_;
  int wake_write_;
  std::thread thread_;
  std::atomic<uint64_t> accepted_{0};
};

}  // namespace meshid::agent
