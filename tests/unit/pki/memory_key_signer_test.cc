#include "pki/memory_key_signer.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <string>

#include "pki/csr.h"
#include "pki/key.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::pki {
namespace {

using meshid::testing::errorOf;
using testing::newEcKey;
using testing::newKey;
using testing::newRsaKey;

// Verifies sig over data with pub using plain OpenSSL, with the digest the
// profile assigns to the key type (none for Ed25519).
bool opensslVerifies(const EVP_PKEY* pub, const EVP_MD* md, std::string_view data,
                     std::string_view sig) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, const_cast<EVP_PKEY*>(pub)) != 1) {
    return false;
  }
  int r =
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(data.data()), data.size());
  ERR_clear_error();
  return r == 1;
}

// The public half alone, as a verifier would hold it.
EvpPkeyPtr publicOnly(const EVP_PKEY* key) {
  auto pem = publicKeyToPem(key);
  if (!pem.ok()) {
    throw std::runtime_error("public key pem");
  }
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  return EvpPkeyPtr(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
}

struct SignCase {
  KeyType type;
  const char* name;
  const EVP_MD* (*digest)();  // nullptr: Ed25519 signs the message itself
};

class MemoryKeySignerTypeTest : public ::testing::TestWithParam<SignCase> {};

TEST_P(MemoryKeySignerTypeTest, SignDataVerifiesWithOpenssl) {
  EvpPkeyPtr key = newKey(GetParam().type);
  EvpPkeyPtr pub = publicOnly(key.get());
  auto signer = MemoryKeySigner::create(std::move(key));
  ASSERT_TRUE(signer.ok()) << signer.error().message;
  const EVP_MD* md = GetParam().digest ? GetParam().digest() : nullptr;
  std::string data = "header.payload";
  auto sig = (*signer)->signData(data);
  ASSERT_TRUE(sig.ok()) << sig.error().message;
  EXPECT_TRUE(opensslVerifies(pub.get(), md, data, *sig));
  EXPECT_FALSE(opensslVerifies(pub.get(), md, "header.payloaD", *sig));
  std::string bent = *sig;
  bent[bent.size() / 2] ^= 0x01;
  EXPECT_FALSE(opensslVerifies(pub.get(), md, data, bent));
  EXPECT_TRUE(samePublicKey((*signer)->publicKey(), pub.get()));
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, MemoryKeySignerTypeTest,
                         ::testing::Values(SignCase{KeyType::kEcP256, "EcP256", &EVP_sha256},
                                           SignCase{KeyType::kEcP384, "EcP384", &EVP_sha384},
                                           SignCase{KeyType::kRsa2048, "Rsa2048", &EVP_sha256},
                                           SignCase{KeyType::kEd25519, "Ed25519", nullptr}),
                         [](const ::testing::TestParamInfo<SignCase>& info) {
                           return info.param.name;
                         });

TEST(MemoryKeySigner, SignsEmptyData) {
  EvpPkeyPtr key = newKey();
  EvpPkeyPtr pub = publicOnly(key.get());
  auto signer = MemoryKeySigner::create(std::move(key));
  ASSERT_TRUE(signer.ok());
  auto sig = (*signer)->signData("");
  ASSERT_TRUE(sig.ok()) << sig.error().message;
  EXPECT_TRUE(opensslVerifies(pub.get(), EVP_sha256(), "", *sig));
}

TEST(MemoryKeySigner, RefusesWeakKey) {
  auto r = MemoryKeySigner::create(newRsaKey(1024));
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "too weak");
  EXPECT_EQ(errorOf(MemoryKeySigner::create(newEcKey("secp256k1"))).code, Code::kInvalidArgument);
}

TEST(MemoryKeySigner, RefusesMissingKey) {
  EXPECT_EQ(errorOf(MemoryKeySigner::create(nullptr)).code, Code::kInvalidArgument);
}

TEST(MemoryKeySigner, RefusesPublicOnlyKey) {
  for (KeyType type : {KeyType::kEcP256, KeyType::kRsa2048, KeyType::kEd25519}) {
    EvpPkeyPtr key = newKey(type);
    auto r = MemoryKeySigner::create(publicOnly(key.get()));
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << keyTypeName(type);
    MESHID_EXPECT_CONTAINS(errorOf(r).message, "no private part");
  }
}

TEST(MemoryKeySigner, SignsRequestThatParses) {
  EvpPkeyPtr key = newKey();
  EvpPkeyPtr pub = publicOnly(key.get());
  auto signer = MemoryKeySigner::create(std::move(key));
  ASSERT_TRUE(signer.ok());
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_pubkey(req.get(), pub.get());
  MESHID_ASSERT_OK((*signer)->signRequest(req.get()));
  EXPECT_EQ(X509_REQ_verify(req.get(), pub.get()), 1);
  auto parsed = parseCsr(csrToPem(req.get()));
  MESHID_EXPECT_OK(parsed);
}

TEST(MemoryKeySigner, DescribesKeyWithoutMaterial) {
  auto signer = MemoryKeySigner::create(newKey(KeyType::kEcP384));
  ASSERT_TRUE(signer.ok());
  EXPECT_EQ((*signer)->describe(), "in-memory ECDSA P-384 key");
}

}  // namespace
}  // namespace meshid::pki
