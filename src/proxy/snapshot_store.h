// Where certificate material from any source (watched files, the agent's
// SDS stream) becomes the proxy's current TlsSnapshot: built and checked off
// the data path, published whole. Readers take the current snapshot once
// per new connection; a refused set leaves the current one serving.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"
#include "proxy/config.h"
#include "proxy/tls_snapshot.h"

namespace meshid::proxy {

class SnapshotStore {
 public:
  SnapshotStore(const ProxyConfig& config, const Clock& clock,
                NewSessionCallback new_session = nullptr)
      : config_(config), clock_(clock), new_session_(new_session) {}

  // Publishes a snapshot of this material; false when it is the material
  // published already. An error (bad PEM, key mismatch, expired, wrong trust
  // domain) changes nothing.
  Result<bool> offer(std::string_view chain_pem, std::string_view key_pem,
                     std::string_view bundle_pem);

  // Null until the first offer succeeded.
  std::shared_ptr<const TlsSnapshot> current() const { return current_.load(); }

 private:
  const ProxyConfig& config_;
  const Clock& clock_;
  const NewSessionCallback new_session_;
  std::mutex mu_;            // serialises offers, never taken by readers
  std::string fingerprint_;  // guarded by mu_
  uint64_t generation_ = 0;  // guarded by mu_
  std::atomic<std::shared_ptr<const TlsSnapshot>> current_;
};

}  // namespace meshid::proxy
