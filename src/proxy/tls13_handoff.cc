#include "proxy/tls13_handoff.h"

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <array>
#include <cstring>
#include <string_view>

namespace meshid::proxy {
namespace {

int handoffIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// The secret of a key log line "LABEL <client random> <secret>" (NSS's
// format, which OpenSSL writes; the secret ends the line); empty when the
// line is not of that shape.
TrafficSecret secretOf(const char* line) {
  const std::string_view l(line);
  const size_t random_end = l.find(' ', l.find(' ') + 1);
  if (random_end == std::string_view::npos)
    return {};
  std::array<uint8_t, TrafficSecret::kMaxBytes> bytes{};
  size_t len = 0;
  if (OPENSSL_hexstr2buf_ex(bytes.data(), bytes.size(), &len, line + random_end + 1, '\0') != 1)
    return {};
  TrafficSecret s(std::span<const uint8_t>(bytes.data(), len));
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return s;
}

}  // namespace

void Tls13Handoff::enable(SSL_CTX* ctx) {
  SSL_CTX_set_keylog_callback(ctx, onKeylog);
}

Tls13Handoff::Tls13Handoff(SSL* ssl) : ssl_(ssl) {
  SSL_set_ex_data(ssl_, handoffIndex(), this);
  SSL_set_msg_callback(ssl_, onMessage);
  SSL_set_msg_callback_arg(ssl_, this);
}

void Tls13Handoff::stop() {
  if (!watching_)
    return;
  watching_ = false;
  SSL_set_msg_callback(ssl_, nullptr);
  SSL_set_msg_callback_arg(ssl_, nullptr);
  SSL_set_ex_data(ssl_, handoffIndex(), nullptr);
}

void Tls13Handoff::onKeylog(const SSL* ssl, const char* line) {
  auto* self = static_cast<Tls13Handoff*>(SSL_get_ex_data(ssl, handoffIndex()));
  if (!self)
    return;
  const std::string_view l(line);
  if (l.starts_with("CLIENT_TRAFFIC_SECRET_0 "))
    self->client_secret_ = secretOf(line);
  else if (l.starts_with("SERVER_TRAFFIC_SECRET_0 "))
    self->server_secret_ = secretOf(line);
}

// For each protected record OpenSSL reports its inner content type
// (SSL3_RT_INNER_CONTENT_TYPE) as it seals or opens it, and each handshake
// message after it was written or read: the Finished message's own record
// comes before the switch to the application secrets, so it is not counted.
void Tls13Handoff::onMessage(int write_p, int, int content_type, const void* buf, size_t len, SSL*,
                             void* arg) {
  auto* self = static_cast<Tls13Handoff*>(arg);
  if (!self || len == 0)
    return;
  const auto first = *static_cast<const uint8_t*>(buf);
  if (content_type == SSL3_RT_INNER_CONTENT_TYPE) {
    if (write_p && self->write_app_) {
      ++self->write_records_;
    } else if (!write_p && self->read_app_) {
      ++self->read_records_;
      if (first == SSL3_RT_APPLICATION_DATA)
        ++self->app_data_read_;
    }
  } else if (content_type == SSL3_RT_HANDSHAKE) {
    if (first == SSL3_MT_FINISHED)
      (write_p ? self->write_app_ : self->read_app_) = true;
    else if (first == SSL3_MT_KEY_UPDATE)
      self->key_update_ = true;
  }
}

bool Tls13Handoff::never() const {
  if (key_update_ || SSL_get_key_update_type(ssl_) != SSL_KEY_UPDATE_NONE)
    return true;
  if (!SSL_is_init_finished(ssl_))
    return false;
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
  return SSL_version(ssl_) != TLS1_3_VERSION || !cipher ||
         !tls13SuiteFromId(SSL_CIPHER_get_protocol_id(cipher)) || client_secret_.empty() ||
         server_secret_.empty();
}

std::optional<Tls13Stream::Keys> Tls13Handoff::keys(Tls13Stream::Role role) const {
  if (!watching_ || !SSL_is_init_finished(ssl_) || never() || !read_app_ || !write_app_)
    return std::nullopt;
  if (role == Tls13Stream::Role::kClient && app_data_read_ == 0)
    return std::nullopt;
  // Nothing buffered, no record half read ("RH": waiting for a header), no
  // write or alert pending.
  if (SSL_has_pending(ssl_) || std::strcmp(SSL_rstate_string(ssl_), "RH") != 0 ||
      SSL_want(ssl_) != SSL_NOTHING)
    return std::nullopt;
  const bool server = role == Tls13Stream::Role::kServer;
  Tls13Stream::Keys k{*tls13SuiteFromId(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(ssl_))),
                      server ? client_secret_ : server_secret_, read_records_,
                      server ? server_secret_ : client_secret_, write_records_};
  return k;
}

}  // namespace meshid::proxy
