// Public keys and signatures without OpenSSL 3.0's generic decoder: a
// SubjectPublicKeyInfo is read with the DER reader and the key built directly
// (TOOLCHAIN.md §12.1 measured d2i_PUBKEY at ~160 µs against ~7 µs here).
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "pki/der.h"
#include "pki/key.h"
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

// What policy needs to know of a public key, without an EVP_PKEY.
struct PublicKeyInfo {
  std::optional<KeyType> type;  // none: accepted, but not a type a CA can allow (P-521, RSA 8192)
  bool rsa = false;
  std::string description;  // describeKey()'s words: "ECDSA P-256", "RSA 2048"
};
PublicKeyInfo describePublicKey(const EVP_PKEY* key);

// Checks signatures made by the holders of SubjectPublicKeyInfos (a CSR's
// proof of possession) with publicKeyFromSpki's and verifySignature's rules.
// For EC keys it keeps, per curve, one key whose point is replaced by each
// request's, and per digest one verify context on it: OpenSSL 3.0 spends
// 10-30 µs making a key and a context, a fifth to a third of the ECDSA verify
// itself (docs/PERFORMANCE.md). RSA PKCS#1 v1.5 signatures are checked as
// RFC 8017 §8.2.2 says, on OpenSSL's bignum arithmetic (s^e mod n compared
// with the one encoding the signature may have): an RSA EVP_PKEY and its
// context cost more than the RSA-2048 verify itself. Ed25519 keys are built
// per call.
// Not thread-safe: one per thread at a time.
class SignatureVerifier {
 public:
  SignatureVerifier();
  ~SignatureVerifier();
  SignatureVerifier(const SignatureVerifier&) = delete;
  SignatureVerifier& operator=(const SignatureVerifier&) = delete;

  // Takes the key of `spki` for the next verify(); its description, or
  // INVALID_ARGUMENT when the key is refused.
  Result<PublicKeyInfo> setKey(der::Bytes spki);

  // Whether `signature` over `data` verifies under the key set last.
  Result<void> verify(der::Bytes sig_alg_oid, der::Bytes data, der::Bytes signature);

 private:
  struct Curve;
  Result<PublicKeyInfo> setRsaKey(const SpkiParts& parts);
  Result<void> verifyRsa(int digest_bits, der::Bytes data, der::Bytes signature);
  std::array<std::unique_ptr<Curve>, 3> curves_;  // P-256, P-384, P-521, made on first use
  struct Rsa;
  std::unique_ptr<Rsa> rsa_;  // made on first use
  Curve* curve_ = nullptr;    // the key set last, when on a curve
  bool rsa_set_ = false;      // the key set last is in rsa_
  EvpPkeyPtr other_key_;      // the key set last, otherwise
};

// SHA-256/384/512 fetched once per process (an implicit fetch per use takes a
// global lock in OpenSSL 3.0).
const EVP_MD* fetchedDigest(int bits);

}  // namespace meshid::pki
