// Connects to a live TLS endpoint and returns the chain it presents, for
// `meshid cert inspect --connect` (what operators do with
// `openssl s_client -showcerts`).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "pki/ossl.h"

namespace meshid::pki {

struct TlsProbeOptions {
  std::string host;
  uint16_t port = 0;
  std::string server_name;  // SNI; empty: host, unless host is an IP address
  // Optional client identity, for endpoints that demand mutual TLS.
  std::vector<X509Ptr> client_chain;  // leaf first
  EvpPkeyPtr client_key;
  std::chrono::milliseconds timeout{5000};
};

struct TlsProbeResult {
  std::vector<X509Ptr> presented;  // as the server sent it, leaf first
  std::string protocol;            // "TLSv1.3"
  std::string cipher;
};

// The server's chain is returned, not judged: callers verify it with
// verifyChain against the roots they trust. UNAVAILABLE when the endpoint
// cannot be reached or the handshake fails.
Result<TlsProbeResult> probeTls(const TlsProbeOptions& options);

}  // namespace meshid::pki
