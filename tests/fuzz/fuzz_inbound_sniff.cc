// The inbound listener's sniff (PERMISSIVE's TLS-or-plaintext look) on
// arbitrary first bytes, checked against OpenSSL's own reading of them.
// Input: a mode byte (0 STRICT, 1 PERMISSIVE, 2 DISABLE, modulo 3), then what
// the client sent first.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "proxy/inbound_sniff.h"
#include "require.h"

namespace {

using meshid::proxy::InboundPath;
using meshid::proxy::Mode;

using meshid::fuzz::require;

// Set when OpenSSL has read a whole ClientHello from the bytes; the callback
// then ends the handshake, so no certificate is needed.
int onClientHello(SSL* ssl, int* alert, void*) {
  // An SSLv2-format hello (first byte 0x80 and up) is not a TLS record: the
  // sniff sends it to plaintext, as it always has, and no client of TLS 1.2
  // or later sends one.
  if (!SSL_client_hello_isv2(ssl)) {
    *static_cast<bool*>(SSL_get_app_data(ssl)) = true;
  }
  *alert = SSL_AD_HANDSHAKE_FAILURE;
  return SSL_CLIENT_HELLO_ERROR;
}

// Whether an OpenSSL server would read these bytes as a ClientHello.
bool opensslSeesClientHello(std::span<const unsigned char> bytes) {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    require(c != nullptr);
    SSL_CTX_set_client_hello_cb(c, onClientHello, nullptr);
    return c;
  }();
  bool seen = false;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx), &SSL_free);
  SSL_set_app_data(ssl.get(), &seen);
  BIO* in = BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()));
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // the SSL owns both
  SSL_set_accept_state(ssl.get());
  (void)SSL_do_handshake(ssl.get());
  ERR_clear_error();
  return seen;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const Mode mode = static_cast<Mode>(data[0] % 3);
  const std::span<const unsigned char> peeked(data + 1, size - 1);
  const InboundPath path = meshid::proxy::sniffInbound(mode, peeked);

  // Stable: the same bytes, and any longer read of them, give the verdict
  // the proxy reaches from the kSniffBytes it peeks.
  require(meshid::proxy::sniffInbound(mode, peeked) == path);
  if (!peeked.empty()) {
    const auto first = peeked.first(std::min(peeked.size(), meshid::proxy::kSniffBytes));
    require(meshid::proxy::sniffInbound(mode, first) == path);
  }
  // The modes' promises: STRICT never forwards plaintext, PERMISSIVE never
  // refuses, DISABLE never handshakes.
  switch (mode) {
    case Mode::kStrict:
      require(path != InboundPath::kPlaintext);
      break;
    case Mode::kPermissive:
      require(path != InboundPath::kRefused);
      break;
    case Mode::kDisable:
      require(path == InboundPath::kPlaintext);
      break;
  }
  // Whatever OpenSSL reads as a ClientHello goes to the TLS handshake where
  // the mode allows one.
  if (mode != Mode::kDisable && opensslSeesClientHello(peeked)) {
    require(path == InboundPath::kTls);
  }
  return 0;
}
