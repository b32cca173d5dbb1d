// Hands a TLS 1.3 connection's records from OpenSSL to the proxy's own
// record layer (tls13_stream.h) once the handshake is done.
//
// OpenSSL 3.0 has no call that gives out a connection's traffic secrets or
// record numbers. It reports the secrets to a key log callback as it derives
// them, and every record it protects or removes protection from to a
// message callback; both are public API. A Tls13Handoff watches one
// connection through them from its first byte: it keeps the two
// application traffic secrets and counts the records OpenSSL sent and
// received under them (those after the Finished message each way).
//
// The records move only at a point where OpenSSL holds nothing: no byte
// read but not yet given out, no record half read, no write pending, no
// KeyUpdate seen or owed (those stay with OpenSSL for good). The caller
// turns read-ahead off after the handshake, so OpenSSL's buffer empties at a
// record boundary.
#pragma once

#include <cstdint>
#include <optional>

#include "proxy/tls13_stream.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace meshid::proxy {

class Tls13Handoff {
 public:
  // Makes `ctx`'s connections report their secrets to the Tls13Handoff
  // watching them (none: nothing is kept).
  static void enable(SSL_CTX* ctx);

  // Watches `ssl` from before its handshake until destroyed or stop().
  explicit Tls13Handoff(SSL* ssl);
  ~Tls13Handoff() { stop(); }
  Tls13Handoff(const Tls13Handoff&) = delete;
  Tls13Handoff& operator=(const Tls13Handoff&) = delete;

  // The keys and record numbers when the records can move now. `role`: the
  // connection's side. A client also waits for one application data record
  // through OpenSSL, so that the server's session tickets (sent right after
  // the handshake) reach OpenSSL's session callback first.
  std::optional<Tls13Stream::Keys> keys(Tls13Stream::Role role) const;
  // Whether the connection can never move (TLS 1.2, a CCM suite, a KeyUpdate).
  bool never() const;
  void stop();

 private:
  static void onKeylog(const SSL* ssl, const char* line);
  static void onMessage(int write_p, int version, int content_type, const void* buf, size_t len,
                        SSL* ssl, void* arg);

  SSL* ssl_;
  bool watching_ = true;
  TrafficSecret client_secret_;
  TrafficSecret server_secret_;
  bool read_app_ = false;  // a Finished was read: later records are under the peer's app secret
  bool write_app_ = false;
  uint64_t read_records_ = 0;
  uint64_t write_records_ = 0;
  uint64_t app_data_read_ = 0;
  bool key_update_ = false;
};

}  // namespace meshid::proxy
