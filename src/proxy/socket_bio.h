// The BIO a proxy worker's TLS connections read and write their socket
// through: OpenSSL's socket BIO, minus what the pipe does not need, plus the
// one thing it does: a read that empties the socket tells the connection's
// Readiness at once (the next read would only get EAGAIN), so the pipe waits
// for the next edge instead of reading again.
//
// Why not the socket BIO with a callback that notes the short reads (what the
// proxy did before): OpenSSL calls a BIO's callback before and after every
// read, write and control call, and libssl makes several control calls per
// record (kTLS queries, flushes). In a keep-alive profile that was 0.9 % of
// the proxy's CPU against haproxy's 0.5 % for its own BIO (docs/PERFORMANCE.md).
#pragma once

#include <openssl/bio.h>

namespace meshid::proxy {

class Readiness;

// What the BIO reads and writes: the socket, and the readiness its reads
// update. Owned by the connection and outliving the SSL object the BIO is
// given to (the SSL frees the BIO).
struct SocketBioState {
  int fd = -1;
  Readiness* ready = nullptr;
  bool eof = false;  // the peer's FIN was read (BIO_eof: an unexpected EOF in TLS)
};

// A new BIO over `state` (not owned; nullptr when OpenSSL cannot allocate).
// Writes use send(MSG_NOSIGNAL). Hand it to SSL_set_bio for both directions.
BIO* newSocketBio(SocketBioState& state);

}  // namespace meshid::proxy
