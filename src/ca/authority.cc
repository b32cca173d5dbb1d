#include "ca/authority.h"

namespace meshid::ca {

Result<IssuedChain> LocalAuthority::sign(const pki::SvidRequest& request) {
  std::shared_ptr<const SigningMaterial> m = material_.load();
  if (!m) {
    return Error::unavailable("no signing certificate loaded");
  }
  MESHID_ASSIGN_OR_RETURN(pki::X509Ptr leaf, pki::issueX509Svid(request, m->cert.get(), *m->signer));
  IssuedChain out;
  out.leaf = std::move(leaf);
  for (const auto& c : m->chain) out.chain.push_back(pki::shareX509(c.get()));
  for (const auto& r : m->roots) out.roots.push_back(pki::shareX509(r.get()));
  return out;
}

}  // namespace meshid::ca
