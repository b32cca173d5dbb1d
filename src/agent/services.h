// The agent's gRPC services, built behind factories so only their .cc files
// include gRPC and the generated code.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

// Who is calling on a socket and which entries it gets; PERMISSION_DENIED
// (counted under `api` and logged) when the caller is unknown or no entry
// matches it. Shared by the SDS and Workload API streams.
struct AttestedCaller {
  PeerInfo peer;
  std::vector<const Entry*> entries;  // the first is the default identity
};
Result<AttestedCaller> attestCaller(ServingContext& ctx, std::string_view grpc_peer,
                                    std::string_view api);

// envoy.service.secret.v3.SecretDiscoveryService (PROTOCOLS.md §2).
std::unique_ptr<grpc::Service> makeSdsService(ServingContext& ctx);

// SpiffeWorkloadAPI (PROTOCOLS.md §3); the JWT-SVID calls answer UNIMPLEMENTED.
std::unique_ptr<grpc::Service> makeWorkloadApiService(ServingContext& ctx);

// meshid.v1.AgentAdmin on the 0600 admin socket; status() gives the JSON.
std::unique_ptr<grpc::Service> makeAdminService(std::function<std::string()> status);

}  // namespace meshid::agent
