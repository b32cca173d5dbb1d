// Authority: turns an approved request into a chain. The local kind signs
// with an intermediate it holds (selfsigned or plugged-in files); per-CSR
// upstream kinds (Vault, Kubernetes) come later behind the same interface.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "pki/issuance.h"
#include "pki/key_signer.h"
#include "pki/ossl.h"

namespace meshid::ca {

// An intermediate and everything needed to sign with it. Immutable once
// published; a reload publishes a new one.
struct SigningMaterial {
  pki::X509Ptr cert;                       // the signing (intermediate) certificate
  std::unique_ptr<pki::KeySigner> signer;  // its key
  std::vector<pki::X509Ptr> chain;         // cert first, up to (not including) a root
  std::vector<pki::X509Ptr> roots;         // the trust bundle it belongs to
  // Derived once, used by every signing: the leaf builder for cert + signer,
  // and the chain as PEM, ready to append to each answer.
  std::unique_ptr<pki::SvidIssuer> issuer;
  std::vector<std::string> chain_pem;
};

// Builds a SigningMaterial (issuer, chain_pem) from its parts.
Result<std::shared_ptr<const SigningMaterial>> makeSigningMaterial(
    pki::X509Ptr cert, std::unique_ptr<pki::KeySigner> signer, std::vector<pki::X509Ptr> chain,
    std::vector<pki::X509Ptr> roots);

struct IssuedChain {
  pki::SvidIssuer::Leaf leaf;
  // What it was signed with: its chain_pem follows the leaf in answers.
  std::shared_ptr<const SigningMaterial> material;
};

class Authority {
 public:
  virtual ~Authority() = default;

  // A bounded label for metrics and records: "selfsigned", "files", ...
  virtual const std::string& name() const = 0;

  // Signs. FAILED_PRECONDITION when the signing certificate cannot sign now
  // (expired), UNAVAILABLE when an upstream cannot be reached. Thread-safe.
  virtual Result<IssuedChain> sign(const pki::SvidRequest& request) = 0;

  // The material in use now (never null once the authority is ready).
  virtual std::shared_ptr<const SigningMaterial> material() const = 0;
};

// Holds one SigningMaterial and swaps it atomically: signings in flight finish
// with the material they started with.
class LocalAuthority final : public Authority {
 public:
  LocalAuthority(std::string name, std::shared_ptr<const SigningMaterial> initial)
      : name_(std::move(name)), material_(std::move(initial)) {}

  const std::string& name() const override { return name_; }
  Result<IssuedChain> sign(const pki::SvidRequest& request) override;
  std::shared_ptr<const SigningMaterial> material() const override { return material_.load(); }

  void replace(std::shared_ptr<const SigningMaterial> material) {
    material_.store(std::move(material));
  }

 private:
  std::string name_;
  std::atomic<std::shared_ptr<const SigningMaterial>> material_;
};

}  // namespace meshid::ca
