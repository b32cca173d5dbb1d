#include "proxy/tls13_stream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace meshid::proxy {
namespace {

// RFC 8446 §5.1 and §6.
constexpr uint8_t kAlertType = 21;
constexpr uint8_t kHandshakeType = 22;
constexpr uint8_t kAppDataType = 23;
constexpr uint8_t kCloseNotify = 0;
constexpr uint8_t kUnexpectedMessage = 10;
constexpr uint8_t kBadRecordMac = 20;
constexpr uint8_t kRecordOverflow = 22;
constexpr uint8_t kIllegalParameter = 47;
constexpr uint8_t kDecodeError = 50;
constexpr uint8_t kProtocolVersion = 70;
constexpr uint8_t kInternalError = 80;
constexpr uint8_t kUserCanceled = 90;
constexpr uint8_t kNewSessionTicket = 4;
constexpr uint8_t kKeyUpdate = 24;
constexpr size_t kKeyUpdateRecordBytes = 5 + RecordCipher::kOverheadBytes;

}  // namespace

std::unique_ptr<Tls13Stream> Tls13Stream::create(Role role, const Keys& keys, BufferPool& pool,
                                                 uint64_t rekey_records) {
  std::unique_ptr<Tls13Stream> s(new Tls13Stream(role, pool, rekey_records));
  s->reader_ = RecordCipher::create(keys.suite, keys.read, keys.read_seq, false);
  s->writer_ = RecordCipher::create(keys.suite, keys.write, keys.write_seq, true);
  if (!s->reader_ || !s->writer_)
    return nullptr;
  return s;
}

Tls13Stream::~Tls13Stream() {
  if (in_)
    pool_.giveBack(std::move(in_));
}

bool Tls13Stream::fail(uint8_t alert, std::string why) {
  final_ = Status::kError;
  alert_ = alert;
  error_ = std::move(why);
  return false;
}

std::span<char> Tls13Stream::inputSpace() {
  if (!in_) {
    in_ = pool_.takeRaw();
    in_start_ = in_end_ = 0;
  }
  // What is still needed starts at the first plaintext not given out, or
  // else at the first record not read.
  const size_t keep = plain_len_ > 0 ? static_cast<size_t>(plain_ - in_.get()) : in_start_;
  if (keep == in_end_) {
    in_start_ = in_end_ = 0;
  } else if (BufferPool::kBufferBytes - in_end_ < kMaxRecordBytes && keep > 0) {
    // Room for a whole record after what is kept: move it to the front (at
    // most one partial record and an undelivered one, once per fill).
    std::memmove(in_.get(), in_.get() + keep, in_end_ - keep);
    in_start_ -= keep;
    in_end_ -= keep;
    if (plain_len_ > 0)
      plain_ -= keep;
  }
  return {in_.get() + in_end_, BufferPool::kBufferBytes - in_end_};
}

void Tls13Stream::received(size_t n) {
  in_end_ += std::min(n, BufferPool::kBufferBytes - in_end_);
}

void Tls13Stream::releaseIdleInput() {
  if (in_ && in_start_ == in_end_ && plain_len_ == 0) {
    pool_.giveBack(std::move(in_));
    in_start_ = in_end_ = 0;
  }
}

bool Tls13Stream::hasRecord() const {
  if (plain_len_ > 0 || final_ != Status::kNeedMore)
    return true;
  const size_t avail = in_end_ - in_start_;
  if (avail < RecordCipher::kHeaderBytes)
    return false;
  const auto* h = reinterpret_cast<const uint8_t*>(in_.get() + in_start_);
  const size_t body = (size_t{h[3]} << 8) | h[4];
  // A header read() refuses is progress too (to the error).
  return body > kMaxBodyBytes || avail >= RecordCipher::kHeaderBytes + body;
}

Tls13Stream::ReadResult Tls13Stream::read(char* out, size_t cap) {
  size_t produced = 0;
  while (final_ == Status::kNeedMore) {
    if (plain_len_ > 0) {
      const size_t n = std::min(plain_len_, cap - produced);
      std::memcpy(out + produced, plain_, n);
      produced += n;
      plain_ += n;
      plain_len_ -= n;
      if (plain_len_ > 0)
        break;  // `out` is full
      continue;
    }
    const size_t avail = in_end_ - in_start_;
    if (avail < RecordCipher::kHeaderBytes)
      break;
    const auto* h = reinterpret_cast<const uint8_t*>(in_.get() + in_start_);
    const size_t body = (size_t{h[3]} << 8) | h[4];
    if (h[0] != kAppDataType) {
      fail(kUnexpectedMessage,
           fmt::format("an unprotected record (type {}) after the handshake", h[0]));
      break;
    }
    if (h[1] != 3 || h[2] != 3) {
      fail(kProtocolVersion, fmt::format("record version {}.{}, not 3.3", h[1], h[2]));
      break;
    }
    if (body > kMaxBodyBytes) {
      fail(kRecordOverflow, fmt::format("a record of {} bytes (at most {})", body, kMaxBodyBytes));
      break;
    }
    if (body <= RecordCipher::kTagBytes) {
      fail(kBadRecordMac, fmt::format("a record of {} bytes cannot hold a tag and a type", body));
      break;
    }
    if (avail < RecordCipher::kHeaderBytes + body)
      break;
    const size_t plain_len = body - RecordCipher::kTagBytes;
    char* record_body = in_.get() + in_start_ + RecordCipher::kHeaderBytes;
    // Straight into `out` when it fits, else in place (given out from there).
    char* dst = cap - produced >= plain_len ? out + produced : record_body;
    if (!reader_->open(h, {record_body, body}, dst)) {
      fail(kBadRecordMac, "a record did not authenticate (bad_record_mac)");
      break;
    }
    in_start_ += RecordCipher::kHeaderBytes + body;
    size_t i = plain_len;  // the content type is the last byte that is not 0
    while (i > 0 && dst[i - 1] == 0)
      --i;
    if (i == 0) {
      fail(kUnexpectedMessage, "a record with only padding (no content type)");
      break;
    }
    const auto type = static_cast<uint8_t>(dst[i - 1]);
    const size_t len = i - 1;
    if (len > kMaxPlainBytes) {
      fail(kRecordOverflow, fmt::format("{} bytes of content in one record", len));
      break;
    }
    if (type == kAppDataType) {
      if (dst == record_body) {
        plain_ = dst;
        plain_len_ = len;
      } else {
        produced += len;
      }
    } else if (type == kHandshakeType) {
      if (!handshakeMessages(dst, len))
        break;
    } else if (type == kAlertType) {
      if (len != 2) {
        fail(kDecodeError, fmt::format("an alert of {} bytes", len));
        break;
      }
      const auto desc = static_cast<uint8_t>(dst[1]);
      if (desc == kCloseNotify) {
        final_ = Status::kEnd;
      } else if (desc != kUserCanceled) {  // user_canceled: close_notify follows
        final_ = Status::kError;
        alert_ = 0;  // an alert is not answered
        error_ = fmt::format("the peer sent alert {}", desc);
      }
    } else {
      fail(kUnexpectedMessage, fmt::format("a record of content type {}", type));
      break;
    }
  }
  releaseIdleInput();
  if (produced > 0)
    return {produced, Status::kData};
  return {0, final_};
}

bool Tls13Stream::handshakeMessages(const char* p, size_t len) {
  if (len == 0)
    return fail(kUnexpectedMessage, "an empty handshake record");
  const auto* m = reinterpret_cast<const uint8_t*>(p);
  while (len > 0) {
    if (len < 4)
      return fail(kDecodeError, "a handshake message header split over records");
    const size_t body = (size_t{m[1]} << 16) | (size_t{m[2]} << 8) | m[3];
    if (body > len - 4)
      return fail(kDecodeError, fmt::format("a handshake message (type {}) split over records, "
                                            "not taken after the handshake",
                                            m[0]));
    if (m[0] == kKeyUpdate) {
      if (body != 1)
        return fail(kDecodeError, fmt::format("a KeyUpdate of {} bytes", body));
      if (m[4] > 1)
        return fail(kIllegalParameter, fmt::format("KeyUpdate request_update {}", m[4]));
      if (len != 5)  // §5.1: a key change ends its record
        return fail(kUnexpectedMessage, "data after a KeyUpdate in its record");
      if (!reader_->update())
        return fail(kInternalError, "cannot derive the peer's next key");
      ++key_updates_received_;
      // §4.6.3: answer before the next application data; one answer covers
      // requests that came before it left.
      if (m[4] == 1 && control().empty()) {
        control_.erase(0, control_sent_);
        control_sent_ = 0;
        const size_t at = control_.size();
        control_.resize(at + kKeyUpdateRecordBytes);
        if (!sealKeyUpdate(false, control_.data() + at))
          return false;
      }
    } else if (m[0] == kNewSessionTicket && role_ == Role::kClient) {
      // Resumption keeps the tickets OpenSSL took during the handshake.
    } else {
      return fail(kUnexpectedMessage,
                  fmt::format("handshake message type {} after the handshake", m[0]));
    }
    m += 4 + body;
    len -= 4 + body;
  }
  return true;
}

bool Tls13Stream::sealKeyUpdate(bool request, char* out) {
  const char msg[5] = {static_cast<char>(kKeyUpdate), 0, 0, 1, static_cast<char>(request ? 1 : 0)};
  if (!writer_->seal(kHandshakeType, msg, out) || !writer_->update())
    return fail(kInternalError, "cannot update our key");
  ++key_updates_sent_;
  return true;
}

void Tls13Stream::controlSent(size_t n) {
  control_sent_ = std::min(control_.size(), control_sent_ + n);
  if (control_sent_ == control_.size()) {
    control_.clear();
    control_sent_ = 0;
  }
}

size_t Tls13Stream::seal(std::span<const char> in, char* out, size_t cap, size_t* consumed) {
  size_t written = 0;
  *consumed = 0;
  while (*consumed < in.size()) {
    if (writer_->sequence() >= rekey_records_) {
      if (cap - written < kKeyUpdateRecordBytes)
        break;
      if (!sealKeyUpdate(false, out + written))
        return 0;
      written += kKeyUpdateRecordBytes;
    }
    const size_t room = cap - written;
    if (room <= RecordCipher::kOverheadBytes)
      break;
    const size_t n =
        std::min({in.size() - *consumed, kMaxPlainBytes, room - RecordCipher::kOverheadBytes});
    if (!writer_->seal(kAppDataType, in.subspan(*consumed, n), out + written)) {
      fail(kInternalError, "cannot seal a record");
      return 0;
    }
    written += n + RecordCipher::kOverheadBytes;
    *consumed += n;
  }
  return written;
}

size_t Tls13Stream::sealAlert(char* out) {
  if (final_ == Status::kError && alert_ == 0)
    return 0;  // the peer's fatal alert: nothing is sent after it
  const bool fatal = final_ == Status::kError;
  const char alert[2] = {static_cast<char>(fatal ? 2 : 1), static_cast<char>(fatal ? alert_ : 0)};
  if (!writer_->seal(kAlertType, alert, out))
    return 0;
  return kAlertRecordBytes;
}

}  // namespace meshid::proxy
