// Every metric the CA exposes, declared in one place. meshid's own names follow
// STYLE.md; Istio's citadel_server_* names are kept (as untyped families, since
// they break Prometheus' naming lint) so existing dashboards and alerts work.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "ca/identity.h"
#include "ca/policy.h"
#include "common/clock.h"
#include "rpc/grpc_server.h"
#include "store/store.h"

namespace meshid::ca {

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
  // One retention pass: rows deleted per table, or that it failed.
  void recordsPruned(uint64_t issuances, uint64_t join_tokens);
  void recordPruneFailed();
  void setSigningExpiry(SystemTime root_not_after, SystemTime chain_not_after);
  void setBundleVersion(uint64_t version);
  void setBundleWatchers(size_t watchers);
  void setReady(bool ready);
  // Where the meshid_ca_grpc_* families come from; unset, they are absent.
  void setTransportSource(std::function<rpc::GrpcServerStats()> source);
  // Where meshid_ca_store_*_bytes come from (read when scraped); unset, absent.
  void setStoreSource(std::function<store::FileSizes()> source);

  // Prometheus text exposition format, for /metrics.
  std::string serialize() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshid::ca
