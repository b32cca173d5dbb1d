// Who is calling on a Unix socket, and which identities that caller may have.
// The kernel says who (SO_PEERCRED: pid, uid, gid, taken at connect time);
// registration entries' selectors say what they get.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "common/result.h"

namespace meshid::agent {

struct PeerInfo {
  int32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string exe;  // /proc/<pid>/exe at accept time; empty when unreadable

  std::string describe() const;  // "pid=12 uid=1000 gid=1000 exe=/usr/bin/x"
};

// The peer of a connected AF_UNIX socket.
Result<PeerInfo> peerOf(int fd);

bool selectorsMatch(const Selectors& selectors, const PeerInfo& peer);

// Entries served to this peer, in config order: the first is its default
// identity. Entries without selectors (file sinks only) are never served.
std::vector<const Entry*> entriesFor(const std::vector<Entry>& entries, const PeerInfo& peer);

// Maps gRPC's "fd:N" peer strings to what the kernel said about fd N. An fd
// number is reused only after its connection closed, and the accept loop
// records the new peer before gRPC sees the fd, so a stale entry is always
// overwritten before it could be read.
class PeerRegistry {
 public:
  void remember(int fd, PeerInfo info);
  std::optional<PeerInfo> lookup(std::string_view grpc_peer) const;

 private:
  mutable std::mutex mu_;
  std::map<int, PeerInfo> peers_;  // guarded by mu_
};

}  // namespace meshid::agent
