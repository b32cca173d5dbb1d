// Certificate signing requests: build one for a SPIFFE ID, parse and check
// one from a caller.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "pki/ossl.h"
#include "pki/public_key.h"
#include "pki/spiffe_id.h"

namespace meshid::pki {

// An RSA-8192 CSR with a long SAN is under 3 KiB of DER; anything much larger
// is hostile or a mistake.
constexpr size_t kMaxCsrBytes = 16 * 1024;

struct ParsedCsr {
  std::string spki_der;  // the SubjectPublicKeyInfo exactly as sent (copied into the leaf)
  PublicKeyInfo key;     // its type; publicKeyFromSpki(spki_der) makes the key itself
  std::string subject;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
  std::vector<std::string> email_sans;
};

// PEM (exactly one CERTIFICATE REQUEST block) or DER. Refuses oversized input,
// trailing data, anything but strict DER, a bad self-signature (no proof of
// possession), weak keys, unsupported key or signature algorithms, and
// requests with more than one subjectAltName extension.
// Decoded with the DER reader, not d2i_X509_REQ (10-100x slower in OpenSSL
// 3.0); tests/fuzz/fuzz_csr.cc checks that what this accepts OpenSSL accepts.
// A CA parsing many passes its thread's `verifier` (reused keys and contexts);
// without one, a fresh one is used.
Result<ParsedCsr> parseCsr(std::string_view pem_or_der, SignatureVerifier* verifier = nullptr);

// The request's SPIFFE ID: exactly one URI SAN, a valid SPIFFE ID with a path.
Result<SpiffeId> csrSpiffeId(const ParsedCsr& csr);

// Empty subject, the SPIFFE ID as the only (critical) URI SAN, signed by key.
Result<X509ReqPtr> buildCsr(const EVP_PKEY* key, const SpiffeId& id);

std::string csrToPem(const X509_REQ* req);

}  // namespace meshid::pki
