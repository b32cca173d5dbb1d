#include "ca/signers/material.h"

#include "pki/memory_key_signer.h"

namespace meshid::ca {

Result<std::shared_ptr<const SigningMaterial>> materialFromCa(pki::CaMaterial ca) {
  MESHID_ASSIGN_OR_RETURN(auto signer, pki::MemoryKeySigner::create(std::move(ca.signing_key)));
  auto m = std::make_shared<SigningMaterial>();
  m->cert = std::move(ca.signing_cert);
  m->signer = std::move(signer);
  m->chain = std::move(ca.chain);
  m->roots = std::move(ca.roots);
  return std::shared_ptr<const SigningMaterial>(std::move(m));
}

}  // namespace meshid::ca
