// Public keys and signatures without OpenSSL 3.0's generic decoder: a
// SubjectPublicKeyInfo is read with the DER reader and the key built directly
// (TOOLCHAIN.md §12.1 measured d2i_PUBKEY at ~160 µs against ~7 µs here).
#pragma once

#include <string_view>

#include "common/result.h"
#include "pki/der.h"
#include "pki/ossl.h"

namespace meshid::pki {

struct SpkiParts {
  der::Bytes algorithm_oid;  // contents of the algorithm OID
  der::Bytes parameters;     // what follows the OID in the AlgorithmIdentifier (may be empty)
  der::Bytes key_bits;       // subjectPublicKey BIT STRING contents after the unused-bits byte
};

// Splits a SubjectPublicKeyInfo (whole DER element); INVALID_ARGUMENT if malformed.
Result<SpkiParts> splitSpki(der::Bytes spki);

// The key of a SubjectPublicKeyInfo: EC P-256/P-384/P-521 (named curve; the
// point is checked to be on the curve), RSA (then checkKeyStrength), Ed25519.
// Anything else is INVALID_ARGUMENT.
Result<EvpPkeyPtr> publicKeyFromSpki(der::Bytes spki);

// Verifies signature over data with the algorithm named by sig_alg_oid
// (ecdsa-with-SHA256/384/512, sha256/384/512WithRSAEncryption (PKCS#1 v1.5),
// Ed25519), which must fit the key. INVALID_ARGUMENT when it does not verify
// or the algorithm is not supported.
Result<void> verifySignature(const EVP_PKEY* key, der::Bytes sig_alg_oid, der::Bytes data,
                             der::Bytes signature);

// SHA-256/384/512 fetched once per process (an implicit fetch per use takes a
// global lock in OpenSSL 3.0).
const EVP_MD* fetchedDigest(int bits);

}  // namespace meshid::pki
