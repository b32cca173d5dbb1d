#pragma once

#include <memory>

#include "ca/authenticator.h"
#include "ca/authn/jwks_provider.h"
#include "common/clock.h"
#include "pki/jwt.h"

namespace meshid::ca {

// Kubernetes service-account tokens (projected, audience istio-ca by
// default), checked against the cluster's JWKS: signature, iss, aud, exp/nbf
// with skew. Identity: spiffe://<td>/ns/<namespace>/sa/<service-account>.
class KubernetesJwtAuthenticator final : public Authenticator {
 public:
  KubernetesJwtAuthenticator(pki::TrustDomain trust_domain, std::unique_ptr<JwksProvider> jwks,
                             std::string issuer, std::vector<std::string> audiences,
                             const Clock& clock)
      : trust_domain_(std::move(trust_domain)),
        jwks_(std::move(jwks)),
        issuer_(std::move(issuer)),
        audiences_(std::move(audiences)),
        clock_(clock) {}

  std::string_view name() const override { return "kubernetes_jwt"; }
  // Claims every bearer token that is not a join token.
  Result<std::optional<Identity>> authenticate(const CallerCredentials& credentials) override;

 private:
  const pki::TrustDomain trust_domain_;
  std::unique_ptr<JwksProvider> jwks_;
  const std::string issuer_;
  const std::vector<std::string> audiences_;
  const Clock& clock_;
};

}  // namespace meshid::ca
