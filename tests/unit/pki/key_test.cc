#include "pki/key.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <map>
#include <string>

#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::pki {
namespace {

using meshid::testing::errorOf;
using testing::newEcKey;
using testing::newKey;
using testing::newRsaKey;

// RSA-3072 takes a while on a slow machine: generate each type once.
const EVP_PKEY* cachedKey(KeyType type) {
  static std::map<KeyType, EvpPkeyPtr> cache;
  EvpPkeyPtr& key = cache[type];
  if (!key) {
    key = newKey(type);
  }
  return key.get();
}

std::string rawPrivatePem(const EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// "EC PRIVATE KEY" / "RSA PRIVATE KEY", optionally encrypted the legacy way
// (Proc-Type/DEK-Info headers), as cert-manager and older tools write them.
std::string traditionalPem(const EVP_PKEY* key, const char* passphrase = nullptr) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (passphrase) {
    PEM_write_bio_PrivateKey_traditional(
        bio.get(), key, EVP_aes_128_cbc(),
        reinterpret_cast<unsigned char*>(const_cast<char*>(passphrase)),
        static_cast<int>(strlen(passphrase)), nullptr, nullptr);
  } else {
    PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

struct KeyCase {
  KeyType type;
  const char* test_name;
  int base_id;
  int bits;  // 0: not checked (OpenSSL's count for Ed25519 varies by version)
  const char* description;
  int digest_nid;  // NID_undef: the key signs without a separate digest
};

class KeyTypeTest : public ::testing::TestWithParam<KeyCase> {};

TEST_P(KeyTypeTest, GeneratesStrongKeyOfThatType) {
  const KeyCase& c = GetParam();
  const EVP_PKEY* key = cachedKey(c.type);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(EVP_PKEY_get_base_id(key), c.base_id);
  if (c.bits != 0) {
    EXPECT_EQ(EVP_PKEY_get_bits(key), c.bits);
  }
  MESHID_EXPECT_OK(checkKeyStrength(key));
  EXPECT_EQ(describeKey(key), c.description);
}

TEST_P(KeyTypeTest, UsesTheProfileDigest) {
  const KeyCase& c = GetParam();
  const EVP_MD* md = signatureDigestFor(cachedKey(c.type));
  if (c.digest_nid == NID_undef) {
    EXPECT_EQ(md, nullptr);
  } else {
    ASSERT_NE(md, nullptr);
    EXPECT_EQ(EVP_MD_get_type(md), c.digest_nid);
  }
}

TEST_P(KeyTypeTest, PemRoundTrips) {
  const EVP_PKEY* key = cachedKey(GetParam().type);
  auto pem = privateKeyToPem(key);
  ASSERT_TRUE(pem.ok()) << pem.error().message;
  EXPECT_TRUE(pem->starts_with("-----BEGIN PRIVATE KEY-----\n")) << *pem;  // PKCS#8
  auto back = parsePrivateKeyPem(*pem);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(EVP_PKEY_eq(back->get(), key), 1);
  // The private half came back too, not only the public key.
  auto again = privateKeyToPem(back->get());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *pem);
}

TEST_P(KeyTypeTest, EncryptedPemRoundTripsWithPassphrase) {
  const EVP_PKEY* key = cachedKey(GetParam().type);
  auto pem = privateKeyToPem(key, "correct horse");
  ASSERT_TRUE(pem.ok()) << pem.error().message;
  EXPECT_TRUE(pem->starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")) << *pem;
  auto back = parsePrivateKeyPem(*pem, "correct horse");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(EVP_PKEY_eq(back->get(), key), 1);
}

TEST_P(KeyTypeTest, NameRoundTrips) {
  KeyType type = GetParam().type;
  auto parsed = parseKeyType(keyTypeName(type));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, type);
}

INSTANTIATE_TEST_SUITE_P(
    AllGeneratedTypes, KeyTypeTest,
    ::testing::Values(
        KeyCase{KeyType::kEcP256, "EcP256", EVP_PKEY_EC, 256, "ECDSA P-256", NID_sha256},
        KeyCase{KeyType::kEcP384, "EcP384", EVP_PKEY_EC, 384, "ECDSA P-384", NID_sha384},
        KeyCase{KeyType::kRsa2048, "Rsa2048", EVP_PKEY_RSA, 2048, "RSA 2048", NID_sha256},
        KeyCase{KeyType::kRsa3072, "Rsa3072", EVP_PKEY_RSA, 3072, "RSA 3072", NID_sha256},
        KeyCase{KeyType::kEd25519, "Ed25519", EVP_PKEY_ED25519, 0, "Ed25519", NID_undef}),
    [](const ::testing::TestParamInfo<KeyCase>& info) { return info.param.test_name; });

TEST(GenerateKey, ProducesDistinctKeys) {
  EvpPkeyPtr a = newKey(KeyType::kEcP256), b = newKey(KeyType::kEcP256);
  EXPECT_FALSE(samePublicKey(a.get(), b.get()));
  EXPECT_TRUE(samePublicKey(a.get(), a.get()));
}

TEST(ParseKeyType, AcceptsEverySpelling) {
  const std::pair<const char*, KeyType> spellings[] = {
      {"ec-p256", KeyType::kEcP256},    {"p256", KeyType::kEcP256},
      {"ecdsa-p256", KeyType::kEcP256}, {"ec-p384", KeyType::kEcP384},
      {"p384", KeyType::kEcP384},       {"ecdsa-p384", KeyType::kEcP384},
      {"rsa-2048", KeyType::kRsa2048},  {"rsa2048", KeyType::kRsa2048},
      {"rsa-3072", KeyType::kRsa3072},  {"rsa-4096", KeyType::kRsa4096},
      {"ed25519", KeyType::kEd25519},
  };
  for (const auto& [name, type] : spellings) {
    auto r = parseKeyType(name);
    ASSERT_TRUE(r.ok()) << name;
    EXPECT_EQ(*r, type) << name;
  }
  EXPECT_EQ(keyTypeName(KeyType::kRsa4096), "rsa-4096");
}

TEST(ParseKeyType, RefusesUnknownNames) {
  for (const char* name :
       {"", "rsa-1024", "rsa", "ec-p521", "ecdsa", "ed448", "dsa", " ec-p256", "ec-p256 "}) {
    auto r = parseKeyType(name);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << '"' << name << '"';
  }
  // The message lists what would work.
  MESHID_EXPECT_CONTAINS(errorOf(parseKeyType("rsa-1024")).message, "ec-p256");
}

TEST(CheckKeyStrength, AcceptsP521) {
  EvpPkeyPtr key = newEcKey("P-521");
  MESHID_EXPECT_OK(checkKeyStrength(key.get()));
  EXPECT_EQ(describeKey(key.get()), "ECDSA P-521");
  ASSERT_NE(signatureDigestFor(key.get()), nullptr);
  EXPECT_EQ(EVP_MD_get_type(signatureDigestFor(key.get())), NID_sha512);
}

TEST(CheckKeyStrength, RefusesRsa1024) {
  EvpPkeyPtr key = newRsaKey(1024);
  auto r = checkKeyStrength(key.get());
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "1024");
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "2048");
}

TEST(CheckKeyStrength, RefusesUnknownCurve) {
  EvpPkeyPtr key = newEcKey("secp256k1");
  auto r = checkKeyStrength(key.get());
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "secp256k1");
}

TEST(CheckKeyStrength, RefusesExplicitCurveParameters) {
  EvpPkeyPtr key = testing::explicitCurveKey();
  auto r = checkKeyStrength(key.get());
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "explicit");
  EXPECT_EQ(errorOf(parsePrivateKeyPem(testing::kExplicitCurveKeyPem)).code,
            Code::kInvalidArgument);
}

TEST(CheckKeyStrength, RefusesOtherAlgorithms) {
  for (const char* alg : {"ED448", "X25519", "X448"}) {
    EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, alg));
    ASSERT_NE(key, nullptr) << alg;
    auto r = checkKeyStrength(key.get());
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << alg;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, "not accepted");
  }
}

TEST(CheckKeyStrength, RefusesNoKey) {
  EXPECT_EQ(errorOf(checkKeyStrength(nullptr)).code, Code::kInvalidArgument);
  EXPECT_EQ(describeKey(nullptr), "none");
}

TEST(ParsePrivateKeyPem, AcceptsSec1AndPkcs1) {
  const EVP_PKEY* ec = cachedKey(KeyType::kEcP256);
  std::string sec1 = traditionalPem(ec);
  ASSERT_TRUE(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----")) << sec1;
  auto ec_back = parsePrivateKeyPem(sec1);
  ASSERT_TRUE(ec_back.ok()) << ec_back.error().message;
  EXPECT_EQ(EVP_PKEY_eq(ec_back->get(), ec), 1);

  const EVP_PKEY* rsa = cachedKey(KeyType::kRsa2048);
  std::string pkcs1 = traditionalPem(rsa);
  ASSERT_TRUE(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----")) << pkcs1;
  auto rsa_back = parsePrivateKeyPem(pkcs1);
  ASSERT_TRUE(rsa_back.ok()) << rsa_back.error().message;
  EXPECT_EQ(EVP_PKEY_eq(rsa_back->get(), rsa), 1);
}

TEST(ParsePrivateKeyPem, DecryptsLegacyEncryptedPem) {
  const EVP_PKEY* ec = cachedKey(KeyType::kEcP256);
  std::string pem = traditionalPem(ec, "s3cret");
  ASSERT_NE(pem.find("Proc-Type: 4,ENCRYPTED"), std::string::npos) << pem;
  auto back = parsePrivateKeyPem(pem, "s3cret");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(EVP_PKEY_eq(back->get(), ec), 1);
  EXPECT_EQ(errorOf(parsePrivateKeyPem(pem)).code, Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parsePrivateKeyPem(pem, "wrong")).code, Code::kInvalidArgument);
}

TEST(ParsePrivateKeyPem, RefusesWrongPassphraseWithoutEchoingIt) {
  auto pem = privateKeyToPem(cachedKey(KeyType::kEcP256), "correct horse");
  ASSERT_TRUE(pem.ok());
  auto r = parsePrivateKeyPem(*pem, "battery staple");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "wrong passphrase");
  MESHID_EXPECT_NOT_CONTAINS(errorOf(r).message, "battery");
  MESHID_EXPECT_NOT_CONTAINS(errorOf(r).message, "correct");
}

TEST(ParsePrivateKeyPem, RefusesEncryptedKeyWithoutPassphrase) {
  auto pem = privateKeyToPem(cachedKey(KeyType::kEcP256), "correct horse");
  ASSERT_TRUE(pem.ok());
  auto r = parsePrivateKeyPem(*pem);
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "passphrase is required");
}

TEST(ParsePrivateKeyPem, EncryptionHidesTheKey) {
  const EVP_PKEY* key = cachedKey(KeyType::kEcP256);
  auto plain = privateKeyToPem(key);
  auto enc = privateKeyToPem(key, "pw");
  ASSERT_TRUE(plain.ok() && enc.ok());
  // The second base64 body line of the plain PEM is private and public key bytes.
  size_t body = plain->find('\n') + 1;
  size_t second = plain->find('\n', body) + 1;
  std::string secret_line = plain->substr(second, 40);
  MESHID_EXPECT_NOT_CONTAINS(*enc, secret_line);
}

TEST(ParsePrivateKeyPem, RefusesRsa1024) {
  EvpPkeyPtr weak = newRsaKey(1024);
  auto r = parsePrivateKeyPem(rawPrivatePem(weak.get()));
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "too weak");
}

TEST(ParsePrivateKeyPem, RefusesSecp256k1) {
  EvpPkeyPtr key = newEcKey("secp256k1");
  auto r = parsePrivateKeyPem(rawPrivatePem(key.get()));
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "secp256k1");
}

TEST(ParsePrivateKeyPem, RefusesGarbage) {
  for (std::string_view text :
       {std::string_view(""), std::string_view("hello"), std::string_view("\0\0\0", 3),
        std::string_view("-----BEGIN PRIVATE KEY-----\n!!!!not base64!!!!\n"
                         "-----END PRIVATE KEY-----\n"),
        std::string_view("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}) {
    EXPECT_EQ(errorOf(parsePrivateKeyPem(text)).code, Code::kInvalidArgument) << text;
  }
}

TEST(ParsePrivateKeyPem, RefusesTruncatedPem) {
  auto pem = privateKeyToPem(cachedKey(KeyType::kEcP384));
  ASSERT_TRUE(pem.ok());
  // Cut inside the base64 body: the END line is gone.
  std::string cut = pem->substr(0, pem->size() / 2);
  EXPECT_EQ(errorOf(parsePrivateKeyPem(cut)).code, Code::kInvalidArgument);
  // Whole lines dropped from the middle: the DER inside is short.
  size_t second_line = pem->find('\n') + 1;
  std::string short_body =
      pem->substr(0, second_line) + pem->substr(pem->find('\n', second_line) + 1);
  EXPECT_EQ(errorOf(parsePrivateKeyPem(short_body)).code, Code::kInvalidArgument);
}

TEST(ParsePrivateKeyPem, RefusesPublicKeyAndCertificatePem) {
  auto pub = publicKeyToPem(cachedKey(KeyType::kEcP256));
  ASSERT_TRUE(pub.ok());
  auto r = parsePrivateKeyPem(*pub);
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "no PEM private key");
}

TEST(ParsePrivateKeyPem, RefusesOversizeInput) {
  auto pem = privateKeyToPem(cachedKey(KeyType::kEcP256));
  ASSERT_TRUE(pem.ok());
  std::string big = *pem + std::string(64 * 1024, '\n');
  auto r = parsePrivateKeyPem(big);
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "larger than");
}

TEST(PublicKeyToPem, RoundTripsThroughOpenssl) {
  const EVP_PKEY* key = cachedKey(KeyType::kEd25519);
  auto pem = publicKeyToPem(key);
  ASSERT_TRUE(pem.ok());
  EXPECT_TRUE(pem->starts_with("-----BEGIN PUBLIC KEY-----"));
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  EvpPkeyPtr pub(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  ASSERT_NE(pub, nullptr);
  EXPECT_TRUE(samePublicKey(pub.get(), key));
}

TEST(SamePublicKey, FalseForDifferentTypesAndNull) {
  EXPECT_FALSE(samePublicKey(cachedKey(KeyType::kEcP256), cachedKey(KeyType::kEd25519)));
  EXPECT_FALSE(samePublicKey(cachedKey(KeyType::kEcP256), nullptr));
  EXPECT_FALSE(samePublicKey(nullptr, nullptr));
}

}  // namespace
}  // namespace meshid::pki
