#include "pki/memory_key_signer.h"

#include <openssl/core_names.h>

#include "pki/key.h"
#include "pki/ossl_error.h"

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
