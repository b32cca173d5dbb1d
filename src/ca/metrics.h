// Every metric the CA exposes, declared in one place. meshid's own names follow
// STYLE.md; Istio's citadel_server_* names are kept (as untyped families, since
// they break Prometheus' naming lint) so existing dashboards and alerts work.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ca/identity.h"
#include "ca/policy.h"
#include "common/clock.h"

namespace meshid::ca {

// The gRPC transport's counts (rpc::GrpcServerStats), read at each scrape.
struct TransportCounts {
  uint64_t connections_open = 0;
  uint64_t connections_accepted = 0;
  uint64_t handshakes_failed = 0;
  uint64_t protocol_errors = 0;
  uint64_t calls_refused = 0;
};

class CaMetrics {
 public:
  CaMetrics();
  ~CaMetrics();
  CaMetrics(const CaMetrics&) = delete;
  CaMetrics& operator=(const CaMetrics&) = delete;

  void csrReceived(Api api);
  void requestFinished(Api api, bool ok, double seconds);
  void batchSigned(size_t calls);
  void denied(Api api, DenialReason reason);
  void issued(const std::string& signer);
  void signingStarted();
  void signingFinished();
  void signerReload(bool ok);
  void setSigningExpiry(SystemTime root_not_after, SystemTime chain_not_after);
  void setBundleVersion(uint64_t version);
  void setBundleWatchers(size_t watchers);
  void setReady(bool ready);
  // Where the meshid_ca_grpc_* families come from; unset, they are absent.
  void setTransportSource(std::function<TransportCounts()> source);

  // Prometheus text exposition format, for /metrics.
  std::string serialize() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshid::ca
