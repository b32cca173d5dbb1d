#include "proxy/session_cache.h"

#include <openssl/tls1.h>

namespace meshid::proxy {
namespace {

int contextIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

SessionCache* cacheOf(SSL* ssl) {
  return static_cast<SessionCache*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), contextIndex()));
}

// Whether the ClientHello lists TLS 1.3 in supported_versions (a one-byte
// length, then two bytes per version). A malformed list counts as no: the
// handshake then goes on as OpenSSL decides.
bool offersTls13(SSL* ssl) {
  const unsigned char* p = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &p, &len) != 1 || len < 1 ||
      p[0] != len - 1 || p[0] % 2 != 0)
    return false;
  for (size_t i = 1; i + 1 < len; i += 2) {
    if (((p[i] << 8) | p[i + 1]) == TLS1_3_VERSION)
      return true;
  }
  return false;
}

}  // namespace

SessionCache::SessionCache(const Clock& clock, std::chrono::milliseconds lifetime, size_t capacity)
    : clock_(clock), lifetime_(lifetime), capacity_(capacity) {}

SessionCache::~SessionCache() {
  for (auto& e : by_age_)
    SSL_SESSION_free(e.session);
}

void SessionCache::install(SSL_CTX* ctx) {
  SSL_CTX_set_ex_data(ctx, contextIndex(), this);
  // OpenSSL's own table stays unused: it expires by the wall clock and, in
  // 3.0, walks the whole table to do it.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx, &SessionCache::onNewSession);
  SSL_CTX_sess_set_get_cb(ctx, &SessionCache::onGetSession);
  SSL_CTX_set_client_hello_cb(ctx, &SessionCache::onClientHello, nullptr);
}

size_t SessionCache::size() const {
  std::lock_guard lock(mu_);
  return by_id_.size();
}

uint64_t SessionCache::evicted() const {
  std::lock_guard lock(mu_);
  return evicted_;
}

void SessionCache::put(SSL_SESSION* session) {
  if (capacity_ == 0) {
    SSL_SESSION_free(session);
    return;
  }
  unsigned int id_len = 0;
  const unsigned char* id = SSL_SESSION_get_id(session, &id_len);
  std::string key(reinterpret_cast<const char*>(id), id_len);
  const SystemTime now = clock_.now();
  std::lock_guard lock(mu_);
  while (!by_age_.empty() && by_age_.front().expires <= now)
    eraseLocked(by_age_.begin());
  if (auto same = by_id_.find(key); same != by_id_.end())
    eraseLocked(same->second);
  while (!by_age_.empty() && by_id_.size() >= capacity_) {
    eraseLocked(by_age_.begin());
    ++evicted_;
  }
  by_age_.push_back({key, session, now + lifetime_});
  by_id_.emplace(std::move(key), std::prev(by_age_.end()));
}

SSL_SESSION* SessionCache::take(const unsigned char* id, size_t len) {
  const std::string key(reinterpret_cast<const char*>(id), len);
  const SystemTime now = clock_.now();
  std::lock_guard lock(mu_);
  auto found = by_id_.find(key);
  if (found == by_id_.end())
    return nullptr;
  auto it = found->second;
  SSL_SESSION* session = nullptr;
  if (it->expires > now)
    std::swap(session, it->session);  // handed over, not freed below
  eraseLocked(it);
  return session;
}

void SessionCache::eraseLocked(std::list<Entry>::iterator it) {
  SSL_SESSION_free(it->session);  // accepts nullptr
  by_id_.erase(it->id);
  by_age_.erase(it);
}

int SessionCache::onNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = cacheOf(ssl);
  if (!self)
    return 0;  // not ours to keep: OpenSSL drops its reference
  self->put(session);
  return 1;
}

SSL_SESSION* SessionCache::onGetSession(SSL* ssl, const unsigned char* id, int len, int* copy) {
  *copy = 0;  // the reference take() returns goes to OpenSSL
  auto* self = cacheOf(ssl);
  return self && len > 0 ? self->take(id, static_cast<size_t>(len)) : nullptr;
}

int SessionCache::onClientHello(SSL* ssl, int*, void*) {
  const long max = SSL_get_max_proto_version(ssl);
  if ((max == 0 || max >= TLS1_3_VERSION) && offersTls13(ssl))
    SSL_set_options(ssl, SSL_OP_NO_TICKET);  // TLS 1.3: id tickets, sessions kept here
  return SSL_CLIENT_HELLO_SUCCESS;
}

}  // namespace meshid::proxy
