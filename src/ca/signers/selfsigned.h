#pragma once

#include <filesystem>

#include "ca/authority.h"
#include "common/clock.h"
#include "pki/key.h"
#include "pki/spiffe_id.h"

namespace meshid::ca {

struct SelfSignedConfig {
  std::filesystem::path dir;  // <state_dir>/ca: cacerts layout + root/root-key.pem
  pki::TrustDomain trust_domain;
  pki::KeyType key_type = pki::KeyType::kEcP256;
  Seconds root_ttl{3650LL * 24 * 3600};
  Seconds intermediate_ttl{365LL * 24 * 3600};
};

// On first start makes a root and an intermediate and keeps them in
// config.dir (keys 0600); after a restart loads the same ones. When the kept
// intermediate has less than a third of its life left (or has expired), a new
// one is made under the same root, so the bundle does not change. A renewal
// is written aside and moved into place (config.dir/.renewing): one that a
// crash interrupted is finished, or dropped, at the next start.
Result<std::shared_ptr<const SigningMaterial>> loadOrCreateSelfSigned(
    const SelfSignedConfig& config, const Clock& clock);

}  // namespace meshid::ca
