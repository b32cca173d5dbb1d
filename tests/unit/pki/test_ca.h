// A root + intermediate made in memory with the project's own API, plus a raw
// OpenSSL certificate/CSR crafter for the shapes the project refuses to make
// (CA leaves, two URI SANs, cert-manager CA certificates, ...).
#pragma once

#include <openssl/pem.h>
#include <openssl/rand.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "pki/chain.h"
#include "pki/issuance.h"
#include "pki/key.h"
#include "pki/memory_key_signer.h"
#include "pki/ossl.h"
#include "pki/spiffe_id.h"
#include "unit/common/test_util.h"

namespace meshid::pki::testing {

using ::meshid::testing::orThrow;
using namespace std::chrono_literals;

// Fixed "now" for every PKI test (2026-09-21T...Z): nothing reads the clock.
inline SystemTime t0() {
  return fromUnixSeconds(1'790'000'000);
}

constexpr Seconds kDay{86400};

inline EvpPkeyPtr newKey(KeyType type = KeyType::kEcP256) {
  return orThrow(generateKey(type), "generate key");
}

// Keys the project refuses to generate; made directly with OpenSSL.
inline EvpPkeyPtr newRsaKey(size_t bits) {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits);
  if (k == nullptr) {
    throw std::runtime_error("RSA keygen failed");
  }
  return EvpPkeyPtr(k);
}
inline EvpPkeyPtr newEcKey(const char* curve) {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve);
  if (k == nullptr) {
    throw std::runtime_error(std::string("EC keygen failed for ") + curve);
  }
  return EvpPkeyPtr(k);
}

// `openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout`: a P-256
// key whose curve is spelled out instead of named (throwaway test key).
inline constexpr std::string_view kExplicitCurveKeyPem = R"(-----BEGIN EC PRIVATE KEY-----
MIIBaAIBAQQgK0gy95qeFeTLiRpHm9YiB9lK6T1VExSujmauuCf7atKggfowgfcC
AQEwLAYHKoZIzj0BAQIhAP////8AAAABAAAAAAAAAAAAAAAA////////////////
MFsEIP////8AAAABAAAAAAAAAAAAAAAA///////////////8BCBaxjXYqjqT57Pr
vVV2mIa8ZR0GsMxTsPY7zjw+J9JgSwMVAMSdNgiG5wSTamZ44ROdJreBn36QBEEE
axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpZP40Li/hp/m47n60p8D54W
K84zV2sxXs7LtkBoN79R9QIhAP////8AAAAA//////////+85vqtpxeehPO5ysL8
YyVRAgEBoUQDQgAEJRcfuwAH/uJA7qtafmxK5vMwoRqvzvAY3LdVS71RA2bjk1iY
NPBL1yWaazWbk5cDZm3qNAsBunHUA/0ydaVVHQ==
-----END EC PRIVATE KEY-----
)";

inline EvpPkeyPtr explicitCurveKey() {
  BioPtr bio(
      BIO_new_mem_buf(kExplicitCurveKeyPem.data(), static_cast<int>(kExplicitCurveKeyPem.size())));
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    throw std::runtime_error("cannot read explicit-curve test key");
  }
  return key;
}

inline std::unique_ptr<MemoryKeySigner> signerFor(const EvpPkeyPtr& key) {
  return orThrow(MemoryKeySigner::create(shareKey(key.get())), "signer");
}

inline SpiffeId spiffeId(std::string_view s) {
  return orThrow(SpiffeId::parse(s), "spiffe id");
}

inline std::vector<X509Ptr> certList(std::initializer_list<const X509*> certs) {
  std::vector<X509Ptr> out;
  for (const X509* c : certs) {
    out.push_back(shareX509(const_cast<X509*>(c)));
  }
  return out;
}

// Verification at `at`; X.509-SVID leaf checks unless told otherwise.
inline ChainVerifyOptions verifyAt(SystemTime at, bool svid_leaf_checks = true) {
  ChainVerifyOptions options;
  options.at = at;
  options.svid_leaf_checks = svid_leaf_checks;
  return options;
}

inline const EVP_MD* digestFor(const EVP_PKEY* key) {
  return EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
}

struct TestCaOptions {
  std::string trust_domain = "example.org";
  SystemTime now = t0();
  Seconds root_lifetime = 3650 * kDay;
  Seconds intermediate_lifetime = 365 * kDay;
  std::optional<int> intermediate_path_length = 0;
  KeyType key_type = KeyType::kEcP256;
  std::string root_name = "meshid root";
  std::string intermediate_name = "meshid intermediate";
};

struct TestCa {
  TrustDomain trust_domain;
  EvpPkeyPtr root_key;
  std::unique_ptr<MemoryKeySigner> root_signer;
  X509Ptr root;
  EvpPkeyPtr intermediate_key;
  std::unique_ptr<MemoryKeySigner> intermediate_signer;
  X509Ptr intermediate;

  static TestCa create(const TestCaOptions& o = {}) {
    TrustDomain td = orThrow(TrustDomain::parse(o.trust_domain), "trust domain");
    TestCa ca{td, newKey(o.key_type), nullptr, nullptr, newKey(o.key_type), nullptr, nullptr};
    ca.root_signer = signerFor(ca.root_key);
    ca.intermediate_signer = signerFor(ca.intermediate_key);
    ca.root = orThrow(issueRootCertificate({.public_key = ca.root_key.get(),
                                            .trust_domain = td,
                                            .common_name = o.root_name,
                                            .lifetime = o.root_lifetime,
                                            .now = o.now,
                                            .path_length = std::nullopt},
                                           *ca.root_signer),
                      "root");
    ca.intermediate =
        orThrow(issueIntermediateCertificate({.public_key = ca.intermediate_key.get(),
                                              .trust_domain = td,
                                              .common_name = o.intermediate_name,
                                              .lifetime = o.intermediate_lifetime,
                                              .now = o.now,
                                              .path_length = o.intermediate_path_length},
                                             ca.root.get(), *ca.root_signer),
                "intermediate");
    return ca;
  }

  Result<X509Ptr> tryIssueLeaf(const EVP_PKEY* key, std::string_view id, Seconds lifetime = 1h,
                               SystemTime now = t0()) const {
    SvidRequest req{.public_key = key, .spiffe_id = spiffeId(id), .lifetime = lifetime, .now = now};
    return issueX509Svid(req, intermediate.get(), *intermediate_signer);
  }
  X509Ptr issueLeaf(const EVP_PKEY* key, std::string_view id, Seconds lifetime = 1h,
                    SystemTime now = t0()) const {
    return orThrow(tryIssueLeaf(key, id, lifetime, now), "leaf");
  }

  std::vector<X509Ptr> roots() const { return certList({root.get()}); }
  std::vector<X509Ptr> intermediates() const { return certList({intermediate.get()}); }
};

// A certificate built field by field with raw OpenSSL. Extensions use
// OpenSSL's config syntax ("critical,CA:TRUE", "URI:spiffe://a/b,DNS:x").
struct CertSpec {
  const EVP_PKEY* public_key = nullptr;
  std::vector<std::pair<std::string, std::string>> subject = {};  // {"CN", "x"}; may be empty
  SystemTime not_before = t0() - 1h;
  SystemTime not_after = t0() + kDay;
  std::vector<std::pair<int, std::string>> extensions = {};
};

// Signed by issuer_key; issuer == nullptr makes it self-signed. Adds SKI, and
// AKI when there is an issuer certificate.
inline X509Ptr craftCertificate(const CertSpec& spec, const X509* issuer,
                                const EVP_PKEY* issuer_key) {
  static uint64_t next_serial = 0x1000;
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), next_serial++);
  X509NamePtr name(X509_NAME_new());
  for (const auto& [field, value] : spec.subject) {
    X509_NAME_add_entry_by_txt(name.get(), field.c_str(), MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(value.data()),
                               static_cast<int>(value.size()), -1, 0);
  }
  X509_set_subject_name(cert.get(), name.get());
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name.get());
  X509_set_pubkey(cert.get(), const_cast<EVP_PKEY*>(spec.public_key));
  ASN1_TIME_set(X509_getm_notBefore(cert.get()),
                std::chrono::system_clock::to_time_t(spec.not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                std::chrono::system_clock::to_time_t(spec.not_after));

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? const_cast<X509*>(issuer) : cert.get(), cert.get(), nullptr,
                 nullptr, 0);
  std::vector<std::pair<int, std::string>> exts = spec.extensions;
  exts.emplace_back(NID_subject_key_identifier, "hash");
  if (issuer != nullptr) {
    exts.emplace_back(NID_authority_key_identifier, "keyid:always");
  }
  for (const auto& [nid, value] : exts) {
    X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
    if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) {
      throw std::runtime_error("cannot add extension " + value);
    }
  }
  if (X509_sign(cert.get(), const_cast<EVP_PKEY*>(issuer_key), digestFor(issuer_key)) <= 0) {
    throw std::runtime_error("cannot sign crafted certificate");
  }
  return cert;
}

// A CSR signed by key carrying each of san_extensions as its own
// subjectAltName extension (OpenSSL config syntax).
inline X509ReqPtr craftCsr(const EVP_PKEY* key, const std::vector<std::string>& san_extensions,
                           std::vector<std::pair<std::string, std::string>> subject = {}) {
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_REQ_set_pubkey(req.get(), const_cast<EVP_PKEY*>(key));
  X509NamePtr name(X509_NAME_new());
  for (const auto& [field, value] : subject) {
    X509_NAME_add_entry_by_txt(name.get(), field.c_str(), MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(value.data()),
                               static_cast<int>(value.size()), -1, 0);
  }
  X509_REQ_set_subject_name(req.get(), name.get());
  if (!san_extensions.empty()) {
    ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
    for (const auto& value : san_extensions) {
      X509_EXTENSION* ext =
          X509V3_EXT_nconf_nid(nullptr, nullptr, NID_subject_alt_name, value.c_str());
      if (ext == nullptr) {
        throw std::runtime_error("cannot make subjectAltName " + value);
      }
      sk_X509_EXTENSION_push(exts.get(), ext);
    }
    if (X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
      throw std::runtime_error("cannot add CSR extensions");
    }
  }
  if (X509_REQ_sign(req.get(), const_cast<EVP_PKEY*>(key), digestFor(key)) <= 0) {
    throw std::runtime_error("cannot sign crafted CSR");
  }
  return req;
}

inline std::string reqToDer(const X509_REQ* req) {
  unsigned char* der = nullptr;
  int len = i2d_X509_REQ(req, &der);
  if (len <= 0) {
    throw std::runtime_error("cannot encode CSR");
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

inline std::string certToDer(const X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0) {
    throw std::runtime_error("cannot encode certificate");
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

inline std::string certToPem(const X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// The extension with nid, or nullptr; borrowed from cert.
inline X509_EXTENSION* findExtension(const X509* cert, int nid) {
  int at = X509_get_ext_by_NID(cert, nid, -1);
  return at < 0 ? nullptr : X509_get_ext(cert, at);
}

}  // namespace meshid::pki::testing
