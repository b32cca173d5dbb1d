#include "pki/certificate.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <cstring>
#include <ctime>

#include "pki/general_names.h"
#include "pki/key.h"
#include "pki/ossl_error.h"
#include "pki/spiffe_id.h"

namespace meshid::pki {
namespace {

SystemTime asn1ToTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    drainOpensslErrors();
    return SystemTime{};
  }
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string nameString(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

SubjectAltNames collectSans(const X509* cert) {
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  drainOpensslErrors();
  return collectSubjectAltNames(names.get());
}

Result<X509Ptr> derToX509(const unsigned char* data, long len) {
  const unsigned char* p = data;
  X509* x = d2i_X509(nullptr, &p, len);
  if (x == nullptr) {
    return opensslError(Code::kInvalidArgument, "malformed certificate");
  }
  X509Ptr owned(x);
  if (p != data + len) {
    return Error::invalidArgument("certificate has trailing bytes after its DER encoding");
  }
  // Strict DER: d2i_X509 takes some encodings that are not DER (a signature
  // BIT STRING whose unused bits are not zero, for one) and writes them back
  // differently. What does not re-encode to its own bytes is refused, so the
  // bytes we hash, pin and pass on are the bytes that were signed and sent.
  unsigned char* again = nullptr;
  int again_len = i2d_X509(owned.get(), &again);
  bool same = again_len == len && std::memcmp(again, data, static_cast<size_t>(len)) == 0;
  OPENSSL_free(again);
  if (!same) {
    drainOpensslErrors();
    return Error::invalidArgument("certificate is not DER: it does not re-encode to its own bytes");
  }
  return owned;
}

}  // namespace

Result<std::vector<X509Ptr>> parseCertificatesPem(std::string_view pem) {
  if (pem.size() > kMaxBundleBytes) {
    return Error::invalidArgument(
        fmt::format("certificate bundle is larger than the limit of {} bytes", kMaxBundleBytes));
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  for (;;) {
    char* name_raw = nullptr;
    char* header_raw = nullptr;
    unsigned char* data_raw = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name_raw, &header_raw, &data_raw, &len) != 1) {
      unsigned long err = ERR_peek_last_error();
      bool at_end = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
      drainOpensslErrors();
      if (at_end) {
        break;
      }
      return Error::invalidArgument(
          fmt::format("malformed PEM block after certificate {}", certs.size()));
    }
    OsslStringPtr name(name_raw), header(header_raw);
    OsslBytesPtr data(data_raw);
    if (std::strcmp(name.get(), "CERTIFICATE") != 0 &&
        std::strcmp(name.get(), "TRUSTED CERTIFICATE") != 0) {
      // Never echo the block: it may be a key.
      return Error::invalidArgument(
          fmt::format("unexpected PEM block \"{}\" in a certificate bundle",
                      std::string(name.get()).substr(0, 40)));
    }
    if (certs.size() >= kMaxBundleCertificates) {
      return Error::invalidArgument(
          fmt::format("certificate bundle has more than {} certificates", kMaxBundleCertificates));
    }
    auto cert = derToX509(data.get(), len);
    if (!cert.ok()) {
      return cert.error().wrap(fmt::format("certificate {} of the bundle", certs.size() + 1));
    }
    certs.push_back(std::move(cert).value());
  }
  if (certs.empty()) {
    return Error::invalidArgument("no PEM certificate found");
  }
  return certs;
}

Result<X509Ptr> parseCertificateDer(std::span<const uint8_t> der) {
  if (der.empty()) {
    return Error::invalidArgument("empty certificate");
  }
  if (der.size() > kMaxBundleBytes) {
    return Error::invalidArgument("certificate is larger than the limit");
  }
  return derToX509(der.data(), static_cast<long>(der.size()));
}

Result<std::vector<X509Ptr>> parseCertificates(std::string_view data) {
  if (data.find("-----BEGIN") != std::string_view::npos) {
    return parseCertificatesPem(data);
  }
  MESHID_ASSIGN_OR_RETURN(
      X509Ptr cert,
      parseCertificateDer({reinterpret_cast<const uint8_t*>(data.data()), data.size()}));
  std::vector<X509Ptr> out;
  out.push_back(std::move(cert));
  return out;
}

std::string derToPem(std::string_view der, std::string_view label) {
  // Sized once: 4 characters per 3 bytes, a newline per line of 64, and the
  // BEGIN and END lines (32 characters and the label twice).
  size_t lines = (der.size() + 47) / 48;
  std::string out;
  out.reserve((der.size() + 2) / 3 * 4 + lines + 2 * label.size() + 32);
  out.append("-----BEGIN ").append(label).append("-----\n");
  unsigned char line[65];
  for (size_t off = 0; off < der.size(); off += 48) {
    size_t n = std::min<size_t>(48, der.size() - off);
    int len = EVP_EncodeBlock(line, reinterpret_cast<const unsigned char*>(der.data()) + off,
                              static_cast<int>(n));
    out.append(reinterpret_cast<char*>(line), static_cast<size_t>(len));
    out.push_back('\n');
  }
  out.append("-----END ").append(label).append("-----\n");
  return out;
}

std::string certificateToPem(const X509* cert) {
  return derToPem(certificateToDer(cert), "CERTIFICATE");
}

std::string certificatesToPem(const std::vector<X509Ptr>& certs) {
  std::string out;
  for (const auto& c : certs) {
    out += certificateToPem(c.get());
  }
  return out;
}

std::string certificateToDer(const X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0) {
    drainOpensslErrors();
    return {};
  }
  OsslBytesPtr owned(der);
  return std::string(reinterpret_cast<char*>(der), static_cast<size_t>(len));
}

SystemTime notBefore(const X509* cert) {
  return asn1ToTime(X509_get0_notBefore(cert));
}
SystemTime notAfter(const X509* cert) {
  return asn1ToTime(X509_get0_notAfter(cert));
}

std::vector<std::string> uriSans(const X509* cert) {
  return collectSans(cert).uri;
}

bool isCa(const X509* cert) {
  // X509_check_ca also honours v1 roots; meshid means basicConstraints CA:TRUE.
  return (X509_get_extension_flags(const_cast<X509*>(cert)) & EXFLAG_CA) != 0;
}

bool isSelfSigned(const X509* cert) {
  // A yes/no question: a key that does not decode (or a bad signature) is a
  // no, and its queued OpenSSL error is not left for the next caller.
  bool yes = X509_self_signed(const_cast<X509*>(cert), 1) == 1;
  drainOpensslErrors();
  return yes;
}

std::string subjectString(const X509* cert) {
  return nameString(X509_get_subject_name(cert));
}
std::string issuerString(const X509* cert) {
  return nameString(X509_get_issuer_name(cert));
}

std::string serialHex(const X509* cert) {
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) {
    drainOpensslErrors();
    return {};
  }
  OsslStringPtr hex(BN_bn2hex(bn.get()));
  std::string out(hex.get());
  for (auto& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string sha256Fingerprint(const X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert, EVP_sha256(), md, &len);
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += fmt::format("{}{:02X}", i ? ":" : "", md[i]);
  }
  return out;
}

CertificateInfo describeCertificate(const X509* cert) {
  X509* x = const_cast<X509*>(cert);  // OpenSSL's getters take non-const for caching
  CertificateInfo info;
  info.subject = subjectString(cert);
  info.issuer = issuerString(cert);
  SubjectAltNames sans = collectSans(cert);
  for (const auto& uri : sans.uri) {
    if (!info.spiffe_id && SpiffeId::parse(uri).ok()) {
      info.spiffe_id = uri;
    }
  }
  info.uri_sans = std::move(sans.uri);
  info.dns_sans = std::move(sans.dns);
  info.ip_sans = std::move(sans.ip);
  info.email_sans = std::move(sans.email);
  info.serial_hex = serialHex(cert);
  info.not_before = notBefore(cert);
  info.not_after = notAfter(cert);
  info.key = describeKey(X509_get0_pubkey(cert));
  info.sha256_fingerprint = sha256Fingerprint(cert);
  info.is_ca = isCa(cert);
  long pathlen = X509_get_pathlen(x);
  if (info.is_ca && pathlen >= 0) {
    info.path_length = pathlen;
  }
  info.self_signed = isSelfSigned(cert);
  uint32_t ku = X509_get_key_usage(x);
  if (ku != UINT32_MAX) {
    const std::pair<uint32_t, const char*> names[] = {{KU_DIGITAL_SIGNATURE, "digitalSignature"},
                                                      {KU_NON_REPUDIATION, "contentCommitment"},
                                                      {KU_KEY_ENCIPHERMENT, "keyEncipherment"},
                                                      {KU_DATA_ENCIPHERMENT, "dataEncipherment"},
                                                      {KU_KEY_AGREEMENT, "keyAgreement"},
                                                      {KU_KEY_CERT_SIGN, "keyCertSign"},
                                                      {KU_CRL_SIGN, "cRLSign"}};
    for (const auto& [bit, name] : names) {
      if (ku & bit) {
        info.key_usage.push_back(name);
      }
    }
  }
  uint32_t xku = X509_get_extended_key_usage(x);
  if (xku != UINT32_MAX) {
    if (xku & XKU_SSL_SERVER)
      info.ext_key_usage.push_back("serverAuth");
    if (xku & XKU_SSL_CLIENT)
      info.ext_key_usage.push_back("clientAuth");
    if (xku & XKU_CODE_SIGN)
      info.ext_key_usage.push_back("codeSigning");
    if (xku & XKU_SMIME)
      info.ext_key_usage.push_back("emailProtection");
  }
  drainOpensslErrors();
  return info;
}

}  // namespace meshid::pki
