// The proxy's TLS 1.3 record layer: what a connection's records go through
// once OpenSSL has finished the handshake and handed the traffic secrets
// over (tls13_handoff.h). It reads records into a buffer of its own and
// decrypts them straight into the caller's buffer (OpenSSL decrypts into its
// buffer, moves what is left to the front and copies out), and seals what
// the caller writes into records in one buffer that leaves in one send.
//
// Why: at 32 keep-alive connections a proxy's SSL_read and SSL_write were
// about twice the cost of the AEAD they wrap (docs/PERFORMANCE.md).
//
// What it does after the handshake, as RFC 8446 asks: application data
// (empty records too), close_notify, fatal alerts from the peer, KeyUpdate
// both ways (answering update_requested, and updating its own key before
// kRekeyRecords records under one key, §5.5), NewSessionTicket to a client
// (ignored: the proxy keeps the tickets OpenSSL saw before the handover).
// Anything else ends the connection with the alert §6 names, which
// sealAlert() makes for the caller to send.
//
// No sockets here: the caller moves bytes (tls13_socket in proxy.cc; the
// unit tests and the fuzzer use memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "proxy/buffer_pool.h"
#include "proxy/tls13_record_cipher.h"

namespace meshid::proxy {

class Tls13Stream {
 public:
  static constexpr size_t kMaxPlainBytes = 16384;                // 2^14
  static constexpr size_t kMaxBodyBytes = kMaxPlainBytes + 256;  // 2^14 + 256
  static constexpr size_t kMaxRecordBytes = RecordCipher::kHeaderBytes + kMaxBodyBytes;
  // Records under one write key before the stream updates it: below the
  // 2^24.5 of RFC 8446 §5.5 for AES-GCM.
  static constexpr uint64_t kRekeyRecords = uint64_t{1} << 24;

  enum class Role { kServer, kClient };
  struct Keys {
    Tls13Suite suite;
    TrafficSecret read;
    uint64_t read_seq = 0;
    TrafficSecret write;
    uint64_t write_seq = 0;
  };
  // Null when the keys cannot be made. Input buffers come from `pool` and go
  // back to it whenever no record is left in them.
  static std::unique_ptr<Tls13Stream> create(Role role, const Keys& keys, BufferPool& pool,
                                             uint64_t rekey_records = kRekeyRecords);

  enum class Status { kData, kNeedMore, kEnd, kError };
  struct ReadResult {
    size_t bytes = 0;
    Status status = Status::kNeedMore;
  };

  // Reading. Bytes from the peer go into inputSpace() (room for at least one
  // whole record), then received(). read() decrypts whole records into `out`
  // while they fit; kData with bytes > 0, else what stopped it: kNeedMore
  // (no whole record), kEnd (close_notify), kError (error()). kEnd and
  // kError stay: every later read returns them.
  std::span<char> inputSpace();
  void received(size_t n);
  ReadResult read(char* out, size_t cap);
  // Whether read() would make progress without more input.
  bool hasRecord() const;
  // Gives the input buffer back to the pool when it holds nothing (after
  // inputSpace() found the socket empty).
  void releaseIdleInput();

  // Bytes the stream must send before anything written after them: the
  // answer to a KeyUpdate the peer sent. Sent from the front; consume() what went.
  std::span<const char> control() const {
    return {control_.data() + control_sent_, control_.size() - control_sent_};
  }
  void controlSent(size_t n);

  // Writing. Seals as much of `in` as fits into `out` (records of up to
  // kMaxPlainBytes, each kOverheadBytes larger than its content, and a
  // KeyUpdate when the key is due). Returns the bytes written to `out`;
  // `consumed`: the bytes of `in` they hold. 0 with an error() on failure.
  size_t seal(std::span<const char> in, char* out, size_t cap, size_t* consumed);
  // A close_notify alert, or the fatal alert for error() when there is one,
  // into `out` (room for kAlertRecordBytes). Returns its size; 0 if it cannot
  // or must not (after the peer's fatal alert).
  static constexpr size_t kAlertRecordBytes = 2 + RecordCipher::kOverheadBytes;
  size_t sealAlert(char* out);

  const std::string& error() const { return error_; }
  // The stream ended on an error (ours to report, or the peer's alert):
  // nothing more may be sent, close_notify included (RFC 8446 §6.2).
  bool failed() const { return final_ == Status::kError; }
  uint64_t keyUpdatesReceived() const { return key_updates_received_; }
  uint64_t keyUpdatesSent() const { return key_updates_sent_; }

  ~Tls13Stream();
  Tls13Stream(const Tls13Stream&) = delete;
  Tls13Stream& operator=(const Tls13Stream&) = delete;

 private:
  Tls13Stream(Role role, BufferPool& pool, uint64_t rekey_records)
      : role_(role), pool_(pool), rekey_records_(rekey_records) {}
  bool fail(uint8_t alert, std::string why);
  bool handshakeMessages(const char* p, size_t len);
  bool sealKeyUpdate(bool request, char* out);  // kKeyUpdateRecordBytes

  Role role_;
  BufferPool& pool_;
  uint64_t rekey_records_;
  std::unique_ptr<RecordCipher> reader_;
  std::unique_ptr<RecordCipher> writer_;
  std::unique_ptr<char[]> in_;  // from pool_ while it holds bytes
  size_t in_start_ = 0;         // the first byte not yet read
  size_t in_end_ = 0;
  const char* plain_ = nullptr;  // decrypted in place, not yet given out
  size_t plain_len_ = 0;
  std::string control_;
  size_t control_sent_ = 0;
  Status final_ = Status::kNeedMore;  // kEnd or kError once reached
  uint8_t alert_ = 0;                 // what to tell the peer on kError
  std::string error_;
  uint64_t key_updates_received_ = 0;
  uint64_t key_updates_sent_ = 0;
};

}  // namespace meshid::proxy
