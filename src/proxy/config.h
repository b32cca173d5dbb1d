// proxy.yaml: the listeners of one sidecar, and where its certificates come
// from. Unknown keys are refused.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "pki/spiffe_id.h"
#include "proxy/authz.h"

namespace meshid::proxy {

// PeerAuthentication's modes.
enum class Mode { kStrict, kPermissive, kDisable };
const char* modeName(Mode mode);
Result<Mode> parseMode(const std::string& name);

struct InboundListener {
  std::string name;
  std::string listen;   // HOST:PORT the mesh connects to
  std::string forward;  // HOST:PORT of the local application (plaintext)
  Mode mode = Mode::kStrict;
  std::vector<std::string> allow;  // AllowList entries; empty: any verified mesh peer
  AllowList allow_list;
  // ALPN protocols this listener may select from the peer's offer, in our
  // order of preference (e.g. h2, http/1.1). Empty: no ALPN.
  std::vector<std::string> alpn;
};

struct OutboundListener {
  std::string name;
  std::string listen;       // HOST:PORT the local application connects to (plaintext)
  std::string destination;  // HOST:PORT of the remote mesh workload (mTLS)
  // DestinationRule subjectAltNames: the server's SPIFFE ID must be one of
  // these (AllowList entries). Empty: any ID the trust anchors verify.
  std::vector<std::string> expected_ids;
  AllowList expected;
  // DestinationRule caCertificates: trust only this file's roots for this
  // destination instead of the mesh bundle (certificate pinning).
  std::filesystem::path ca_file;
  std::string sni;
  std::vector<std::string> alpn;  // offered to the destination; empty: none
  bool resumption = true;         // offer the last session to this destination again
};

// "busy_poll: auto"'s budget: at 32 keep-alive connections 96 % of 5 us
// polls caught an event; fixed 10 and 20 us caught more but cost more CPU per
// request (docs/PERFORMANCE.md). It grows up to the maximum only while the
// worker's median wait is 10 us or more (PollBudget): one busy connection,
// whose answers come 35-45 us after each request on this VM.
inline constexpr std::chrono::microseconds kAutoBusyPoll{5};
inline constexpr std::chrono::microseconds kAutoBusyPollMax{50};

struct ProxyConfig {
  explicit ProxyConfig(pki::TrustDomain td) : trust_domain(std::move(td)) {}

  pki::TrustDomain trust_domain;
  // Either watched files or the agent's SDS socket.
  struct Certificates {
    std::filesystem::path cert_file;  // leaf + intermediates
    std::filesystem::path key_file;
    std::filesystem::path bundle_file;  // mesh roots
    std::chrono::milliseconds poll_interval{1000};
  } certificates;
  struct Sds {
    std::filesystem::path socket;         // empty: certificates come from files
    std::string certificate = "default";  // Istio's resource names
    std::string validation = "ROOTCA";
    // How long startup waits for the first certificate; the proxy does not
    // listen without one.
    std::chrono::milliseconds initial_fetch_timeout{60'000};
  } sds;

  std::vector<InboundListener> inbound;
  std::vector<OutboundListener> outbound;
  std::string admin_listen = "127.0.0.1:15090";
  size_t workers = 0;  // 0: one per core
  // How a worker with nothing to do waits (docs/PROXY.md, "Busy polling"):
  // it keeps asking epoll for up to `busy_poll` before it sleeps, either
  // only while that catches events ("auto", the default: adaptive) or
  // always ("50us": latency bought with CPU); 0: it sleeps at once.
  std::chrono::microseconds busy_poll = kAutoBusyPoll;
  bool busy_poll_adaptive = true;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds idle_timeout{300'000};
  size_t max_connections = 10'000;  // per listener
  std::string ciphers;              // TLS 1.2 cipher list; empty: OpenSSL's secure default
  // How often the session-ticket encryption key changes; tickets under the
  // previous key still resume (and get a fresh ticket) for one more period.
  std::chrono::milliseconds ticket_key_rotation{3'600'000};
  // TLS 1.3 sessions the server keeps for resumption (SessionCache), each
  // ≈ 11.5 kB with the client's decoded certificates; 0: TLS 1.3 uses
  // stateless tickets as TLS 1.2 does.
  size_t session_cache_size = 1024;
  // Busy TLS connections per worker that keep OpenSSL's record buffers
  // between records instead of freeing and allocating them for each
  // (TlsBufferKeeper): each holds up to ≈ 84 kB until it has been quiet
  // for a second; 0: every connection frees them at once.
  size_t kept_buffers = 256;
  // TLS 1.3 records after the handshake go through the proxy's own record
  // layer (tls13_stream.h) instead of OpenSSL's ("meshid", the default), or
  // stay with OpenSSL ("openssl"). The handshake is OpenSSL's either way.
  bool own_record_layer = true;
};

// The parts of a new config that a running proxy takes without a restart:
// inbound modes and allow lists, outbound expected IDs. Anything else that
// differs is an error naming it (a reload is all or nothing).
Result<void> checkReloadable(const ProxyConfig& running, const ProxyConfig& next);

Result<ProxyConfig> parseProxyConfig(std::string_view yaml, const std::filesystem::path& base_dir);
Result<ProxyConfig> loadProxyConfig(const std::filesystem::path& path);

}  // namespace meshid::proxy
