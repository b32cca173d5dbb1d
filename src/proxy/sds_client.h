// The proxy's SDS client: certificates from the agent's SDS socket, as Envoy
// gets them in Istio. One StreamSecrets stream asks for the certificate and
// the validation context by name; each response is checked and applied, then
// ACKed (version_info = its version) or NACKed (the last accepted version and
// an error_detail); a broken stream is opened again with backoff, and a new
// stream always gets the current state at once.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "proxy/cert_source.h"

namespace envoy::service::discovery::v3 {
class DiscoveryRequest;
class DiscoveryResponse;
}  // namespace envoy::service::discovery::v3

namespace meshid::proxy {

// What one response carried, by the names we asked for. A response may carry
// one of the two (only the bundle changed); what it lacks stays as it was.
struct SdsMaterial {
  std::optional<std::string> chain_pem;
  std::optional<std::string> key_pem;
  std::optional<std::string> bundle_pem;
  SdsMaterial() = default;
  SdsMaterial(const SdsMaterial&) = default;
  SdsMaterial& operator=(const SdsMaterial&) = default;
  ~SdsMaterial();  // wipes the key
  // Takes what `update` carried.
  void merge(const SdsMaterial& update);
  bool complete() const { return chain_pem && key_pem && bundle_pem; }
};

// Checks one DiscoveryResponse: the Secret type, only the names we asked
// for, each at most once, inline PEM (no files, no environment variables).
// The error is what the NACK says.
Result<SdsMaterial> readSdsResponse(const envoy::service::discovery::v3::DiscoveryResponse& r,
                                    const std::string& certificate_name,
                                    const std::string& validation_name);

// The checks between a response and its ACK or NACK, as the stream makes
// them: readSdsResponse, then what it carried merged into `held` and, once
// the set is complete, offered to `store`. Ok: `held` is the merged set, and
// true if a new snapshot was published. An error is what the NACK says, and
// `held` and the store are as they were (a refused set is never merged into
// later updates).
Result<bool> applySdsResponse(const envoy::service::discovery::v3::DiscoveryResponse& r,
                              const ProxyConfig& config, SdsMaterial& held, SnapshotStore& store);

// The first request of a stream, and the ACK/NACK after a response; each
// names both resources.
envoy::service::discovery::v3::DiscoveryRequest sdsSubscribe(const ProxyConfig& config);
envoy::service::discovery::v3::DiscoveryRequest sdsAck(
    const ProxyConfig& config, const envoy::service::discovery::v3::DiscoveryResponse& r);
envoy::service::discovery::v3::DiscoveryRequest sdsNack(
    const ProxyConfig& config, const envoy::service::discovery::v3::DiscoveryResponse& r,
    const std::string& accepted_version, const std::string& why);

// Files or SDS, as proxy.yaml says: the factory `meshid proxy` uses.
Result<std::unique_ptr<CertSource>> makeCertSource(const ProxyConfig& config, SnapshotStore& store);

}  // namespace meshid::proxy
