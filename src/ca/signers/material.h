#pragma once

#include "ca/authority.h"
#include "pki/ca_directory.h"

namespace meshid::ca {

// Wraps loaded CA files as SigningMaterial (an in-memory key signer).
Result<std::shared_ptr<const SigningMaterial>> materialFromCa(pki::CaMaterial ca);

}  // namespace meshid::ca
