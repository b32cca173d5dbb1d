#include "ca/authn/k8s_jwt_authenticator.h"

#include <fmt/format.h>

#include "ca/join_token.h"

namespace meshid::ca {

Result<std::optional<Identity>> KubernetesJwtAuthenticator::authenticate(
    const CallerCredentials& credentials) {
  if (!credentials.bearer_token || credentials.bearer_token->starts_with(kJoinTokenPrefix)) {
    return std::optional<Identity>();
  }
  if (credentials.bearer_token->empty()) {
    return Error::unauthenticated("authorization header is not \"Bearer <token>\"");
  }
  MESHID_ASSIGN_OR_RETURN(std::shared_ptr<const pki::Jwks> jwks, jwks_->current());
  pki::JwtVerifyOptions opts{.issuer = issuer_, .audiences = audiences_, .now = clock_.now()};
  auto verified = pki::verifyJwt(*credentials.bearer_token, *jwks, opts);
  if (!verified.ok()) {
    // The JWT module words this case "unknown key id"; the cluster may have
    // rotated its signing keys, so fetch the JWKS again (rate-limited).
    if (verified.error().message.find("unknown key id") != std::string::npos) {
      jwks_->refreshSoon();
    }
    return Error::unauthenticated("service-account token refused: " + verified.error().message);
  }
  std::string ns, sa;
  if (verified->kubernetes) {
    ns = verified->kubernetes->namespace_name;
    sa = verified->kubernetes->service_account_name;
  } else if (verified->subject.starts_with("system:serviceaccount:")) {
    std::string_view rest = std::string_view(verified->subject).substr(22);
    size_t colon = rest.find(':');
    if (colon != std::string_view::npos) {
      ns = rest.substr(0, colon);
      sa = rest.substr(colon + 1);
    }
  }
  if (ns.empty() || sa.empty()) {
    return Error::unauthenticated(
        "token names no service account (no kubernetes.io claim, sub is not "
        "system:serviceaccount:<namespace>:<name>)");
  }
  auto id = pki::SpiffeId::forServiceAccount(trust_domain_, ns, sa);
  if (!id.ok()) {
    return Error::unauthenticated("token's service account is not a valid identity: " +
                                  id.error().message);
  }
  return std::optional<Identity>(Identity{std::move(id).value(), "jwt", verified->kid});
}

}  // namespace meshid::ca
