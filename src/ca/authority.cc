#include "ca/authority.h"

#include "pki/certificate.h"

namespace meshid::ca {

Result<std::shared_ptr<const SigningMaterial>> makeSigningMaterial(
    pki::X509Ptr cert, std::unique_ptr<pki::KeySigner> signer, std::vector<pki::X509Ptr> chain,
    std::vector<pki::X509Ptr> roots) {
  auto m = std::make_shared<SigningMaterial>();
  m->cert = std::move(cert);
  m->signer = std::move(signer);
  m->chain = std::move(chain);
  m->roots = std::move(roots);
  // The issuer borrows cert and signer, which live as long as m.
  MESHID_ASSIGN_OR_RETURN(m->issuer, pki::SvidIssuer::create(m->cert.get(), *m->signer));
  for (const auto& c : m->chain)
    m->chain_pem.push_back(pki::certificateToPem(c.get()));
  return std::shared_ptr<const SigningMaterial>(std::move(m));
}

Result<IssuedChain> LocalAuthority::sign(const pki::SvidRequest& request) {
  std::shared_ptr<const SigningMaterial> m = material_.load();
  if (!m) {
    return Error::unavailable("no signing certificate loaded");
  }
  MESHID_ASSIGN_OR_RETURN(pki::SvidIssuer::Leaf leaf, m->issuer->issue(request));
  return IssuedChain{std::move(leaf), std::move(m)};
}

}  // namespace meshid::ca
