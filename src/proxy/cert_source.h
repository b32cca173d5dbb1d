// The proxy's certificates from files (the agent's file sink, or any tool
// that writes PEM): polled, rebuilt into a TlsSnapshot off the data path
// when their content changes, and published atomically. A broken or
// mismatched new set is refused (logged, counted) and the old snapshot keeps
// serving.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "proxy/config.h"
#include "proxy/tls_snapshot.h"

namespace meshid::proxy {

class CertSource {
 public:
  using Listener = std::function<void(bool ok)>;  // after each reload attempt

  CertSource(const ProxyConfig& config, const Clock& clock,
             NewSessionCallback new_session = nullptr)
      : config_(config), clock_(clock), new_session_(new_session) {}
  ~CertSource();

  // Loads the first snapshot (an error if the files are not a valid set).
  Result<void> loadNow();
  void start(Listener on_reload);
  void stop();

  // Lock-free for readers in practice; taken once per new connection.
  std::shared_ptr<const TlsSnapshot> current() const { return current_.load(); }

 private:
  Result<bool> reloadIfChanged();
  void loop();

  const ProxyConfig& config_;
  const Clock& clock_;
  const NewSessionCallback new_session_;
  std::atomic<std::shared_ptr<const TlsSnapshot>> current_;
  std::string fingerprint_;  // only the poll thread touches it after loadNow
  uint64_t generation_ = 0;
  Listener on_reload_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace meshid::proxy
