// One TLS handshake between a snapshot's client and server contexts over an
// in-memory BIO pair, as the session tests need it: optional resumption, a
// byte from the server, then a clean close with every ticket collected.
#pragma once

#include <openssl/ssl.h>

#include <memory>

#include <asio/ssl/context.hpp>

#include "proxy/tls_snapshot.h"

namespace meshid::proxy::testing {

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;
struct SessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using SessionPtr = std::unique_ptr<SSL_SESSION, SessionFree>;

// A server and a client SSL of these contexts joined by an in-memory BIO
// pair, each in its role; no handshake yet.
struct BioPair {
  SslPtr server;
  SslPtr client;
};
inline BioPair joinOverBioPair(SSL_CTX* server_ctx, SSL_CTX* client_ctx) {
  BioPair p{SslPtr(SSL_new(server_ctx)), SslPtr(SSL_new(client_ctx))};
  BIO *a = nullptr, *b = nullptr;
  BIO_new_bio_pair(&a, 0, &b, 0);
  SSL_set_bio(p.server.get(), a, a);
  SSL_set_bio(p.client.get(), b, b);
  SSL_set_accept_state(p.server.get());
  SSL_set_connect_state(p.client.get());
  return p;
}

struct Outcome {
  bool ok = false;
  bool resumed = false;
  SessionPtr ticket;  // what the client holds afterwards
};

// One handshake over a BIO pair, a byte from the server, then a clean close;
// the client ends up holding the newest ticket.
// max_version: the client's highest protocol (0: TLS 1.3). client_snap:
// the client's certificates, when not the server's own.
inline Outcome handshake(const TlsSnapshot& snap, SSL_SESSION* resume, int max_version = 0,
                         const TlsSnapshot* client_snap = nullptr) {
  auto [server, client] = joinOverBioPair(
      snap.server->native_handle(), (client_snap ? *client_snap : snap).client->native_handle());
  if (max_version)
    SSL_set_max_proto_version(client.get(), max_version);
  if (resume)
    SSL_set_session(client.get(), resume);
  Outcome out;
  // One handshake step of a side: false when it failed (anything but
  // waiting for the other side's bytes).
  auto step = [](SSL* ssl, bool& done) {
    if (done)
      return true;
    int r = SSL_do_handshake(ssl);
    done = r == 1;
    return done || SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ;
  };
  bool s_done = false, c_done = false;
  for (int i = 0; i < 20 && !(s_done && c_done); ++i) {
    if (!step(client.get(), c_done) || !step(server.get(), s_done))
      return out;
  }
  if (!(s_done && c_done) || SSL_write(server.get(), "x", 1) != 1)
    return out;
  char c = 0;
  if (SSL_read(client.get(), &c, 1) != 1)
    return out;
  // The server closes; reading to its close_notify, the client takes every
  // ticket sent (after a resumption, OpenSSL's server sends the new ticket
  // late), then answers the close so the session stays resumable.
  SSL_shutdown(server.get());
  if (SSL_read(client.get(), &c, 1) != 0)
    return out;
  out.ok = true;
  out.resumed = SSL_session_reused(server.get()) == 1;
  out.ticket.reset(SSL_get1_session(client.get()));
  SSL_shutdown(client.get());
  return out;
}

}  // namespace meshid::proxy::testing
