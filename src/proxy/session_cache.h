// TLS 1.3 resumption from memory: the server keeps each session it tickets
// and the ticket is only the session's id (OpenSSL's "stateful" tickets).
//
// Why not stateless tickets for TLS 1.3 too: OpenSSL 3.0 decodes a stateless
// ticket's session, the client certificate in it included, and to seal the
// fresh ticket it encodes, decodes and encodes the session again. The two
// certificate decodes run OpenSSL 3.0's slow key decoder and were 40 % of
// the proxy's CPU under a resumption load (docs/PERFORMANCE.md). A session
// kept here is handed back as it is, with no decode at all.
//
// Each ticket resumes once (RFC 8446 C.4; OpenSSL's client offers a ticket
// once anyway): taking a session removes it, and the resumption hands the
// client a fresh one. Sessions expire `lifetime` after they were made, by the
// injected clock. The cache holds at most `capacity` sessions and drops the
// oldest when full (that client then makes a full handshake). TLS 1.2 keeps
// its stateless tickets under rotated keys (TicketKeys); a TLS 1.2 client
// without ticket support resumes by session id from this cache.
//
// One cache per server SSL_CTX, shared by the workers through it: a mutex
// on the handshake path (never on the data path), held for a map operation.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/clock.h"

namespace meshid::proxy {

class SessionCache {
 public:
  SessionCache(const Clock& clock, std::chrono::milliseconds lifetime, size_t capacity);
  ~SessionCache();
  SessionCache(const SessionCache&) = delete;
  SessionCache& operator=(const SessionCache&) = delete;

  // Makes ctx (a server context) keep its sessions here and use id tickets
  // for every client that offers TLS 1.3; ctx keeps a pointer to this
  // object, which must outlive it.
  void install(SSL_CTX* ctx);

  // Sessions held now, and how many were dropped to make room.
  size_t size() const;
  uint64_t evicted() const;

  // What install() wires into OpenSSL, public for the tests that drive it
  // without a handshake: keep a new session (takes the reference), take one
  // by id (nullptr when unknown or expired; the caller owns the result).
  void put(SSL_SESSION* session);
  SSL_SESSION* take(const unsigned char* id, size_t len);

 private:
  struct Entry {
    std::string id;
    SSL_SESSION* session;
    SystemTime expires;
  };
  static int onNewSession(SSL* ssl, SSL_SESSION* session);
  static SSL_SESSION* onGetSession(SSL* ssl, const unsigned char* id, int len, int* copy);
  static int onClientHello(SSL* ssl, int* alert, void* arg);
  // With mu_ held: frees the entry's session and forgets it.
  void eraseLocked(std::list<Entry>::iterator it);

  const Clock& clock_;
  const std::chrono::milliseconds lifetime_;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> by_age_;  // oldest first: what to expire or evict next
  std::unordered_map<std::string, std::list<Entry>::iterator> by_id_;
  uint64_t evicted_ = 0;
};

}  // namespace meshid::proxy
