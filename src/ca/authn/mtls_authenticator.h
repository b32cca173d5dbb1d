#pragma once

#include <mutex>
#include <string>
#include <unordered_map>

#include "ca/authenticator.h"
#include "common/clock.h"
#include "pki/spiffe_id.h"

namespace meshid::ca {

// A caller whose client certificate the TLS layer verified against the trust
// bundle renews its own identity: the leaf must be an X.509-SVID of this trust
// domain. Only used when no bearer token was sent (a token says more about
// who is asking: it is checked first).
//
// The identity read from a certificate is remembered (keyed by the exact PEM
// the TLS layer verified) until the certificate expires: an agent renews many
// workload identities over one connection with its own SVID, and parsing the
// same certificate on every call cost more than signing (OpenSSL 3.0's
// decoder).
class MtlsAuthenticator final : public Authenticator {
 public:
  MtlsAuthenticator(pki::TrustDomain trust_domain, const Clock& clock)
      : trust_domain_(std::move(trust_domain)), clock_(clock) {}

  std::string_view name() const override { return "mtls"; }
  Result<std::optional<Identity>> authenticate(const CallerCredentials& credentials) override;

 private:
  static constexpr size_t kMaxCached = 4096;
  struct Cached {
    Identity identity;
    SystemTime not_after;
  };
  const pki::TrustDomain trust_domain_;
  const Clock& clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Cached> cache_;  // guarded by mu_
};

}  // namespace meshid::ca
