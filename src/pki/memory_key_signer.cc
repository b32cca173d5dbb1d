#include "pki/memory_key_signer.h"

#include <openssl/core_names.h>

#include "pki/key.h"
#include "pki/ossl_error.h"
#include "pki/public_key.h"

namespace meshid::pki {

Result<std::unique_ptr<MemoryKeySigner>> MemoryKeySigner::create(EvpPkeyPtr private_key) {
  if (!private_key) {
    return Error::invalidArgument("no signing key");
  }
  MESHID_RETURN_IF_ERROR(checkKeyStrength(private_key.get()));
  // A public-only key would fail at the first signature; refuse it up front.
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, private_key.get(), nullptr));
  if (!ctx || EVP_PKEY_private_check(ctx.get()) != 1) {
    drainOpensslErrors();
    // Ed25519 is not judged by private_check; it still needs its private half.
    size_t len = 0;
    bool ed25519_private = EVP_PKEY_get_base_id(private_key.get()) == EVP_PKEY_ED25519 &&
                           EVP_PKEY_get_raw_private_key(private_key.get(), nullptr, &len) == 1;
    if (!ed25519_private) {
      drainOpensslErrors();
      return Error::invalidArgument("signing key has no private part");
    }
  }
  drainOpensslErrors();
  return std::unique_ptr<MemoryKeySigner>(new MemoryKeySigner(std::move(private_key)));
}

MemoryKeySigner::MemoryKeySigner(EvpPkeyPtr key) : key_(std::move(key)), digest_(nullptr) {
  if (EVP_PKEY_get_base_id(key_.get()) != EVP_PKEY_ED25519) {
    const EVP_MD* md = signatureDigestFor(key_.get());
    digest_ = fetchedDigest(EVP_MD_get_size(md) * 8);
  }
}

EvpPkeyCtxPtr MemoryKeySigner::takeContext() const {
  {
    std::lock_guard lock(pool_mu_);
    if (!pool_.empty()) {
      EvpPkeyCtxPtr ctx = std::move(pool_.back());
      pool_.pop_back();
      return ctx;
    }
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), digest_) != 1 ||
      (EVP_PKEY_get_base_id(key_.get()) == EVP_PKEY_RSA &&
       EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1)) {
    return nullptr;
  }
  return ctx;
}

void MemoryKeySigner::giveBack(EvpPkeyCtxPtr ctx) const {
  std::lock_guard lock(pool_mu_);
  pool_.push_back(std::move(ctx));
}

Result<void> MemoryKeySigner::signCertificate(X509* cert) const {
  if (X509_sign(cert, key_.get(), signatureDigestFor(key_.get())) <= 0) {
    return opensslError(Code::kInternal, "cannot sign certificate");
  }
  return okResult();
}

Result<void> MemoryKeySigner::signRequest(X509_REQ* req) const {
  if (X509_REQ_sign(req, key_.get(), signatureDigestFor(key_.get())) <= 0) {
    return opensslError(Code::kInternal, "cannot sign certificate signing request");
  }
  return okResult();
}

Result<std::string> MemoryKeySigner::signData(std::string_view data) const {
  if (digest_ != nullptr) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &digest_len, digest_, nullptr) != 1) {
      return opensslError(Code::kInternal, "cannot hash data to sign");
    }
    EvpPkeyCtxPtr ctx = takeContext();
    if (!ctx) {
      return opensslError(Code::kInternal, "cannot start signature");
    }
    size_t len = static_cast<size_t>(EVP_PKEY_get_size(key_.get()));
    std::string sig(len, '\0');
    if (EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, digest,
                      digest_len) != 1) {
      return opensslError(Code::kInternal, "cannot sign data");  // the context is not reused
    }
    giveBack(std::move(ctx));
    sig.resize(len);
    return sig;
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  const EVP_MD* md = signatureDigestFor(key_.get());
  if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key_.get()) != 1) {
    return opensslError(Code::kInternal, "cannot start signature");
  }
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) != 1) {
    return opensslError(Code::kInternal, "cannot size signature");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     data.size()) != 1) {
    return opensslError(Code::kInternal, "cannot sign data");
  }
  sig.resize(len);
  return sig;
}

std::string MemoryKeySigner::describe() const {
  return "in-memory " + describeKey(key_.get()) + " key";
}

}  // namespace meshid::pki
