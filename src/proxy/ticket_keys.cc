#include "proxy/ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <optional>

namespace meshid::proxy {

struct TicketKeys::Ring {
  struct Key {
    int64_t period = 0;
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    Key() = default;
    Key(const Key&) = default;
    ~Key() { OPENSSL_cleanse(this, sizeof *this); }
  };
  Key current;
  std::optional<Key> previous;
};

namespace {

int contextIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

bool setMacKey(EVP_MAC_CTX* mac, unsigned char* key, size_t len) {
  char digest[] = "SHA256";
  // The digest first: HMAC keys itself with the digest it has when the key arrives.
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, len),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

TicketKeys::TicketKeys(const Clock& clock, std::chrono::milliseconds period)
    : clock_(clock), period_ms_(std::max<int64_t>(1, period.count())) {
  aes_ = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
}

TicketKeys::~TicketKeys() {
  EVP_CIPHER_free(aes_);
}

void TicketKeys::install(SSL_CTX* ctx) {
  SSL_CTX_set_ex_data(ctx, contextIndex(), this);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &TicketKeys::callback);
}

// The ring for the current period, making a new key when the period moved
// on. Two threads may both make one: the compare-exchange keeps one ring,
// and a ticket sealed by the loser's key just fails to open later (a full
// handshake), which is rare and harmless.
std::shared_ptr<const TicketKeys::Ring> TicketKeys::ringNow() {
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch())
          .count();
  const int64_t period = now_ms / period_ms_;
  auto ring = ring_.load();
  while (!ring || ring->current.period != period) {
    auto next = std::make_shared<Ring>();
    next->current.period = period;
    if (RAND_bytes(next->current.name, sizeof next->current.name) != 1 ||
        RAND_bytes(next->current.aes, sizeof next->current.aes) != 1 ||
        RAND_bytes(next->current.hmac, sizeof next->current.hmac) != 1)
      return nullptr;
    if (ring && ring->current.period == period - 1)
      next->previous = ring->current;
    std::shared_ptr<const Ring> published = next;
    if (ring_.compare_exchange_strong(ring, published)) {
      keys_made_.fetch_add(1, std::memory_order_relaxed);
      return published;
    }
    // Another thread published first; `ring` now holds its ring.
  }
  return ring;
}

// OpenSSL's ticket callback: 1 = sealed, 2 = opened (send a new ticket),
// 0 = unknown key (full handshake), -1 = error.
int TicketKeys::callback(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                         EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
  auto* self = static_cast<TicketKeys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), contextIndex()));
  if (!self)
    return -1;
  auto ring = self->ringNow();
  if (!ring)
    return -1;
  // Without a pre-fetched cipher, OpenSSL fetches it per call: slower, same result.
  const EVP_CIPHER* aes = self->aes_ ? self->aes_ : EVP_aes_256_cbc();
  if (encrypt) {
    Ring::Key key = ring->current;
    const int iv_len = EVP_CIPHER_get_iv_length(aes);
    std::memcpy(key_name, key.name, sizeof key.name);
    if (RAND_bytes(iv, iv_len) != 1 || EVP_EncryptInit_ex(cipher, aes, nullptr, key.aes, iv) != 1 ||
        !setMacKey(mac, key.hmac, sizeof key.hmac))
      return -1;
    return 1;
  }
  const Ring::Key* key = nullptr;
  if (std::memcmp(key_name, ring->current.name, sizeof ring->current.name) == 0)
    key = &ring->current;
  else if (ring->previous &&
           std::memcmp(key_name, ring->previous->name, sizeof ring->previous->name) == 0)
    key = &*ring->previous;
  if (!key)
    return 0;
  Ring::Key copy = *key;
  if (!setMacKey(mac, copy.hmac, sizeof copy.hmac) ||
      EVP_DecryptInit_ex(cipher, aes, nullptr, copy.aes, iv) != 1)
    return -1;
  // Always 2 (open, then issue a fresh ticket): clients use a TLS 1.3
  // ticket once (RFC 8446 C.4, and OpenSSL's client does), so a resumption
  // that hands out no new ticket makes the next connection a full handshake.
  // A ticket under the previous key is renewed under the current one.
  return 2;
}

}  // namespace meshid::proxy
