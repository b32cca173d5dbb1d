#include "proxy/tls_snapshot.h"

#include <fmt/format.h>

#include <asio/ssl.hpp>

#include "common/file_util.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/key.h"
#include "proxy/tls13_handoff.h"

namespace meshid::proxy {
namespace {

using SslCtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

int failureIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

void recordFailure(SSL* ssl, VerifyFailure f) {
  if (ssl)
    SSL_set_ex_data(ssl, failureIndex(), reinterpret_cast<void*>(static_cast<intptr_t>(f)));
}

// OpenSSL checks the chain; the X.509-SVID rules for the peer's leaf
// (PROTOCOLS.md §4: not a CA, no keyCertSign/cRLSign, exactly one URI SAN
// that is a SPIFFE ID with a path) are ours to check, here.
int verifyCallback(int preverify_ok, X509_STORE_CTX* ctx) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (!preverify_ok) {
    recordFailure(ssl, VerifyFailure::kVerifyError);
    return 0;
  }
  if (X509_STORE_CTX_get_error_depth(ctx) == 0) {
    if (!pki::checkSvidLeaf(X509_STORE_CTX_get_current_cert(ctx)).ok()) {
      recordFailure(ssl, VerifyFailure::kVerifySan);
      X509_STORE_CTX_set_error(ctx, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
  }
  return 1;
}

int alpnIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Server preference: the first of our protocols the client offered. No
// overlap, or no list for this listener: no ALPN at all (as nginx does), the
// connection goes on.
int selectAlpn(SSL* ssl, const unsigned char** out, unsigned char* out_len,
               const unsigned char* offered, unsigned int offered_len, void*) {
  const auto* ours = static_cast<const std::string*>(SSL_get_ex_data(ssl, alpnIndex()));
  if (!ours || ours->empty())
    return SSL_TLSEXT_ERR_NOACK;
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, out_len, reinterpret_cast<const unsigned char*>(ours->data()),
                            static_cast<unsigned int>(ours->size()), offered,
                            offered_len) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

struct Material {
  std::vector<pki::X509Ptr> chain;  // leaf first
  pki::EvpPkeyPtr key;
  std::vector<pki::X509Ptr> roots;
};

Result<std::unique_ptr<asio::ssl::context>> makeContext(
    const Material& m, const std::vector<pki::X509Ptr>& trust, bool server,
    const std::string& ciphers, NewSessionCallback new_session, TicketKeys* ticket_keys = nullptr,
    SessionCache* sessions = nullptr, long session_timeout_s = 0) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()), &SSL_CTX_free);
  if (!ctx)
    return Error::internal("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // A read takes whatever arrived in one call instead of a header and then
  // a body (the pipe waits on the socket only after a read emptied it, and
  // never while OpenSSL holds a record, so none is missed).
  SSL_CTX_set_read_ahead(ctx.get(), 1);
  // Room for four full records, so one read takes what a bulk sender has
  // queued (a quarter of the reads). Only the pages that get data are
  // touched (bench, before the next setting: 41.3 -> 41.4 kB per idle
  // connection), and an idle connection holds no read buffer at all.
  SSL_CTX_set_default_read_buffer_len(
      ctx.get(),
      4 * (SSL3_RT_HEADER_LENGTH + SSL3_RT_MAX_PLAIN_LENGTH + SSL3_RT_MAX_ENCRYPTED_OVERHEAD));
  // An idle connection gives OpenSSL's read and write buffers back (bench:
  // 41.3 -> 31.1 kB per idle mTLS connection). This once cost a third of the
  // keep-alive request rate (28k -> 18k per CPU-second); since the pipe no
  // longer reads again after a short read it measures within the noise
  // (requests per CPU-second, three alternating runs each: 36.3k 40.6k
  // 42.3k without, 37.2k 38.5k 42.8k with; strace shows no brk or mmap).
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx.get(), ciphers.c_str()) != 1)
    return Error::invalidArgument(fmt::format("tls.ciphers \"{}\" selects no cipher", ciphers));
  if (SSL_CTX_use_certificate(ctx.get(), m.chain.front().get()) != 1)
    return Error::internal("cannot use the leaf certificate");
  for (size_t i = 1; i < m.chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx.get(), m.chain[i].get()) != 1)
      return Error::internal("cannot add an intermediate");
  }
  if (SSL_CTX_use_PrivateKey(ctx.get(), m.key.get()) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    return Error::failedPrecondition("the private key does not match the leaf certificate");
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
  for (const auto& r : trust)
    X509_STORE_add_cert(store, r.get());
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                     verifyCallback);
  if (server) {
    static const unsigned char kContext[] = "meshid-proxy";
    SSL_CTX_set_session_id_context(ctx.get(), kContext, sizeof kContext - 1);
    // TLS 1.3 resumes from the snapshot's session cache (id tickets, no
    // session decode); TLS 1.2 by stateless tickets under rotated keys.
    // Without a cache (size 0) both use stateless tickets and OpenSSL's own
    // table stays off: it expires by walking the whole table (measured: the
    // flush showed in profiles). One ticket per handshake, not OpenSSL's two.
    if (sessions)
      sessions->install(ctx.get());
    else
      SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx.get(), session_timeout_s);
    SSL_CTX_set_num_tickets(ctx.get(), 1);
    if (ticket_keys)
      ticket_keys->install(ctx.get());
    SSL_CTX_set_alpn_select_cb(ctx.get(), selectAlpn, nullptr);
  } else {
    // Sessions are kept by the proxy per destination and worker (no lock):
    // OpenSSL's internal client cache stays off, new ones come to a callback.
    SSL_CTX_set_session_cache_mode(ctx.get(),
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx.get(), new_session);
  }
  return std::make_unique<asio::ssl::context>(ctx.release());
}

}  // namespace

TlsSnapshot::TlsSnapshot() = default;
TlsSnapshot::~TlsSnapshot() = default;

VerifyFailure verifyFailureOf(const SSL* ssl) {
  return static_cast<VerifyFailure>(
      reinterpret_cast<intptr_t>(SSL_get_ex_data(ssl, failureIndex())));
}

const char* verifyFailureLabel(VerifyFailure f) {
  switch (f) {
    case VerifyFailure::kNone:
      return "connection_error";
    case VerifyFailure::kNoCertificate:
      return "no_certificate";
    case VerifyFailure::kVerifyError:
      return "fail_verify_error";
    case VerifyFailure::kVerifySan:
      return "fail_verify_san";
  }
  return "connection_error";
}

std::string alpnWire(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const auto& p : protocols) {
    wire.push_back(static_cast<char>(p.size()));  // 1..255, checked by the config
    wire += p;
  }
  return wire;
}

void setAlpnChoices(SSL* ssl, const std::string* wire) {
  SSL_set_ex_data(ssl, alpnIndex(), const_cast<std::string*>(wire));
}

std::string negotiatedAlpn(const SSL* ssl) {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

Result<std::shared_ptr<const TlsSnapshot>> buildSnapshot(const ProxyConfig& config,
                                                         std::string_view chain_pem,
                                                         std::string_view key_pem,
                                                         std::string_view bundle_pem,
                                                         const Clock& clock, uint64_t generation,
                                                         NewSessionCallback new_session) {
  const SystemTime now = clock.now();
  Material m;
  MESHID_ASSIGN_OR_RETURN(m.chain, pki::parseCertificatesPem(chain_pem));
  MESHID_ASSIGN_OR_RETURN(m.key, pki::parsePrivateKeyPem(key_pem));
  MESHID_ASSIGN_OR_RETURN(m.roots, pki::parseCertificatesPem(bundle_pem));
  if (m.chain.empty() || m.roots.empty())
    return Error::invalidArgument("no certificate in the chain or the bundle");
  MESHID_RETURN_IF_ERROR(pki::checkKeyMatchesCertificate(m.chain.front().get(), m.key.get()));
  std::vector<pki::X509Ptr> intermediates;
  for (size_t i = 1; i < m.chain.size(); ++i)
    intermediates.push_back(pki::shareX509(m.chain[i].get()));
  auto verified = pki::verifyChain(m.chain.front().get(), intermediates, m.roots,
                                   {.at = now, .svid_leaf_checks = true});
  if (!verified.ok())
    return verified.error().wrap("our own certificate");
  if (!(verified->spiffe_id && verified->spiffe_id->trustDomain() == config.trust_domain)) {
    return Error::failedPrecondition("our own certificate is not in the configured trust domain");
  }

  auto snap = std::make_shared<TlsSnapshot>();
  snap->ticket_keys = std::make_unique<TicketKeys>(clock, config.ticket_key_rotation);
  // A session lives as long as a ticket under a key can (two key periods),
  // whichever way it resumes; OpenSSL counts whole seconds.
  const auto session_lifetime = 2 * config.ticket_key_rotation;
  if (config.session_cache_size > 0) {
    snap->sessions =
        std::make_unique<SessionCache>(clock, session_lifetime, config.session_cache_size);
  }
  const long timeout_s =
      std::max<long>(1, std::chrono::ceil<std::chrono::seconds>(session_lifetime).count());
  MESHID_ASSIGN_OR_RETURN(
      snap->server, makeContext(m, m.roots, true, config.ciphers, nullptr, snap->ticket_keys.get(),
                                snap->sessions.get(), timeout_s));
  MESHID_ASSIGN_OR_RETURN(snap->client,
                          makeContext(m, m.roots, false, config.ciphers, new_session));
  for (const auto& o : config.outbound) {
    if (o.ca_file.empty())
      continue;
    MESHID_ASSIGN_OR_RETURN(std::string pem, readFile(o.ca_file, 1 << 20));
    auto pinned = pki::parseCertificatesPem(pem);
    if (!pinned.ok())
      return pinned.error().wrap(fmt::format("outbound {} ca_file", o.name));
    MESHID_ASSIGN_OR_RETURN(snap->pinned_clients[o.name],
                            makeContext(m, *pinned, false, config.ciphers, new_session));
  }
  if (config.own_record_layer) {
    Tls13Handoff::enable(snap->server->native_handle());
    Tls13Handoff::enable(snap->client->native_handle());
    for (auto& [name, ctx] : snap->pinned_clients)
      Tls13Handoff::enable(ctx->native_handle());
  }
  snap->leaf_chain_pem = std::string(chain_pem);
  snap->bundle_pem = std::string(bundle_pem);
  snap->serial_hex = pki::serialHex(m.chain.front().get());
  snap->not_after = pki::notAfter(m.chain.front().get());
  snap->generation = generation;
  return std::shared_ptr<const TlsSnapshot>(std::move(snap));
}

}  // namespace meshid::proxy
