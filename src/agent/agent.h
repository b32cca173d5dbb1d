// `meshid agent`: the wiring of one agent process. Bootstrap the bundle (a
// root file, or a pinned fingerprint checked against what the CA sends), bind
// the SDS, Workload API and admin sockets, start rotation, serve admin HTTP
// (/certs, /status, /metrics, /healthz, /readyz).
#pragma once

#include <memory>
#include <string>

#include "agent/config.h"
#include "common/clock.h"
#include "common/random.h"
#include "common/result.h"

namespace meshid::agent {

class Agent {
 public:
  virtual ~Agent() = default;
  virtual int adminPort() const = 0;
  // The JSON behind /status and `meshid agent status`.
  virtual std::string statusJson() const = 0;
  // Envoy's admin /certs shape (PROTOCOLS.md §1).
  virtual std::string certsJson() const = 0;
  virtual void shutdown() = 0;
};

Result<std::unique_ptr<Agent>> startAgent(const AgentConfig& config, const Clock& clock,
                                          Random& random);

}  // namespace meshid::agent
