#pragma once

#include "ca/authenticator.h"
#include "pki/spiffe_id.h"

namespace meshid::ca {

// A caller whose client certificate the TLS layer verified against the trust
// bundle renews its own identity: the leaf must be an X.509-SVID of this trust
// domain. Only used when no bearer token was sent (a token says more about
// who is asking: it is checked first).
class MtlsAuthenticator final : public Authenticator {
 public:
  explicit MtlsAuthenticator(pki::TrustDomain trust_domain)
      : trust_domain_(std::move(trust_domain)) {}

  std::string_view name() const override { return "mtls"; }
  Result<std::optional<Identity>> authenticate(const CallerCredentials& credentials) override;

 private:
  const pki::TrustDomain trust_domain_;
};

}  // namespace meshid::ca
