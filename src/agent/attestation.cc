#include "agent/attestation.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace meshid::agent {

std::string PeerInfo::describe() const {
  return fmt::format("pid={} uid={} gid={} exe={}", pid, uid, gid, exe.empty() ? "?" : exe);
}

Result<PeerInfo> peerOf(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error::internal(fmt::format("SO_PEERCRED: {}", std::strerror(errno)));
  }
  PeerInfo info{.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
  char buf[4096];
  std::string link = fmt::format("/proc/{}/exe", cred.pid);
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  if (n > 0)
    info.exe.assign(buf, static_cast<size_t>(n));
  return info;
}

bool selectorsMatch(const Selectors& s, const PeerInfo& peer) {
  if (s.empty())
    return false;
  if (s.uid && *s.uid != peer.uid)
    return false;
  if (s.gid && *s.gid != peer.gid)
    return false;
  if (s.path && *s.path != peer.exe)
    return false;
  return true;
}

std::vector<const Entry*> entriesFor(const std::vector<Entry>& entries, const PeerInfo& peer) {
  std::vector<const Entry*> out;
  for (const auto& e : entries) {
    if (selectorsMatch(e.selectors, peer))
      out.push_back(&e);
  }
  return out;
}

void PeerRegistry::remember(int fd, PeerInfo info) {
  std::lock_guard lock(mu_);
  peers_[fd] = std::move(info);
}

std::optional<PeerInfo> PeerRegistry::lookup(std::string_view grpc_peer) const {
  if (!grpc_peer.starts_with("fd:"))
    return std::nullopt;
  int fd = -1;
  auto digits = grpc_peer.substr(3);
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), fd);
  if (ec != std::errc() || ptr != digits.data() + digits.size())
    return std::nullopt;
  std::lock_guard lock(mu_);
  auto it = peers_.find(fd);
  if (it == peers_.end())
    return std::nullopt;
  return it->second;
}

}  // namespace meshid::agent
