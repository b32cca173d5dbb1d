#pragma once

#include <memory>
#include <mutex>
#include <vector>

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
  explicit MemoryKeySigner(EvpPkeyPtr key);
  EvpPkeyCtxPtr takeContext() const;
  void giveBack(EvpPkeyCtxPtr ctx) const;

  EvpPkeyPtr key_;        // immutable after construction; OpenSSL allows concurrent use
  const EVP_MD* digest_;  // fetched once; null for Ed25519 (no pre-hash)
  // Signing contexts initialised once and reused: setting one up for every
  // signature (EVP_DigestSignInit) cost about 5 µs of OpenSSL 3.0's method
  // lookups per certificate (bench/ca_pipeline.cc). One thread at a time each.
  mutable std::mutex pool_mu_;
  mutable std::vector<EvpPkeyCtxPtr> pool_;  // guarded by pool_mu_
};

}  // namespace meshid::pki
