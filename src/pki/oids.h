// DER contents (no tag, no length) of the object identifiers the hand-written
// DER code reads and writes. sv literals throughout: several contain a NUL
// byte, where a plain literal's string_view would stop.
#pragma once

#include <string_view>

namespace meshid::pki::oid {

using namespace std::string_view_literals;

// Keys
inline constexpr std::string_view kEcPublicKey = "\x2a\x86\x48\xce\x3d\x02\x01"sv;
inline constexpr std::string_view kP256 = "\x2a\x86\x48\xce\x3d\x03\x01\x07"sv;
inline constexpr std::string_view kP384 = "\x2b\x81\x04\x00\x22"sv;
inline constexpr std::string_view kP521 = "\x2b\x81\x04\x00\x23"sv;
inline constexpr std::string_view kRsaEncryption = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"sv;
inline constexpr std::string_view kEd25519 = "\x2b\x65\x70"sv;

// Signature algorithms
inline constexpr std::string_view kEcdsaSha256 = "\x2a\x86\x48\xce\x3d\x04\x03\x02"sv;
inline constexpr std::string_view kEcdsaSha384 = "\x2a\x86\x48\xce\x3d\x04\x03\x03"sv;
inline constexpr std::string_view kEcdsaSha512 = "\x2a\x86\x48\xce\x3d\x04\x03\x04"sv;
inline constexpr std::string_view kRsaSha256 = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b"sv;
inline constexpr std::string_view kRsaSha384 = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c"sv;
inline constexpr std::string_view kRsaSha512 = "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d"sv;

// CSR attributes and certificate extensions
inline constexpr std::string_view kExtensionRequest = "\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e"sv;
inline constexpr std::string_view kBasicConstraints = "\x55\x1d\x13"sv;
inline constexpr std::string_view kKeyUsage = "\x55\x1d\x0f"sv;
inline constexpr std::string_view kExtKeyUsage = "\x55\x1d\x25"sv;
inline constexpr std::string_view kSubjectKeyId = "\x55\x1d\x0e"sv;
inline constexpr std::string_view kAuthorityKeyId = "\x55\x1d\x23"sv;
inline constexpr std::string_view kSubjectAltName = "\x55\x1d\x11"sv;
inline constexpr std::string_view kServerAuth = "\x2b\x06\x01\x05\x05\x07\x03\x01"sv;
inline constexpr std::string_view kClientAuth = "\x2b\x06\x01\x05\x05\x07\x03\x02"sv;

}  // namespace meshid::pki::oid
