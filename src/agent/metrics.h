// Every metric the agent exposes, in one place. Per identity: certificate
// expiry, rotations, failures; CA request latency; bundle version; open SDS
// and Workload API streams; file sink writes and hooks; Istio's agent name
// istio_agent_cert_expiry_seconds{resource_name} where it exists.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"

namespace meshid::agent {

class AgentMetrics {
 public:
  AgentMetrics();
  ~AgentMetrics();
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;

  // result: ok, denied (the CA refused), unavailable (no CA answered), invalid
  // (the answer failed our checks).
  void caRequest(std::string_view result, double seconds);
  void rotated(const std::string& spiffe_id, SystemTime not_after);
  void rotationFailed(const std::string& spiffe_id);
  void expired(const std::string& spiffe_id);  // held certificate expired, not served
  void setBundleVersion(uint64_t version);
  void streamOpened(std::string_view api);  // "sds", "workload_api"
  void streamClosed(std::string_view api);
  void sdsNack();
  void denied(std::string_view api);  // a caller no entry matches
  void sinkWrite(bool ok);
  void hookRun(bool ok);

  // Prometheus text; gauges of time left are computed at `now`.
  std::string serialize(SystemTime now) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshid::agent
