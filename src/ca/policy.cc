#include "ca/policy.h"

#include <fmt/format.h>

#include "common/duration.h"

namespace meshid::ca {

bool Delegation::allows(const pki::SpiffeId& id) const {
  const std::string& wanted = id.str();
  for (const auto& entry : may_request) {
    if (entry.ends_with('/') ? wanted.starts_with(entry) && wanted.size() > entry.size()
                             : wanted == entry) {
      return true;
    }
  }
  return false;
}

const char* denialLabel(DenialReason reason) {
  switch (reason) {
    case DenialReason::kNoCredential:
      return "no_credential";
    case DenialReason::kBadCredential:
      return "bad_credential";
    case DenialReason::kForeignIdentity:
      return "foreign_identity";
    case DenialReason::kBadCsr:
      return "bad_csr";
    case DenialReason::kKeyType:
      return "key_type";
    case DenialReason::kBadLifetime:
      return "bad_lifetime";
    case DenialReason::kOverloaded:
      return "overloaded";
    case DenialReason::kSignerUnavailable:
      return "signer_unavailable";
    case DenialReason::kStoreFailed:
      return "store_failed";
  }
  return "unknown";
}

Result<SignDecision> decide(const Identity& caller, const pki::ParsedCsr& csr,
                            int64_t requested_ttl_seconds, Api api, const PolicyConfig& config,
                            DenialReason* reason) {
  auto deny = [&](DenialReason r, Error e) {
    *reason = r;
    return e;
  };
  auto id = pki::csrSpiffeId(csr);
  if (!id.ok()) {
    return deny(DenialReason::kBadCsr, id.error());
  }
  if (!csr.dns_sans.empty() || !csr.ip_sans.empty() || !csr.email_sans.empty()) {
    return deny(DenialReason::kBadCsr,
                Error::invalidArgument(
                    "certificate signing request may carry only the SPIFFE ID as a SAN: remove "
                    "its DNS, IP and email SANs"));
  }
  auto delegated = [&] {
    for (const auto& d : config.delegations) {
      if (d.agent == caller.spiffe_id && d.allows(*id))
        return true;
    }
    return false;
  };
  if (!(*id == caller.spiffe_id) && !delegated()) {
    return deny(DenialReason::kForeignIdentity,
                Error::permissionDenied(fmt::format(
                    "caller {} (authenticated by {}) may not request a certificate for {}: it is "
                    "neither the caller's own identity nor delegated to it",
                    caller.spiffe_id.str(), caller.method, id->str())));
  }
  const auto& type = csr.key.type;
  if (!type || !config.allowed_key_types.contains(*type)) {
    return deny(DenialReason::kKeyType,
                Error::invalidArgument(
                    fmt::format("key type {} is not allowed by this CA", csr.key.description)));
  }
  if (requested_ttl_seconds < 0) {
    return deny(DenialReason::kBadLifetime,
                Error::invalidArgument("requested lifetime must not be negative"));
  }
  Seconds ttl = requested_ttl_seconds == 0 ? config.default_ttl : Seconds(requested_ttl_seconds);
  if (ttl > config.max_ttl) {
    if (api == Api::kMeshid) {
      return deny(DenialReason::kBadLifetime,
                  Error::invalidArgument(
                      fmt::format("requested lifetime {} is above this CA's maximum of {}",
                                  formatDuration(ttl), formatDuration(config.max_ttl))));
    }
    ttl = config.max_ttl;
  }
  return SignDecision{std::move(id).value(), ttl};
}

}  // namespace meshid::ca
