// Building certificates: X.509-SVID leaves exactly as PROTOCOLS.md §4 says,
// and the CA certificates meshid makes (roots and intermediates).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "pki/key_signer.h"
#include "pki/ossl.h"
#include "pki/spiffe_id.h"

namespace meshid::pki {

// How far notBefore is backdated for clock skew: min(60 s, lifetime / 10).
Seconds backdateFor(Seconds lifetime);

struct SvidRequest {
  const EVP_PKEY* public_key = nullptr;  // the workload's (from its CSR)
  SpiffeId spiffe_id;                    // must have a path
  Seconds lifetime{0};                   // > 0
  SystemTime now;
  // Extra SANs beside the one URI (the X.509-SVID profile allows them). Only
  // meshid's own server certificates use these; workload CSRs may not ask.
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
};

// A leaf signed by ca_cert's key (held by ca_signer): random positive 127-bit
// serial, empty subject, critical URI SAN, CA:FALSE, KU digitalSignature
// (+keyEncipherment for RSA keys), EKU serverAuth+clientAuth, SKI/AKI;
// notAfter = now + lifetime clamped to ca_cert's notAfter.
// Fails FAILED_PRECONDITION when the CA certificate is expired, not yet valid,
// not a CA or does not match the signer's key.
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
Result<X509Ptr> issueRootCertificate(const CaCertificateRequest& request,
                                     const KeySigner& signer);

// Intermediate under parent (signed by parent_signer); notAfter is clamped to
// the parent's; refused when the parent's path length forbids another CA.
Result<X509Ptr> issueIntermediateCertificate(const CaCertificateRequest& request,
                                             const X509* parent, const KeySigner& parent_signer);

}  // namespace meshid::pki
