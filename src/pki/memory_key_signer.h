#pragma once

#include <memory>

#include "pki/key_signer.h"

namespace meshid::pki {

// Holds the private key in process memory (a 0600 file's content).
class MemoryKeySigner final : public KeySigner {
 public:
  // Refuses keys that fail checkKeyStrength or carry no private half.
  static Result<std::unique_ptr<MemoryKeySigner>> create(EvpPkeyPtr private_key);

  const EVP_PKEY* publicKey() const override { return key_.get(); }
  Result<void> signCertificate(X509* cert) const override;
  Result<void> signRequest(X509_REQ* req) const override;
  Result<std::string> signData(std::string_view data) const override;
  std::string describe() const override;

 private:
  explicit MemoryKeySigner(EvpPkeyPtr key) : key_(std::move(key)) {}
  EvpPkeyPtr key_;  // immutable after construction; OpenSSL allows concurrent use
};

}  // namespace meshid::pki
