// KeySigner: "sign this" with a private key the caller never sees. The
// in-memory implementation is below; an HSM-backed one (PKCS#11) and others
// come later behind the same interface.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "pki/ossl.h"

namespace meshid::pki {

class KeySigner {
 public:
  virtual ~KeySigner() = default;

  // The public half; borrowed, valid for the signer's lifetime.
  virtual const EVP_PKEY* publicKey() const = 0;

  // Sets cert's signature algorithm and signs its current TBSCertificate with
  // the key's digest (signatureDigestFor). Thread-safe. Fails with kInternal
  // (or kUnavailable for a remote key that cannot be reached now).
  virtual Result<void> signCertificate(X509* cert) const = 0;

  // Signs a CSR for this key (an intermediate asked of an upstream). Thread-safe.
  virtual Result<void> signRequest(X509_REQ* req) const = 0;

  // Raw signature over data (DER ECDSA, RSA PKCS#1 v1.5 or Ed25519), for JWS
  // and other uses. Thread-safe.
  virtual Result<std::string> signData(std::string_view data) const = 0;

  // For logs and /debug: "in-memory ECDSA P-256 key"; never key material.
  virtual std::string describe() const = 0;
};

}  // namespace meshid::pki
