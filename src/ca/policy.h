// What an authenticated caller may have signed (PROTOCOLS.md §1, istio-csr's
// rules): the CSR's only SAN is the caller's own SPIFFE ID (or one an admin
// delegated to that caller, an agent), the key type is allowed, the lifetime
// is within bounds.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "ca/identity.h"
#include "common/clock.h"
#include "common/result.h"
#include "pki/csr.h"
#include "pki/key.h"

namespace meshid::ca {

// An agent that may request certificates for the workloads on its host
// (issue 4): the CA admin grants an agent identity a list of SPIFFE IDs, each
// exact or, ending in '/', a prefix of whole path segments.
struct Delegation {
  pki::SpiffeId agent;
  std::vector<std::string> may_request;

  bool allows(const pki::SpiffeId& id) const;
};

struct PolicyConfig {
  Seconds default_ttl{24 * 3600};
  Seconds max_ttl{24 * 3600};
  std::set<pki::KeyType> allowed_key_types{pki::KeyType::kEcP256, pki::KeyType::kEcP384,
                                           pki::KeyType::kRsa2048, pki::KeyType::kRsa3072,
                                           pki::KeyType::kRsa4096};
  std::vector<Delegation> delegations;
};

struct SignDecision {
  pki::SpiffeId spiffe_id;
  Seconds ttl;
};

// Why a request was denied, as a bounded metric label.
enum class DenialReason {
  kNoCredential,
  kBadCredential,
  kForeignIdentity,
  kBadCsr,
  kKeyType,
  kBadLifetime,
  kOverloaded,
  kSignerUnavailable,
  kStoreFailed,
};
const char* denialLabel(DenialReason reason);

struct Denial {
  DenialReason reason;
  Error error;
};

// requested_ttl_seconds: 0 = default; negative is INVALID_ARGUMENT. Above the
// max: clamped on the Istio API (its agents always ask for 24h), refused on
// meshid's own.
Result<SignDecision> decide(const Identity& caller, const pki::ParsedCsr& csr,
                            int64_t requested_ttl_seconds, Api api, const PolicyConfig& config,
                            DenialReason* reason);

}  // namespace meshid::ca
