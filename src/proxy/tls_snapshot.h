// The certificates a proxy handshakes with, as one immutable snapshot: built
// and verified off the data path from the files (leaf + key + bundle), then
// published whole. A connection takes the current snapshot once at accept and
// keeps it; new handshakes use a new one the moment it is published.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include <openssl/ssl.h>

#include "common/clock.h"
#include "common/result.h"
#include "pki/ossl.h"
#include "proxy/config.h"
#include "proxy/session_cache.h"
#include "proxy/ticket_keys.h"

namespace asio::ssl {
class context;
}

namespace meshid::proxy {

// Why a handshake failed, as a bounded metric label (Envoy's ssl.* stats).
enum class VerifyFailure { kNone, kNoCertificate, kVerifyError, kVerifySan };

struct TlsSnapshot {
  TlsSnapshot();
  ~TlsSnapshot();
  // Declared first so they outlive the server context that points to them.
  std::unique_ptr<TicketKeys> ticket_keys;
  std::unique_ptr<SessionCache> sessions;      // null when config.session_cache_size is 0
  std::unique_ptr<asio::ssl::context> server;  // inbound: requires a client certificate
  std::unique_ptr<asio::ssl::context> client;  // outbound: trusts the mesh bundle
  // Outbound listeners with a pinned CA file: their own client context.
  std::map<std::string, std::unique_ptr<asio::ssl::context>> pinned_clients;
  std::string leaf_chain_pem;
  std::string bundle_pem;
  std::string serial_hex;
  SystemTime not_after{};
  uint64_t generation = 0;
};

// Where an outbound context hands each new client session (OpenSSL's
// SSL_CTX_sess_set_new_cb; return 1 to keep the reference).
using NewSessionCallback = int (*)(SSL*, SSL_SESSION*);

// Builds both contexts: TLS 1.2 and 1.3 only, the leaf chain and key (which
// must match and must not be expired), the bundle as trust anchors, peer
// verification with the X.509-SVID leaf checks OpenSSL does not make (in the
// verify callback). Session resumption on; ticket keys and the TLS 1.3
// session cache belong to the snapshot (a session never outlives the
// certificates it was made with); keys rotate every config.ticket_key_rotation
// within its life and a session lives at most two such periods.
Result<std::shared_ptr<const TlsSnapshot>> buildSnapshot(const ProxyConfig& config,
                                                         std::string_view chain_pem,
                                                         std::string_view key_pem,
                                                         std::string_view bundle_pem,
                                                         const Clock& clock, uint64_t generation,
                                                         NewSessionCallback new_session = nullptr);

// ALPN: protocol names in wire format (length-prefixed), or empty.
std::string alpnWire(const std::vector<std::string>& protocols);
// What a server connection may select from the client's offer (the
// listener's list; our order wins). Without it, no ALPN is selected. The
// string must outlive the handshake.
void setAlpnChoices(SSL* ssl, const std::string* wire);
// The protocol the handshake settled on, or empty.
std::string negotiatedAlpn(const SSL* ssl);

// Reads the reason the verify callback recorded on this connection.
VerifyFailure verifyFailureOf(const SSL* ssl);
const char* verifyFailureLabel(VerifyFailure f);

}  // namespace meshid::proxy
