#include "proxy/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

namespace meshid::proxy {

const char* failureLabel(Failure f) {
  switch (f) {
    case Failure::kConnectionError:
      return "connection_error";
    case Failure::kNoCertificate:
      return "no_certificate";
    case Failure::kFailVerifyError:
      return "fail_verify_error";
    case Failure::kFailVerifySan:
      return "fail_verify_san";
    case Failure::kAuthzDenied:
      return "authz_denied";
    case Failure::kHandshakeTimeout:
      return "handshake_timeout";
    case Failure::kUpstreamConnect:
      return "upstream_connect";
    case Failure::kOverloaded:
      return "overloaded";
    case Failure::kPlaintextRefused:
      return "plaintext_refused";
  }
  return "connection_error";
}

void count(ListenerStats& s, Failure f) {
  s.failures[static_cast<int>(f)]->Increment();
}

struct ProxyMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& connections =
      prometheus::BuildCounter()
          .Name("meshid_proxy_connections_total")
          .Help("Connections accepted, by listener")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& active = prometheus::BuildGauge()
                                                      .Name("meshid_proxy_active_connections")
                                                      .Help("Open connections, by listener")
                                                      .Register(*registry);
  prometheus::Family<prometheus::Counter>& handshakes =
      prometheus::BuildCounter()
          .Name("meshid_proxy_handshakes_total")
          .Help("Completed and authorized mTLS handshakes, by listener")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& resumed =
      prometheus::BuildCounter()
          .Name("meshid_proxy_resumed_handshakes_total")
          .Help("Handshakes that resumed a TLS session, by listener")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& record_layer =
      prometheus::BuildCounter()
          .Name("meshid_proxy_record_layer_connections_total")
          .Help(
              "TLS 1.3 connections whose records moved from OpenSSL to the proxy's own record "
              "layer after the handshake (tls.record_layer), by listener")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& plaintext =
      prometheus::BuildCounter()
          .Name("meshid_proxy_plaintext_connections_total")
          .Help("Plaintext connections taken (PERMISSIVE or DISABLE), by listener")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& bytes =
      prometheus::BuildCounter()
          .Name("meshid_proxy_bytes_total")
          .Help("Bytes relayed, by listener and direction (in: from the downstream peer)")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& handshake_seconds =
      prometheus::BuildHistogram()
          .Name("meshid_proxy_handshake_duration_seconds")
          .Help("TLS handshake time, by listener")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& failures =
      prometheus::BuildCounter()
          .Name("meshid_proxy_connection_errors_total")
          .Help("Connections that failed or were refused, by listener and reason")
          .Register(*registry);
  prometheus::Gauge& expiry = prometheus::BuildGauge()
                                  .Name("meshid_proxy_certificate_expiration_timestamp_seconds")
                                  .Help("Unix time the proxy's current certificate expires")
                                  .Register(*registry)
                                  .Add({});
  prometheus::Gauge& cached_sessions =
      prometheus::BuildGauge()
          .Name("meshid_proxy_tls_session_cache_sessions")
          .Help("TLS 1.3 sessions kept for resumption (current certificate)")
          .Register(*registry)
          .Add({});
  prometheus::Gauge& evicted_sessions =
      prometheus::BuildGauge()
          .Name("meshid_proxy_tls_session_cache_evicted")
          .Help(
              "Sessions dropped to make room since the current certificate was loaded "
              "(raise tls.session_cache_size when this grows)")
          .Register(*registry)
          .Add({});
  prometheus::Family<prometheus::Counter>& reloads =
      prometheus::BuildCounter()
          .Name("meshid_proxy_certificate_reloads_total")
          .Help("Certificate updates (files or SDS), by result (ok, refused)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& config_reloads =
      prometheus::BuildCounter()
          .Name("meshid_proxy_config_reloads_total")
          .Help("Configuration reloads (SIGHUP), by result (ok, refused)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& busy_polls =
      prometheus::BuildCounter()
          .Name("meshid_proxy_busy_polls_total")
          .Help(
              "Waits in which a worker polled before sleeping (busy_poll), by result: caught "
              "(an event came within the budget) or missed")
          .Register(*registry);
  prometheus::Counter& polls_caught = busy_polls.Add({{"result", "caught"}});
  prometheus::Counter& polls_missed = busy_polls.Add({{"result", "missed"}});
  prometheus::Gauge& poll_budget =
      prometheus::BuildGauge()
          .Name("meshid_proxy_busy_poll_budget_seconds")
          .Help(
              "How long the next busy poll would last, the longest over the workers (busy_poll: "
              "auto sizes it to the waits seen; 0: the workers sleep at once)")
          .Register(*registry)
          .Add({});
  prometheus::Gauge& tls_buffers_kept =
      prometheus::BuildGauge()
          .Name("meshid_proxy_tls_buffers_kept")
          .Help(
              "Busy TLS connections keeping OpenSSL's record buffers between records, over the "
              "workers (at most tls.kept_buffers per worker)")
          .Register(*registry)
          .Add({});
  prometheus::Counter& tls_buffers_released =
      prometheus::BuildCounter()
          .Name("meshid_proxy_tls_buffers_released_total")
          .Help("Kept TLS buffers given back after their connection went quiet")
          .Register(*registry)
          .Add({});
  std::mutex mu;
  std::map<std::string, std::unique_ptr<ListenerStats>> listeners;  // guarded by mu
  uint64_t caught_reported = 0;                                     // guarded by mu
  uint64_t missed_reported = 0;                                     // guarded by mu
  uint64_t released_reported = 0;                                   // guarded by mu
};

ProxyMetrics::ProxyMetrics() : impl_(std::make_unique<Impl>()) {
  impl_->reloads.Add({{"result", "ok"}});
  impl_->reloads.Add({{"result", "refused"}});
  impl_->config_reloads.Add({{"result", "ok"}});
  impl_->config_reloads.Add({{"result", "refused"}});
}
ProxyMetrics::~ProxyMetrics() = default;

ListenerStats& ProxyMetrics::listener(const std::string& name, std::string_view direction) {
  std::lock_guard lock(impl_->mu);
  auto& slot = impl_->listeners[name];
  if (!slot) {
    slot = std::make_unique<ListenerStats>();
    std::map<std::string, std::string> l{{"listener", name}, {"direction", std::string(direction)}};
    slot->connections = &impl_->connections.Add(l);
    slot->active = &impl_->active.Add(l);
    slot->handshakes = &impl_->handshakes.Add(l);
    slot->resumed = &impl_->resumed.Add(l);
    slot->record_layer = &impl_->record_layer.Add(l);
    slot->plaintext = &impl_->plaintext.Add(l);
    auto in = l, out = l;
    in["flow"] = "in";
    out["flow"] = "out";
    slot->bytes_in = &impl_->bytes.Add(in);
    slot->bytes_out = &impl_->bytes.Add(out);
    slot->handshake_seconds = &impl_->handshake_seconds.Add(
        l, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                                   0.1, 0.25, 1});
    for (int i = 0; i < kFailureCount; ++i) {
      auto fl = l;
      fl["reason"] = failureLabel(static_cast<Failure>(i));
      slot->failures[i] = &impl_->failures.Add(fl);
    }
  }
  return *slot;
}

void ProxyMetrics::certificateLoaded(SystemTime not_after) {
  impl_->expiry.Set(static_cast<double>(toUnixSeconds(not_after)));
}

void ProxyMetrics::sessionCache(size_t sessions, uint64_t evicted) {
  impl_->cached_sessions.Set(static_cast<double>(sessions));
  impl_->evicted_sessions.Set(static_cast<double>(evicted));
}

// The workers' totals only grow; each scrape adds what came since the last.
// Two scrapes may read the workers before either locks, so the later one
// here can bring the smaller total: that adds nothing. Under the metrics' lock.
namespace {
void addSince(prometheus::Counter& c, uint64_t total, uint64_t& reported) {
  if (total > reported)
    c.Increment(static_cast<double>(total - reported));
  reported = std::max(reported, total);
}
}  // namespace

void ProxyMetrics::busyPolls(uint64_t caught, uint64_t missed, std::chrono::nanoseconds budget) {
  std::lock_guard lock(impl_->mu);
  impl_->poll_budget.Set(std::chrono::duration<double>(budget).count());
  addSince(impl_->polls_caught, caught, impl_->caught_reported);
  addSince(impl_->polls_missed, missed, impl_->missed_reported);
}

void ProxyMetrics::tlsBuffers(size_t kept, uint64_t released) {
  std::lock_guard lock(impl_->mu);
  impl_->tls_buffers_kept.Set(static_cast<double>(kept));
  addSince(impl_->tls_buffers_released, released, impl_->released_reported);
}

void ProxyMetrics::reload(bool ok) {
  impl_->reloads.Add({{"result", ok ? "ok" : "refused"}}).Increment();
}

void ProxyMetrics::configReload(bool ok) {
  impl_->config_reloads.Add({{"result", ok ? "ok" : "refused"}}).Increment();
}

std::string ProxyMetrics::serialize() const {
  return prometheus::TextSerializer().Serialize(impl_->registry->Collect());
}

std::string ProxyMetrics::statsJson() const {
  nlohmann::json out = nlohmann::json::object();
  std::lock_guard lock(impl_->mu);
  for (const auto& [name, s] : impl_->listeners) {
    nlohmann::json j{{"connections", s->connections->Value()},
                     {"active_connections", s->active->Value()},
                     {"handshakes", s->handshakes->Value()},
                     {"resumed_handshakes", s->resumed->Value()},
                     {"record_layer_connections", s->record_layer->Value()},
                     {"plaintext_connections", s->plaintext->Value()},
                     {"bytes_in", s->bytes_in->Value()},
                     {"bytes_out", s->bytes_out->Value()}};
    nlohmann::json errors = nlohmann::json::object();
    for (int i = 0; i < kFailureCount; ++i)
      errors[failureLabel(static_cast<Failure>(i))] = s->failures[i]->Value();
    j["errors"] = errors;
    out[name] = j;
  }
  return nlohmann::json{{"listeners", out},
                        {"certificate_expiration", impl_->expiry.Value()},
                        {"tls_session_cache",
                         {{"sessions", impl_->cached_sessions.Value()},
                          {"evicted", impl_->evicted_sessions.Value()}}},
                        {"busy_polls",
                         {{"caught", impl_->polls_caught.Value()},
                          {"missed", impl_->polls_missed.Value()},
                          {"budget_us", std::round(impl_->poll_budget.Value() * 1e9) / 1e3}}},
                        {"tls_buffers",
                         {{"kept", impl_->tls_buffers_kept.Value()},
                          {"released", impl_->tls_buffers_released.Value()}}}}
      .dump(2);
}

}  // namespace meshid::proxy
