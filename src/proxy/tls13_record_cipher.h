// TLS 1.3 record protection for one direction (RFC 8446 §5.2-5.3, §7.1-7.3):
// the key and IV derived from a traffic secret, the per-record nonce, the
// AEAD (OpenSSL's EVP), and KeyUpdate's next secret. The proxy's record
// layer (tls13_stream.h) uses one for reading and one for writing once
// OpenSSL has finished the handshake (tls13_handoff.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace meshid::proxy {

// The cipher suites of RFC 8446 B.4 that the record layer takes over; the
// CCM suites stay with OpenSSL.
enum class Tls13Suite { kAes128GcmSha256, kAes256GcmSha384, kChacha20Poly1305Sha256 };

// From the suite's two-byte id (0x1301...), as SSL_CIPHER_get_protocol_id gives it.
std::optional<Tls13Suite> tls13SuiteFromId(uint16_t id);

// A traffic secret (the hash's length: 32 or 48 bytes), wiped when it goes.
class TrafficSecret {
 public:
  static constexpr size_t kMaxBytes = 48;
  TrafficSecret() = default;
  explicit TrafficSecret(std::span<const uint8_t> bytes);
  TrafficSecret(const TrafficSecret& other) { *this = other; }
  TrafficSecret& operator=(const TrafficSecret& other);
  ~TrafficSecret();
  std::span<const uint8_t> bytes() const { return {bytes_.data(), len_}; }
  bool empty() const { return len_ == 0; }

 private:
  std::array<uint8_t, kMaxBytes> bytes_{};
  size_t len_ = 0;
};

// HKDF-Expand-Label(secret, label, context, out.size()) with the suite's
// hash (RFC 8446 §7.1). False when OpenSSL fails.
bool hkdfExpandLabel(Tls13Suite suite, std::span<const uint8_t> secret, std::string_view label,
                     std::span<const uint8_t> context, std::span<uint8_t> out);

class RecordCipher {
 public:
  static constexpr size_t kHeaderBytes = 5;
  static constexpr size_t kTagBytes = 16;
  // A record's header, tag and content type byte around its content.
  static constexpr size_t kOverheadBytes = kHeaderBytes + kTagBytes + 1;

  // Null when the keys cannot be made. `seq`: the next record's number.
  static std::unique_ptr<RecordCipher> create(Tls13Suite suite, const TrafficSecret& secret,
                                              uint64_t seq, bool encrypt);
  ~RecordCipher();
  RecordCipher(const RecordCipher&) = delete;
  RecordCipher& operator=(const RecordCipher&) = delete;

  // Writes one whole record (header, then `content` and `type` encrypted,
  // then the tag) to `out`, which has room for content.size() +
  // kOverheadBytes. False on failure or when the sequence numbers are used up.
  bool seal(uint8_t type, std::span<const char> content, char* out);

  // Decrypts the body of the record whose header is `header` (body.size()
  // is at least kTagBytes + 1) into `plain` (body.size() - kTagBytes bytes;
  // may be body itself). False when the record does not authenticate.
  bool open(const uint8_t* header, std::span<const char> body, char* plain);

  // KeyUpdate (RFC 8446 §4.6.3): the next traffic secret, its keys, and
  // numbering from 0 again.
  bool update();

  uint64_t sequence() const { return seq_; }

 private:
  RecordCipher(Tls13Suite suite, bool encrypt) : suite_(suite), encrypt_(encrypt) {}
  bool install(const TrafficSecret& secret);
  void nonce(uint8_t* out) const;

  Tls13Suite suite_;
  bool encrypt_;
  TrafficSecret secret_;
  std::array<uint8_t, 12> iv_{};
  uint64_t seq_ = 0;
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

}  // namespace meshid::proxy
