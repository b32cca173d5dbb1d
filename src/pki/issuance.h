// Building certificates: X.509-SVID leaves exactly as PROTOCOLS.md §4 says,
// and the CA certificates meshid makes (roots and intermediates).
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "pki/key_signer.h"
#include "pki/ossl.h"
#include "pki/spiffe_id.h"

namespace meshid::pki {

// How far notBefore is backdated for clock skew: min(60 s, lifetime / 10).
Seconds backdateFor(Seconds lifetime);

// Random bytes for leaf serial numbers, drawn from RAND_bytes 4 KiB at a
// time and handed out in order, each byte once. One RAND_bytes call costs
// about 1 µs alone and 2-3 µs in the loaded CA (DRBG locks, two getpid calls)
// whatever the size; a serial needs 10 bytes. Serials are public, so the
// bytes waiting here are no secret. Not thread-safe: one per signing thread
// at a time (ca::Issuer lends one per batch, beside its SignatureVerifier).
// A fork() would copy the unused bytes into the child; the CA never forks.
class SerialRandom {
 public:
  SerialRandom() = default;
  SerialRandom(const SerialRandom&) = delete;
  SerialRandom& operator=(const SerialRandom&) = delete;

  // Fills `out` (at most kBufferSize bytes) with bytes never handed out
  // before; INTERNAL when RAND_bytes fails.
  Result<void> fill(std::span<unsigned char> out);

  static constexpr size_t kBufferSize = 4096;

 private:
  std::array<unsigned char, kBufferSize> buffer_{};
  size_t next_ = kBufferSize;  // buffer_[next_..] is unused; empty at first
};

struct SvidRequest {
  const EVP_PKEY* public_key = nullptr;  // the workload's; or, instead:
  // its SubjectPublicKeyInfo DER as a checked CSR carried it (ParsedCsr::
  // spki_der, key strength already checked): copied into the certificate as is.
  std::string_view spki_der;
  SpiffeId spiffe_id;   // must have a path
  Seconds lifetime{0};  // > 0
  SystemTime now;
  // Extra SANs beside the one URI (the X.509-SVID profile allows them). Only
  // meshid's own server certificates use these; workload CSRs may not ask.
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  // Where the serial's random bytes come from; null: RAND_bytes directly.
  // Borrowed for the call; the caller must not share it with another thread.
  SerialRandom* serial_random = nullptr;
};

// Issues X.509-SVIDs under one signing certificate. Everything leaves share
// (issuer name, signature algorithm, authority key identifier, constant
// extensions) is encoded once here; each issue() assembles the DER from those
// pieces and makes one signature (TOOLCHAIN.md §12.1: OpenSSL 3.0's object
// path spends most of its time re-encoding and decoding keys).
// A leaf's serial number, 16 bytes: 0x40 | the issue time in milliseconds
// (6 bytes, big-endian), then 80 random bits. Positive, and ordered by issue
// time, so a table keyed by serial grows at its end.
// The random bytes come from `random`, or from RAND_bytes directly.
Result<std::array<unsigned char, 16>> leafSerial(SystemTime now);
Result<std::array<unsigned char, 16>> leafSerial(SystemTime now, SerialRandom& random);

class SvidIssuer {
 public:
  // FAILED_PRECONDITION unless ca_cert is a CA with keyCertSign whose public
  // key is signer's. Both are borrowed: they must outlive the issuer.
  static Result<std::unique_ptr<SvidIssuer>> create(const X509* ca_cert, const KeySigner& signer);

  struct Leaf {
    std::string der;
    std::string pem;
    std::string serial_hex;  // lowercase
    SystemTime not_before;
    SystemTime not_after;
  };

  // The profile below. FAILED_PRECONDITION when the signing certificate is
  // expired or not yet valid at request.now. Thread-safe.
  Result<Leaf> issue(const SvidRequest& request) const;

  const X509* caCertificate() const { return ca_cert_; }

 private:
  SvidIssuer(const X509* ca_cert, const KeySigner& signer) : ca_cert_(ca_cert), signer_(signer) {}
  const X509* ca_cert_;
  const KeySigner& signer_;
  std::string issuer_name_;       // DER Name
  std::string signature_alg_;     // DER AlgorithmIdentifier
  std::string authority_key_id_;  // DER Extension
  SystemTime ca_not_before_;
  SystemTime ca_not_after_;
};

// A leaf signed by ca_cert's key (held by ca_signer): positive 16-byte serial
// (issue time in ms, then 80 random bits), empty subject, critical URI SAN, CA:FALSE, KU
// digitalSignature
// (+keyEncipherment for RSA keys), EKU serverAuth+clientAuth, SKI/AKI;
// notAfter = now + lifetime clamped to ca_cert's notAfter.
// Fails FAILED_PRECONDITION when the CA certificate is expired, not yet valid,
// not a CA or does not match the signer's key. (SvidIssuer, parsed back into
// an X509 for callers that want the object.)
Result<X509Ptr> issueX509Svid(const SvidRequest& request, const X509* ca_cert,
                              const KeySigner& ca_signer);

struct CaCertificateRequest {
  const EVP_PKEY* public_key = nullptr;  // the new CA's key
  TrustDomain trust_domain;              // O= and the spiffe://<td> URI SAN
  std::string common_name;
  Seconds lifetime{0};
  SystemTime now;
  std::optional<int> path_length;  // unset: no constraint
};

// Self-signed root; request.public_key must be signer's key.
Result<X509Ptr> issueRootCertificate(const CaCertificateRequest& request, const KeySigner& signer);

// Intermediate under parent (signed by parent_signer); notAfter is clamped to
// the parent's; refused when the parent's path length forbids another CA.
Result<X509Ptr> issueIntermediateCertificate(const CaCertificateRequest& request,
                                             const X509* parent, const KeySigner& parent_signer);

}  // namespace meshid::pki
