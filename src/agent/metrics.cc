#include "agent/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <map>
#include <mutex>

namespace meshid::agent {

struct AgentMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();

  prometheus::Family<prometheus::Histogram>& ca_latency =
      prometheus::BuildHistogram()
          .Name("meshid_agent_ca_request_duration_seconds")
          .Help("Time of signing requests to the CA, by result (ok, denied, unavailable, invalid)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& expiry =
      prometheus::BuildGauge()
          .Name("meshid_agent_certificate_expiration_timestamp_seconds")
          .Help("Unix time the certificate held for an identity expires")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& istio_expiry =
      prometheus::BuildGauge()
          .Name("istio_agent_cert_expiry_seconds")
          .Help("Seconds until the certificate held for a resource expires (Istio's agent name)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& rotations =
      prometheus::BuildCounter()
          .Name("meshid_agent_rotations_total")
          .Help("Certificates received for an identity (first issue and every renewal)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& failures =
      prometheus::BuildCounter()
          .Name("meshid_agent_rotation_failures_total")
          .Help("Failed attempts to get a certificate for an identity")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& expirations =
      prometheus::BuildCounter()
          .Name("meshid_agent_certificate_expirations_total")
          .Help("Held certificates that expired before a renewal arrived (no longer served)")
          .Register(*registry);
  prometheus::Gauge& bundle_version = prometheus::BuildGauge()
                                          .Name("meshid_agent_trust_bundle_version")
                                          .Help("Version of the trust bundle the agent holds")
                                          .Register(*registry)
                                          .Add({});
  prometheus::Family<prometheus::Gauge>& streams =
      prometheus::BuildGauge()
          .Name("meshid_agent_open_streams")
          .Help("Open SDS and Workload API streams, by API")
          .Register(*registry);
  prometheus::Counter& nacks = prometheus::BuildCounter()
                                   .Name("meshid_agent_sds_nacks_total")
                                   .Help("SDS responses a client rejected")
                                   .Register(*registry)
                                   .Add({});
  prometheus::Family<prometheus::Counter>& denials =
      prometheus::BuildCounter()
          .Name("meshid_agent_attestation_denials_total")
          .Help("Callers on the sockets that no registration entry matches, by API")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& sink_writes =
      prometheus::BuildCounter()
          .Name("meshid_agent_file_sink_writes_total")
          .Help("File sink writes, by result")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& hooks =
      prometheus::BuildCounter()
          .Name("meshid_agent_reload_hooks_total")
          .Help("Reload commands and signals after a file sink write, by result")
          .Register(*registry);

  std::mutex mu;
  std::map<std::string, SystemTime> not_after;  // guarded by mu
};

AgentMetrics::AgentMetrics() : impl_(std::make_unique<Impl>()) {
  for (const char* api : {"sds", "workload_api"}) {
    impl_->streams.Add({{"api", api}});
    impl_->denials.Add({{"api", api}});
  }
  for (const char* r : {"ok", "failed"}) {
    impl_->sink_writes.Add({{"result", r}});
    impl_->hooks.Add({{"result", r}});
  }
}

AgentMetrics::~AgentMetrics() = default;

void AgentMetrics::caRequest(std::string_view result, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  impl_->ca_latency.Add({{"result", std::string(result)}}, kBuckets).Observe(seconds);
}

void AgentMetrics::rotated(const std::string& id, SystemTime not_after) {
  impl_->rotations.Add({{"spiffe_id", id}}).Increment();
  impl_->failures.Add({{"spiffe_id", id}});
  impl_->expiry.Add({{"spiffe_id", id}}).Set(static_cast<double>(toUnixSeconds(not_after)));
  std::lock_guard lock(impl_->mu);
  impl_->not_after[id] = not_after;
}

void AgentMetrics::rotationFailed(const std::string& id) {
  impl_->failures.Add({{"spiffe_id", id}}).Increment();
}

void AgentMetrics::expired(const std::string& id) {
  impl_->expirations.Add({{"spiffe_id", id}}).Increment();
}

void AgentMetrics::setBundleVersion(uint64_t version) {
  impl_->bundle_version.Set(static_cast<double>(version));
}

void AgentMetrics::streamOpened(std::string_view api) {
  impl_->streams.Add({{"api", std::string(api)}}).Increment();
}
void AgentMetrics::streamClosed(std::string_view api) {
  impl_->streams.Add({{"api", std::string(api)}}).Decrement();
}
void AgentMetrics::sdsNack() {
  impl_->nacks.Increment();
}
void AgentMetrics::denied(std::string_view api) {
  impl_->denials.Add({{"api", std::string(api)}}).Increment();
}
void AgentMetrics::sinkWrite(bool ok) {
  impl_->sink_writes.Add({{"result", ok ? "ok" : "failed"}}).Increment();
}
void AgentMetrics::hookRun(bool ok) {
  impl_->hooks.Add({{"result", ok ? "ok" : "failed"}}).Increment();
}

std::string AgentMetrics::serialize(SystemTime now) const {
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& [id, t] : impl_->not_after) {
      double left = std::chrono::duration<double>(t - now).count();
      impl_->istio_expiry.Add({{"resource_name", id}}).Set(left);
    }
  }
  return prometheus::TextSerializer().Serialize(impl_->registry->Collect());
}

}  // namespace meshid::agent
