// `meshid proxy`: the mesh's mutual TLS beside one workload, as Envoy does in
// Istio. One worker thread per core, each blocking in its own epoll set
// (readiness.h) with an SO_REUSEPORT listening socket per listener (the
// kernel spreads connections); a connection stays on its worker as a pair of
// coroutines, and the data path takes no lock: it reads the certificate
// snapshot once at accept and counts into atomics.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "common/result.h"
#include "proxy/cert_source.h"
#include "proxy/config.h"

namespace meshid::proxy {

class Proxy {
 public:
  virtual ~Proxy() = default;
  // The port a listener is bound to (useful with port 0).
  virtual int port(const std::string& listener) const = 0;
  virtual int adminPort() const = 0;
  // Stops accepting, closes connections, joins the workers.
  virtual void shutdown() = 0;
  // Reads the config file again and takes its modes, allow lists and
  // expected IDs; refuses (and changes nothing) if the file is bad or
  // anything else differs. Open connections keep what they started with.
  virtual Result<void> reload(const std::string& config_path) = 0;
  // The admin call: one inbound listener's mode, for new connections.
  virtual Result<void> setMode(const std::string& listener, Mode mode) = 0;
};

// `sources` makes the certificate source; null: files only.
Result<std::unique_ptr<Proxy>> startProxy(const ProxyConfig& config, const Clock& clock,
                                          const CertSourceFactory& sources = nullptr);

}  // namespace meshid::proxy
