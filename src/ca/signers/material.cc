#include "ca/signers/material.h"

#include "pki/memory_key_signer.h"

namespace meshid::ca {

Result<std::shared_ptr<const SigningMaterial>> materialFromCa(pki::CaMaterial ca) {
  MESHID_ASSIGN_OR_RETURN(auto signer, pki::MemoryKeySigner::create(std::move(ca.signing_key)));
  return makeSigningMaterial(std::move(ca.signing_cert), std::move(signer), std::move(ca.chain),
                             std::move(ca.roots));
}

}  // namespace meshid::ca
