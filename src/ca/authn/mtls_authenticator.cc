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
  const std::string& pem = *credentials.peer_certificate_pem;
  SystemTime now = clock_.now();
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(pem);
    if (it != cache_.end()) {
      if (now < it->second.not_after)
        return std::optional<Identity>(it->second.identity);
      cache_.erase(it);
    }
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
    return Error::unauthenticated(
        fmt::format("client certificate is for trust domain {}, this CA serves {}",
                    id->trustDomain().name(), trust_domain_.name()));
  }
  SystemTime not_after = pki::notAfter(certs->front().get());
  if (now >= not_after) {
    return Error::unauthenticated("client certificate expired");
  }
  Identity identity{std::move(id).value(), "mtls", ""};
  std::lock_guard lock(mu_);
  if (cache_.size() >= kMaxCached)
    cache_.clear();  // bounded; a full cache just starts over
  cache_.insert_or_assign(pem, Cached{identity, not_after});
  return std::optional<Identity>(std::move(identity));
}

}  // namespace meshid::ca
