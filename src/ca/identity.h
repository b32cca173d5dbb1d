// Who is calling and how they proved it, independent of the transport.
#pragma once

#include <optional>
#include <string>

#include "pki/spiffe_id.h"

namespace meshid::ca {

// What the transport saw. gRPC fills it from metadata and the TLS session.
struct CallerCredentials {
  std::optional<std::string> bearer_token;  // "authorization: Bearer <token>"
  // The verified client certificate's leaf (PEM), when the caller presented
  // one and it chained to the trust bundle at handshake time.
  std::optional<std::string> peer_certificate_pem;
  std::string peer;  // address, for logs only
};

struct Identity {
  pki::SpiffeId spiffe_id;
  std::string method;  // "jwt", "mtls", "join_token": a bounded metric label
  std::string detail;  // e.g. the token's key id; never a secret
};

enum class Api { kIstio, kMeshid };
inline const char* apiName(Api api) {
  return api == Api::kIstio ? "istio" : "meshid";
}

}  // namespace meshid::ca
