#include "ca/authn/mtls_authenticator.h"

#include <fmt/format.h>

#include "pki/certificate.h"
#include "pki/chain.h"

namespace meshid::ca {

Result<std::optional<Identity>> MtlsAuthenticator::authenticate(
    const CallerCredentials& credentials) {
  if (!credentials.peer_certificate_pem || credentials.bearer_token) {
    return std::optional<Identity>();
  }
  auto certs = pki::parseCertificatesPem(*credentials.peer_certificate_pem);
  if (!certs.ok()) {
    return Error::unauthenticated("client certificate: " + certs.error().message);
  }
  auto id = pki::checkSvidLeaf(certs->front().get());
  if (!id.ok()) {
    return Error::unauthenticated("client certificate: " + id.error().message);
  }
  if (!(id->trustDomain() == trust_domain_)) {
    return Error::unauthenticated(fmt::format(
        "client certificate is for trust domain {}, this CA serves {}",
        id->trustDomain().name(), trust_domain_.name()));
  }
  return std::optional<Identity>(Identity{std::move(id).value(), "mtls", ""});
}

}  // namespace meshid::ca
