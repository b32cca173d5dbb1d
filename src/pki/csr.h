// Certificate signing requests: build one for a SPIFFE ID, parse and check
// one from a caller.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "pki/ossl.h"
#include "pki/spiffe_id.h"

namespace meshid::pki {

// An RSA-8192 CSR with a long SAN is under 3 KiB of DER; anything much larger
// is hostile or a mistake.
constexpr size_t kMaxCsrBytes = 16 * 1024;

struct ParsedCsr {
  X509ReqPtr request;
  EvpPkeyPtr public_key;
  std::string subject;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
  std::vector<std::string> email_sans;
};

// PEM (exactly one CERTIFICATE REQUEST block) or DER. Refuses oversized input,
// trailing data, a bad self-signature (no proof of possession), weak keys, and
// requests with more than one subjectAltName extension.
Result<ParsedCsr> parseCsr(std::string_view pem_or_der);

// The request's SPIFFE ID: exactly one URI SAN, a valid SPIFFE ID with a path.
Result<SpiffeId> csrSpiffeId(const ParsedCsr& csr);

// Empty subject, the SPIFFE ID as the only (critical) URI SAN, signed by key.
Result<X509ReqPtr> buildCsr(const EVP_PKEY* key, const SpiffeId& id);

std::string csrToPem(const X509_REQ* req);

}  // namespace meshid::pki
