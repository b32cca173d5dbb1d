// Parsing and describing X.509 certificates and PEM bundles.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "pki/ossl.h"

namespace meshid::pki {

constexpr size_t kMaxBundleBytes = 1024 * 1024;
constexpr size_t kMaxBundleCertificates = 100;

// Every PEM block must be a CERTIFICATE that parses; text between blocks is
// ignored, as OpenSSL does. At least one certificate is required.
Result<std::vector<X509Ptr>> parseCertificatesPem(std::string_view pem);
// One DER certificate; trailing bytes are refused.
Result<X509Ptr> parseCertificateDer(std::span<const uint8_t> der);
// PEM bundle, or a single DER certificate when the input has no PEM marker.
Result<std::vector<X509Ptr>> parseCertificates(std::string_view data);

// "-----BEGIN <label>-----" + base64 in 64-column lines + "-----END <label>-----".
std::string derToPem(std::string_view der, std::string_view label);

std::string certificateToPem(const X509* cert);
std::string certificatesToPem(const std::vector<X509Ptr>& certs);
std::string certificateToDer(const X509* cert);

SystemTime notBefore(const X509* cert);
SystemTime notAfter(const X509* cert);
std::vector<std::string> uriSans(const X509* cert);
bool isCa(const X509* cert);
bool isSelfSigned(const X509* cert);          // issuer == subject and its own key verifies it
std::string subjectString(const X509* cert);  // RFC 2253, e.g. "CN=x,O=example.org"
std::string issuerString(const X509* cert);
std::string serialHex(const X509* cert);          // lowercase, no separators
std::string sha256Fingerprint(const X509* cert);  // "AB:CD:..."

struct CertificateInfo {
  std::string subject;
  std::string issuer;
  std::optional<std::string> spiffe_id;  // the first URI SAN that is a valid SPIFFE ID
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
  std::vector<std::string> email_sans;
  std::string serial_hex;
  SystemTime not_before;
  SystemTime not_after;
  std::string key;  // describeKey()
  std::string sha256_fingerprint;
  bool is_ca = false;
  std::optional<long> path_length;
  bool self_signed = false;
  std::vector<std::string> key_usage;      // "digitalSignature", "keyCertSign", ...
  std::vector<std::string> ext_key_usage;  // "serverAuth", "clientAuth", ...
};

CertificateInfo describeCertificate(const X509* cert);

}  // namespace meshid::pki
