// Session-ticket keys for one server SSL_CTX, rotated every `period`. New
// tickets are sealed with the current key; a ticket under the previous key
// still resumes, anything older falls back to a full handshake. Every
// resumption hands the client a fresh ticket under the current key. A key lives at most two
// periods, so a key that leaks exposes that window's sessions only.
//
// Rotation happens on the first handshake that sees a new period (no timer
// thread); readers never lock: the key pair is an immutable ring published
// with an atomic shared_ptr, and a retired key is wiped when its last reader
// lets go.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "common/clock.h"

namespace meshid::proxy {

class TicketKeys {
 public:
  TicketKeys(const Clock& clock, std::chrono::milliseconds period);
  ~TicketKeys();
  TicketKeys(const TicketKeys&) = delete;
  TicketKeys& operator=(const TicketKeys&) = delete;

  // Makes ctx seal and open tickets with these keys; ctx keeps a pointer to
  // this object, which must outlive it.
  void install(SSL_CTX* ctx);

  // How many keys were made so far (the first one included).
  uint64_t keysMade() const { return keys_made_.load(std::memory_order_relaxed); }

  struct Ring;

 private:
  static int callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                      EVP_MAC_CTX* mac, int encrypt);
  std::shared_ptr<const Ring> ringNow();

  const Clock& clock_;
  const int64_t period_ms_;
  EVP_CIPHER* aes_ = nullptr;  // fetched once: AES-256-CBC, as OpenSSL's own tickets
  std::atomic<std::shared_ptr<const Ring>> ring_;
  std::atomic<uint64_t> keys_made_{0};
};

}  // namespace meshid::proxy
