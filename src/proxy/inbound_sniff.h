// The one look an inbound listener takes at a new connection before it
// decides between mTLS and plaintext (PeerAuthentication's PERMISSIVE mode),
// as a pure function so it is tested and fuzzed apart from the sockets.
#pragma once

#include <cstddef>
#include <span>

#include "proxy/config.h"

namespace meshid::proxy {

enum class InboundPath { kTls, kPlaintext, kRefused };

// The bytes the proxy peeks (and leaves in the socket) before deciding; the
// verdict never depends on more.
constexpr size_t kSniffBytes = 1;

// A TLS ClientHello starts with a handshake record (content type 0x16);
// anything else is plaintext, which STRICT refuses (never a downgrade,
// whatever the certificates' state) and PERMISSIVE forwards. DISABLE is
// plaintext without a look. `peeked` is what the client sent first; the
// proxy closes a connection that ends before its first byte without asking,
// and an empty `peeked` counts as not a ClientHello.
InboundPath sniffInbound(Mode mode, std::span<const unsigned char> peeked);

}  // namespace meshid::proxy
