// Chain verification with reasons a person understands, plus the X.509-SVID
// leaf checks OpenSSL does not make (PROTOCOLS.md §4).
#pragma once

#include <optional>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "pki/ossl.h"
#include "pki/spiffe_id.h"

namespace meshid::pki {

struct ChainVerifyOptions {
  SystemTime at;                        // the moment the chain must be valid at
  std::optional<SpiffeId> expected_id;  // the leaf must carry exactly this ID
  bool svid_leaf_checks = true;         // checkSvidLeaf on the leaf
};

struct VerifiedChain {
  std::vector<X509Ptr> path;  // leaf first, trusted root last
  std::optional<SpiffeId> spiffe_id;
};

// Verifies leaf up to one of roots through intermediates (any order, extras
// ignored). Failures are UNAUTHENTICATED with a reason: expired, not yet
// valid, unknown issuer (missing intermediate or foreign root), bad
// signature, not a CA, wrong SPIFFE ID, or a leaf that is no X.509-SVID.
Result<VerifiedChain> verifyChain(const X509* leaf, const std::vector<X509Ptr>& intermediates,
                                  const std::vector<X509Ptr>& roots,
                                  const ChainVerifyOptions& options);

// A peer leaf as an X.509-SVID validator must judge it: not a CA, no
// keyCertSign/cRLSign, exactly one URI SAN that is a SPIFFE ID with a path.
// Returns that ID. Safe to call from a TLS verify callback.
Result<SpiffeId> checkSvidLeaf(const X509* leaf);

// FAILED_PRECONDITION "private key does not match ..." when they differ.
Result<void> checkKeyMatchesCertificate(const X509* cert, const EVP_PKEY* private_key);

// "leaf spiffe://td/x" or "CA \"CN=...,O=...\"": how messages name a certificate.
std::string certificateLabel(const X509* cert);

}  // namespace meshid::pki
