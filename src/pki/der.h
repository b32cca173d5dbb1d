// A strict DER reader and a few writers, for the paths where OpenSSL 3.0's
// generic decoder costs more than the cryptography (TOOLCHAIN.md §12): CSR
// parsing and leaf certificate building. Every read is bounds-checked; only
// DER is accepted (minimal lengths, no indefinite form, one-byte tags).
// Fuzzed (tests/fuzz/fuzz_csr.cc) against OpenSSL's own parser.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace meshid::pki::der {

using Bytes = std::span<const uint8_t>;

// Tags used here (universal class unless noted).
constexpr uint8_t kBoolean = 0x01;
constexpr uint8_t kInteger = 0x02;
constexpr uint8_t kBitString = 0x03;
constexpr uint8_t kOctetString = 0x04;
constexpr uint8_t kNull = 0x05;
constexpr uint8_t kOid = 0x06;
constexpr uint8_t kUtcTime = 0x17;
constexpr uint8_t kGeneralizedTime = 0x18;
constexpr uint8_t kSequence = 0x30;
constexpr uint8_t kSet = 0x31;
constexpr uint8_t kContext0Constructed = 0xa0;
constexpr uint8_t kContext3Constructed = 0xa3;

struct Tlv {
  uint8_t tag = 0;
  Bytes value;  // the contents
  Bytes whole;  // tag + length + contents
};

class Reader {
 public:
  explicit Reader(Bytes data) : data_(data) {}
  bool empty() const { return pos_ == data_.size(); }
  // The next element, or false (and the reader unchanged) when the input is
  // truncated or not DER.
  bool next(Tlv* out);
  // next() whose tag must be `tag`.
  bool expect(uint8_t tag, Tlv* out);
  // True (and the element consumed) when the next element has this tag.
  bool optional(uint8_t tag, Tlv* out);

 private:
  Bytes data_;
  size_t pos_ = 0;
};

inline bool equals(Bytes a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](uint8_t x, char y) {
           return x == static_cast<uint8_t>(y);
         });
}
inline std::string_view asView(Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline Bytes asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Appends tag + minimal length + content.
void appendTlv(std::string& out, uint8_t tag, std::string_view content);
std::string tlv(uint8_t tag, std::string_view content);

}  // namespace meshid::pki::der
