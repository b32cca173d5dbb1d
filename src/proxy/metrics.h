// Every metric the proxy exposes, declared here. Data-path counters are
// resolved per listener at startup, so a connection only touches atomics.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace meshid::proxy {

// Why a connection failed or was refused: bounded labels (Envoy's ssl.*).
enum class Failure {
  kConnectionError,  // ssl.connection_error: the handshake failed otherwise
  kNoCertificate,    // ssl.no_certificate
  kFailVerifyError,  // ssl.fail_verify_error: the chain did not verify
  kFailVerifySan,    // ssl.fail_verify_san: not an X.509-SVID, or not the expected ID
  kAuthzDenied,      // verified, but not on the allow list
  kHandshakeTimeout,
  kUpstreamConnect,   // the forward or destination address refused
  kOverloaded,        // max_connections reached
  kPlaintextRefused,  // plaintext on a STRICT listener
};
constexpr int kFailureCount = 9;
const char* failureLabel(Failure f);

struct ListenerStats {
  prometheus::Counter* connections;
  prometheus::Gauge* active;
  prometheus::Counter* handshakes;
  prometheus::Counter* resumed;  // of those, resumed sessions
  // TLS 1.3 connections whose records moved to the proxy's record layer
  prometheus::Counter* record_layer;
  prometheus::Counter* plaintext;
  prometheus::Counter* bytes_in;   // from the downstream peer
  prometheus::Counter* bytes_out;  // to the downstream peer
  prometheus::Histogram* handshake_seconds;
  prometheus::Counter* failures[kFailureCount];
};

class ProxyMetrics {
 public:
  ProxyMetrics();
  ~ProxyMetrics();
  ListenerStats& listener(const std::string& name, std::string_view direction);
  void certificateLoaded(SystemTime not_after);
  // The current snapshot's TLS 1.3 session cache, set when scraped.
  void sessionCache(size_t sessions, uint64_t evicted);
  // The workers' busy-poll totals and their longest current budget
  // (ReadinessLoop::pollStats), set when scraped.
  void busyPolls(uint64_t caught, uint64_t missed, std::chrono::nanoseconds budget);
  // The workers' kept TLS buffers now and given back so far
  // (TlsBufferKeeper), set when scraped.
  void tlsBuffers(size_t kept, uint64_t released);
  void reload(bool ok);
  void configReload(bool ok);
  std::string serialize() const;
  std::string statsJson() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

void count(ListenerStats& s, Failure f);

}  // namespace meshid::proxy
