#include "proxy/tls13_record_cipher.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstring>
#include <string>

namespace meshid::proxy {
namespace {

constexpr uint8_t kAppDataRecord = 23;

const char* digestName(Tls13Suite s) {
  return s == Tls13Suite::kAes256GcmSha384 ? "SHA384" : "SHA256";
}
size_t hashBytes(Tls13Suite s) {
  return s == Tls13Suite::kAes256GcmSha384 ? 48 : 32;
}
size_t keyBytes(Tls13Suite s) {
  return s == Tls13Suite::kAes128GcmSha256 ? 16 : 32;
}

const EVP_CIPHER* cipherOf(Tls13Suite s) {
  switch (s) {
    case Tls13Suite::kAes128GcmSha256:
      return EVP_aes_128_gcm();
    case Tls13Suite::kAes256GcmSha384:
      return EVP_aes_256_gcm();
    case Tls13Suite::kChacha20Poly1305Sha256:
      return EVP_chacha20_poly1305();
  }
  return nullptr;
}

}  // namespace

std::optional<Tls13Suite> tls13SuiteFromId(uint16_t id) {
  switch (id) {
    case 0x1301:
      return Tls13Suite::kAes128GcmSha256;
    case 0x1302:
      return Tls13Suite::kAes256GcmSha384;
    case 0x1303:
      return Tls13Suite::kChacha20Poly1305Sha256;
    default:
      return std::nullopt;
  }
}

TrafficSecret::TrafficSecret(std::span<const uint8_t> bytes) {
  len_ = bytes.size() <= kMaxBytes ? bytes.size() : 0;
  if (len_ > 0)
    std::memcpy(bytes_.data(), bytes.data(), len_);
}

TrafficSecret& TrafficSecret::operator=(const TrafficSecret& other) {
  bytes_ = other.bytes_;
  len_ = other.len_;
  return *this;
}

TrafficSecret::~TrafficSecret() {
  OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

bool hkdfExpandLabel(Tls13Suite suite, std::span<const uint8_t> secret, std::string_view label,
                     std::span<const uint8_t> context, std::span<uint8_t> out) {
  // struct { uint16 length; opaque label<7..255>; opaque context<0..255>; } HkdfLabel
  constexpr std::string_view kPrefix = "tls13 ";
  if (out.size() > 0xffff || kPrefix.size() + label.size() > 255 || context.size() > 255)
    return false;
  std::basic_string<uint8_t> info;
  info.push_back(static_cast<uint8_t>(out.size() >> 8));
  info.push_back(static_cast<uint8_t>(out.size()));
  info.push_back(static_cast<uint8_t>(kPrefix.size() + label.size()));
  info.append(kPrefix.begin(), kPrefix.end());
  info.append(label.begin(), label.end());
  info.push_back(static_cast<uint8_t>(context.size()));
  info.append(context.begin(), context.end());

  // Fetched once, not for each of a handoff's four derivations (each fetch
  // takes the provider store's lock); never freed, as OpenSSL's own are not.
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  EVP_KDF_CTX* ctx = kdf ? EVP_KDF_CTX_new(kdf) : nullptr;
  if (!ctx)
    return false;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(digestName(suite)),
                                       0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret.data()),
                                        secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
      OSSL_PARAM_construct_end()};
  const bool ok = EVP_KDF_derive(ctx, out.data(), out.size(), params) == 1;
  EVP_KDF_CTX_free(ctx);
  return ok;
}

std::unique_ptr<RecordCipher> RecordCipher::create(Tls13Suite suite, const TrafficSecret& secret,
                                                   uint64_t seq, bool encrypt) {
  if (secret.bytes().size() != hashBytes(suite))
    return nullptr;
  std::unique_ptr<RecordCipher> c(new RecordCipher(suite, encrypt));
  c->ctx_ = EVP_CIPHER_CTX_new();
  if (!c->ctx_ || !c->install(secret))
    return nullptr;
  c->seq_ = seq;
  return c;
}

RecordCipher::~RecordCipher() {
  EVP_CIPHER_CTX_free(ctx_);  // wipes the key schedule
  OPENSSL_cleanse(iv_.data(), iv_.size());
}

bool RecordCipher::install(const TrafficSecret& secret) {
  std::array<uint8_t, 32> key{};
  const std::span<const uint8_t> s = secret.bytes();
  bool ok = hkdfExpandLabel(suite_, s, "key", {}, std::span(key.data(), keyBytes(suite_))) &&
            hkdfExpandLabel(suite_, s, "iv", {}, iv_) &&
            EVP_CipherInit_ex(ctx_, cipherOf(suite_), nullptr, key.data(), nullptr,
                              encrypt_ ? 1 : 0) == 1;
  OPENSSL_cleanse(key.data(), key.size());
  if (ok) {
    secret_ = secret;
    seq_ = 0;
  }
  return ok;
}

// The record's number, big-endian in the last eight bytes, XORed into the IV.
void RecordCipher::nonce(uint8_t* out) const {
  std::memcpy(out, iv_.data(), iv_.size());
  for (int i = 0; i < 8; ++i)
    out[11 - i] ^= static_cast<uint8_t>(seq_ >> (8 * i));
}

bool RecordCipher::seal(uint8_t type, std::span<const char> content, char* out) {
  if (!encrypt_ || seq_ == UINT64_MAX)
    return false;
  const size_t body = content.size() + 1 + kTagBytes;
  auto* header = reinterpret_cast<uint8_t*>(out);
  header[0] = kAppDataRecord;  // the outer type of every protected record
  header[1] = 0x03;
  header[2] = 0x03;
  header[3] = static_cast<uint8_t>(body >> 8);
  header[4] = static_cast<uint8_t>(body);
  uint8_t iv[12];
  nonce(iv);
  auto* dst = header + kHeaderBytes;
  int n = 0;
  int fin = 0;
  bool ok =
      EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, iv, 1) == 1 &&
      EVP_CipherUpdate(ctx_, nullptr, &n, header, kHeaderBytes) == 1 &&
      EVP_CipherUpdate(ctx_, dst, &n, reinterpret_cast<const uint8_t*>(content.data()),
                       static_cast<int>(content.size())) == 1 &&
      EVP_CipherUpdate(ctx_, dst + content.size(), &n, &type, 1) == 1 &&
      EVP_CipherFinal_ex(ctx_, dst + content.size() + 1, &fin) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, kTagBytes, dst + content.size() + 1) == 1;
  if (ok)
    ++seq_;
  return ok;
}

bool RecordCipher::open(const uint8_t* header, std::span<const char> body, char* plain) {
  if (encrypt_ || body.size() <= kTagBytes || seq_ == UINT64_MAX)
    return false;
  const size_t len = body.size() - kTagBytes;
  // The tag is read before any decryption, which may overwrite the body.
  uint8_t tag[kTagBytes];
  std::memcpy(tag, body.data() + len, kTagBytes);
  uint8_t iv[12];
  nonce(iv);
  int n = 0;
  int fin = 0;
  bool ok =
      EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, iv, 0) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, kTagBytes, tag) == 1 &&
      EVP_CipherUpdate(ctx_, nullptr, &n, header, kHeaderBytes) == 1 &&
      EVP_CipherUpdate(ctx_, reinterpret_cast<uint8_t*>(plain), &n,
                       reinterpret_cast<const uint8_t*>(body.data()), static_cast<int>(len)) == 1 &&
      EVP_CipherFinal_ex(ctx_, reinterpret_cast<uint8_t*>(plain) + len, &fin) == 1;
  if (ok)
    ++seq_;
  return ok;
}

bool RecordCipher::update() {
  std::array<uint8_t, TrafficSecret::kMaxBytes> next{};
  const size_t len = hashBytes(suite_);
  bool ok =
      hkdfExpandLabel(suite_, secret_.bytes(), "traffic upd", {}, std::span(next.data(), len));
  if (ok)
    ok = install(TrafficSecret(std::span<const uint8_t>(next.data(), len)));
  OPENSSL_cleanse(next.data(), next.size());
  return ok;
}

}  // namespace meshid::proxy
