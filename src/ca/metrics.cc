#include "ca/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <map>
#include <mutex>

namespace meshid::ca {
namespace {

// Istio's error types for citadel_server_csr_sign_err_count{error}.
const char* citadelError(DenialReason reason) {
  switch (reason) {
    case DenialReason::kBadCsr:
    case DenialReason::kKeyType:
    case DenialReason::kForeignIdentity:
      return "CSRError";
    case DenialReason::kBadLifetime:
      return "TTLError";
    case DenialReason::kSignerUnavailable:
      return "CANotReady";
    default:
      return "CertGenError";
  }
}

// citadel_server_* families: untyped, with HELP, values from atomics.
class CitadelCollectable final : public prometheus::Collectable {
 public:
  std::atomic<double> csr_count{0}, auth_failures{0}, success{0}, root_expiry{0}, chain_expiry{0};

  void signError(const std::string& error) {
    std::lock_guard lock(mu_);
    sign_errors_[error] += 1;
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    auto single = [&](const char* name, const char* help, double v) {
      prometheus::MetricFamily f{name, help, prometheus::MetricType::Untyped, {}};
      prometheus::ClientMetric m;
      m.untyped.value = v;
      f.metric.push_back(m);
      out.push_back(std::move(f));
    };
    single("citadel_server_csr_count", "The number of CSRs received by the CA (Istio name).",
           csr_count.load());
    single("citadel_server_authentication_failure_count",
           "The number of authentication failures (Istio name).", auth_failures.load());
    single("citadel_server_success_cert_issuance_count",
           "The number of certificates issued (Istio name).", success.load());
    single("citadel_server_root_cert_expiry_timestamp",
           "Unix time the root certificate expires (Istio name).", root_expiry.load());
    single("citadel_server_cert_chain_expiry_timestamp",
           "Unix time the signing certificate chain expires (Istio name).", chain_expiry.load());
    prometheus::MetricFamily errors{"citadel_server_csr_sign_err_count",
                                    "The number of CSR signing errors by type (Istio name).",
                                    prometheus::MetricType::Untyped,
                                    {}};
    std::lock_guard lock(mu_);
    for (const auto& [label, v] : sign_errors_) {
      prometheus::ClientMetric m;
      m.label.push_back({"error", label});
      m.untyped.value = v;
      errors.metric.push_back(m);
    }
    if (!errors.metric.empty())
      out.push_back(std::move(errors));
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, double> sign_errors_;  // guarded by mu_
};

// Families read from a source when scraped (`Render` turns what it gives
// into them); without a source there are none.
template <class T>
class ScrapedCollectable final : public prometheus::Collectable {
 public:
  using Render = std::vector<prometheus::MetricFamily> (*)(const T&);
  explicit ScrapedCollectable(Render render) : render_(render) {}

  void setSource(std::function<T()> source) {
    std::lock_guard lock(mu_);
    source_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::function<T()> source;
    {
      std::lock_guard lock(mu_);
      source = source_;
    }
    return source ? render_(source()) : std::vector<prometheus::MetricFamily>{};
  }

 private:
  const Render render_;
  mutable std::mutex mu_;
  std::function<T()> source_;  // guarded by mu_
};

// A family of one unlabelled counter or gauge.
prometheus::MetricFamily single(const char* name, const char* help, prometheus::MetricType type,
                                uint64_t v) {
  prometheus::MetricFamily f{name, help, type, {}};
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = static_cast<double>(v);
  } else {
    m.gauge.value = static_cast<double>(v);
  }
  f.metric.push_back(m);
  return f;
}

// meshid_ca_grpc_*: the transport's own counts.
std::vector<prometheus::MetricFamily> transportFamilies(const rpc::GrpcServerStats& c) {
  using T = prometheus::MetricType;
  return {single("meshid_ca_grpc_connections", "Open client connections to the gRPC port", T::Gauge,
                 c.connections_open),
          single("meshid_ca_grpc_connections_accepted_total",
                 "Connections accepted on the gRPC port", T::Counter, c.connections_accepted),
          single("meshid_ca_grpc_handshake_failures_total",
                 "TLS handshakes on the gRPC port that failed or timed out", T::Counter,
                 c.handshakes_failed),
          single("meshid_ca_grpc_protocol_errors_total", "HTTP/2 errors that ended a connection",
                 T::Counter, c.protocol_errors),
          single("meshid_ca_grpc_calls_refused_total",
                 "Calls answered by the transport itself: unknown method, foreign content type, "
                 "malformed or oversized message",
                 T::Counter, c.calls_refused)};
}

// meshid_ca_store_*_bytes: the database's files (the WAL once grew by every
// row under steady load; docs/CA.md "State").
std::vector<prometheus::MetricFamily> storeFamilies(const store::FileSizes& sizes) {
  using T = prometheus::MetricType;
  return {single("meshid_ca_store_database_bytes", "Size of the CA's SQLite database file",
                 T::Gauge, sizes.database),
          single("meshid_ca_store_wal_bytes",
                 "Size of the database's write-ahead log file (bounded: it starts over once "
                 "copied)",
                 T::Gauge, sizes.wal)};
}

}  // namespace

struct CaMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<CitadelCollectable> citadel = std::make_shared<CitadelCollectable>();
  std::shared_ptr<ScrapedCollectable<rpc::GrpcServerStats>> transport =
      std::make_shared<ScrapedCollectable<rpc::GrpcServerStats>>(transportFamilies);
  std::shared_ptr<ScrapedCollectable<store::FileSizes>> store =
      std::make_shared<ScrapedCollectable<store::FileSizes>>(storeFamilies);

  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter()
          .Name("meshid_ca_requests_total")
          .Help("Signing requests by API and result (ok, denied)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& denials =
      prometheus::BuildCounter()
          .Name("meshid_ca_denials_total")
          .Help("Refused signing requests by API and reason")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& latency =
      prometheus::BuildHistogram()
          .Name("meshid_ca_issuance_duration_seconds")
          .Help("Time from request to answer for signing requests, by API")
          .Register(*registry);
  prometheus::Histogram& batch_size =
      prometheus::BuildHistogram()
          .Name("meshid_ca_signing_batch_size")
          .Help("Signing requests judged, signed and recorded together (one transaction)")
          .Register(*registry)
          .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32});
  prometheus::Family<prometheus::Counter>& issued = prometheus::BuildCounter()
                                                        .Name("meshid_ca_certificates_issued_total")
                                                        .Help("Certificates issued, by signer")
                                                        .Register(*registry);
  prometheus::Family<prometheus::Counter>& reloads =
      prometheus::BuildCounter()
          .Name("meshid_ca_signer_reloads_total")
          .Help("Reloads of plugged-in CA files, by result (ok, failed)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& pruned =
      prometheus::BuildCounter()
          .Name("meshid_ca_records_pruned_total")
          .Help("Records deleted by retention (store.retention), by table")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& prune_runs =
      prometheus::BuildCounter()
          .Name("meshid_ca_record_prune_runs_total")
          .Help("Retention passes over the CA's records, by result (ok, failed)")
          .Register(*registry);
  prometheus::Gauge& root_expiry =
      prometheus::BuildGauge()
          .Name("meshid_ca_root_expiry_timestamp_seconds")
          .Help("Unix time the earliest-expiring root of the bundle expires")
          .Register(*registry)
          .Add({});
  prometheus::Gauge& intermediate_expiry =
      prometheus::BuildGauge()
          .Name("meshid_ca_intermediate_expiry_timestamp_seconds")
          .Help("Unix time the signing (intermediate) certificate expires")
          .Register(*registry)
          .Add({});
  prometheus::Gauge& bundle_version = prometheus::BuildGauge()
                                          .Name("meshid_ca_trust_bundle_version")
                                          .Help("Version of the trust bundle being served")
                                          .Register(*registry)
                                          .Add({});
  prometheus::Gauge& watchers = prometheus::BuildGauge()
                                    .Name("meshid_ca_trust_bundle_watchers")
                                    .Help("Open WatchTrustBundle streams")
                                    .Register(*registry)
                                    .Add({});
  prometheus::Gauge& inflight = prometheus::BuildGauge()
                                    .Name("meshid_ca_signings_in_flight")
                                    .Help("Signing requests being processed now")
                                    .Register(*registry)
                                    .Add({});
  prometheus::Gauge& ready = prometheus::BuildGauge()
                                 .Name("meshid_ca_ready")
                                 .Help("1 when the CA has a working signer")
                                 .Register(*registry)
                                 .Add({});

  // The per-request series, looked up once: a Family::Add per request hashes
  // the labels under the family's lock.
  struct PerApi {
    prometheus::Counter* ok;
    prometheus::Counter* denied;
    prometheus::Histogram* latency;
  };
  PerApi per_api[2];
  PerApi& of(Api api) { return per_api[api == Api::kIstio ? 0 : 1]; }
};

CaMetrics::CaMetrics() : impl_(std::make_unique<Impl>()) {
  // Pre-create the bounded label sets so series exist from the start (rates
  // and alerts see zero, not absence).
  static const prometheus::Histogram::BucketBoundaries kBuckets{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
  for (Api api : {Api::kIstio, Api::kMeshid}) {
    Impl::PerApi& m = impl_->of(api);
    m.ok = &impl_->requests.Add({{"api", apiName(api)}, {"result", "ok"}});
    m.denied = &impl_->requests.Add({{"api", apiName(api)}, {"result", "denied"}});
    m.latency = &impl_->latency.Add({{"api", apiName(api)}}, kBuckets);
  }
  impl_->reloads.Add({{"result", "ok"}});
  impl_->reloads.Add({{"result", "failed"}});
}

CaMetrics::~CaMetrics() = default;

void CaMetrics::csrReceived(Api) {
  impl_->citadel->csr_count = impl_->citadel->csr_count + 1;
}

void CaMetrics::requestFinished(Api api, bool ok, double seconds) {
  Impl::PerApi& m = impl_->of(api);
  (ok ? m.ok : m.denied)->Increment();
  m.latency->Observe(seconds);
}

void CaMetrics::batchSigned(size_t calls) {
  impl_->batch_size.Observe(static_cast<double>(calls));
}

void CaMetrics::denied(Api api, DenialReason reason) {
  impl_->denials.Add({{"api", apiName(api)}, {"reason", denialLabel(reason)}}).Increment();
  if (reason == DenialReason::kNoCredential || reason == DenialReason::kBadCredential) {
    impl_->citadel->auth_failures = impl_->citadel->auth_failures + 1;
  } else if (reason != DenialReason::kOverloaded) {
    impl_->citadel->signError(citadelError(reason));
  }
}

void CaMetrics::issued(const std::string& signer) {
  impl_->issued.Add({{"signer", signer}}).Increment();
  impl_->citadel->success = impl_->citadel->success + 1;
}

void CaMetrics::signingStarted() {
  impl_->inflight.Increment();
}
void CaMetrics::signingFinished() {
  impl_->inflight.Decrement();
}

void CaMetrics::signerReload(bool ok) {
  impl_->reloads.Add({{"result", ok ? "ok" : "failed"}}).Increment();
}

void CaMetrics::recordsPruned(uint64_t issuances, uint64_t join_tokens) {
  impl_->pruned.Add({{"table", "issuances"}}).Increment(static_cast<double>(issuances));
  impl_->pruned.Add({{"table", "join_tokens"}}).Increment(static_cast<double>(join_tokens));
  impl_->prune_runs.Add({{"result", "ok"}}).Increment();
}
void CaMetrics::recordPruneFailed() {
  impl_->prune_runs.Add({{"result", "failed"}}).Increment();
}

void CaMetrics::setSigningExpiry(SystemTime root_not_after, SystemTime chain_not_after) {
  double root = static_cast<double>(toUnixSeconds(root_not_after));
  double chain = static_cast<double>(toUnixSeconds(chain_not_after));
  impl_->root_expiry.Set(root);
  impl_->intermediate_expiry.Set(chain);
  impl_->citadel->root_expiry = root;
  impl_->citadel->chain_expiry = chain;
}

void CaMetrics::setBundleVersion(uint64_t version) {
  impl_->bundle_version.Set(static_cast<double>(version));
}
void CaMetrics::setBundleWatchers(size_t watchers) {
  impl_->watchers.Set(static_cast<double>(watchers));
}
void CaMetrics::setReady(bool ready) {
  impl_->ready.Set(ready ? 1 : 0);
}
void CaMetrics::setTransportSource(std::function<rpc::GrpcServerStats()> source) {
  impl_->transport->setSource(std::move(source));
}
void CaMetrics::setStoreSource(std::function<store::FileSizes()> source) {
  impl_->store->setSource(std::move(source));
}

std::string CaMetrics::serialize() const {
  std::vector<prometheus::MetricFamily> families = impl_->registry->Collect();
  for (auto& f : impl_->citadel->Collect())
    families.push_back(std::move(f));
  for (auto& f : impl_->transport->Collect())
    families.push_back(std::move(f));
  for (auto& f : impl_->store->Collect())
    families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace meshid::ca
