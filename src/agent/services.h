// The agent's gRPC services, built behind factories so only their .cc files
// include gRPC and the generated code.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "agent/attestation.h"
#include "agent/config.h"
#include "agent/metrics.h"
#include "agent/secret_cache.h"

namespace grpc {
class Service;
}

namespace meshid::agent {

struct ServingContext {
  const AgentConfig& config;
  SecretCache& cache;
  PeerRegistry& peers;
  AgentMetrics& metrics;
};

// envoy.service.secret.v3.SecretDiscoveryService (PROTOCOLS.md §2).
std::unique_ptr<grpc::Service> makeSdsService(ServingContext& ctx);

// SpiffeWorkloadAPI (PROTOCOLS.md §3); the JWT-SVID calls answer UNIMPLEMENTED.
std::unique_ptr<grpc::Service> makeWorkloadApiService(ServingContext& ctx);

// meshid.v1.AgentAdmin on the 0600 admin socket; status() gives the JSON.
std::unique_ptr<grpc::Service> makeAdminService(std::function<std::string()> status);

}  // namespace meshid::agent
