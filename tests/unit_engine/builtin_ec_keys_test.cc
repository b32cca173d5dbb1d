// pki::useBuiltinEcKeysForCertificates, in a process of its own: the ENGINE
// it registers is process-wide, so these tests cannot share the unit-test
// binary. Each test checks behaviour with the ENGINE in place: which path a
// certificate key takes, that chains still verify and forged ones still
// fail, that an off-curve point is still refused, and that the proxy's TLS
// contexts handshake (mTLS, TLS 1.3 and 1.2, full and resumed) as before.
#include "pki/builtin_ec_keys.h"

#include <gtest/gtest.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "pki/certificate.h"
#include "pki/chain.h"
#include "proxy/tls_snapshot.h"
#include "unit/pki/test_ca.h"
#include "unit/proxy/memory_handshake.h"
#include "unit/proxy/tls_test_material.h"

namespace meshid::pki {
namespace {

using namespace std::chrono_literals;
using meshid::testing::orThrow;
using testing::TestCa;

std::string der(const X509* cert) {
  unsigned char* p = nullptr;
  int n = i2d_X509(cert, &p);
  std::string out(reinterpret_cast<char*>(p), static_cast<size_t>(n));
  OPENSSL_free(p);
  return out;
}

X509Ptr parse(const std::string& d) {
  const auto* p = reinterpret_cast<const unsigned char*>(d.data());
  return X509Ptr(d2i_X509(nullptr, &p, static_cast<long>(d.size())));
}

// Registered once; everything the tests need is made before that, since EC
// key generation in this process takes the ENGINE too (see the last test).
class BuiltinEcKeys : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const SystemTime now = std::chrono::system_clock::now();
    ca_ = new TestCa(TestCa::create({.now = now - 1h}));
    foreign_ca_ = new TestCa(TestCa::create({.now = now - 1h}));
    auto key = testing::newKey();
    leaf_der_ =
        der(ca_->issueLeaf(key.get(), "spiffe://example.org/ns/a/sa/b", 1h, now - 1min).get());
    auto rsa = testing::newKey(KeyType::kRsa2048);
    rsa_leaf_der_ =
        der(ca_->issueLeaf(rsa.get(), "spiffe://example.org/ns/a/sa/rsa", 1h, now - 1min).get());
    pem_ = proxy::testing::proxyPem(*ca_, "spiffe://example.org/ns/a/sa/b", now - 1min);
    foreign_pem_ =
        proxy::testing::proxyPem(*foreign_ca_, "spiffe://example.org/ns/a/sa/b", now - 1min);
    own_key_ = key.release();
    auto before = parse(leaf_der_);
    decoded_by_provider_before_ = EVP_PKEY_get0_provider(X509_get0_pubkey(before.get())) != nullptr;
    in_use_before_ = builtinEcKeysInUse();
    registered_ = useBuiltinEcKeysForCertificates().ok();
  }
  static void TearDownTestSuite() {
    delete ca_;
    delete foreign_ca_;
    EVP_PKEY_free(own_key_);
  }
  void SetUp() override {
    ASSERT_FALSE(in_use_before_);
    ASSERT_TRUE(registered_);
  }
  static inline TestCa* ca_ = nullptr;
  static inline TestCa* foreign_ca_ = nullptr;
  static inline std::string leaf_der_, rsa_leaf_der_;
  static inline proxy::testing::ProxyPem pem_, foreign_pem_;
  static inline EVP_PKEY* own_key_ = nullptr;
  static inline bool decoded_by_provider_before_ = false, in_use_before_ = true,
                     registered_ = false;
};

TEST_F(BuiltinEcKeys, ACertificateKeySkipsTheDecoderOnceRegistered) {
  EXPECT_TRUE(decoded_by_provider_before_) << "OpenSSL 3.0's default: a provider key";
  EXPECT_TRUE(builtinEcKeysInUse());
  auto cert = parse(leaf_der_);
  ASSERT_NE(cert, nullptr);
  const EVP_PKEY* key = X509_get0_pubkey(cert.get());
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(EVP_PKEY_get0_provider(key), nullptr) << "a built-in (legacy) EC key";
  EXPECT_TRUE(EVP_PKEY_is_a(key, "EC"));
  EXPECT_EQ(EVP_PKEY_get_bits(key), 256);
  EXPECT_TRUE(useBuiltinEcKeysForCertificates().ok()) << "a second call is harmless";
}

TEST_F(BuiltinEcKeys, OtherKeysKeepTheProviderPath) {
  EXPECT_NE(EVP_PKEY_get0_provider(own_key_), nullptr) << "a key made before";
  auto pem_key = orThrow(parsePrivateKeyPem(pem_.key));
  EXPECT_NE(EVP_PKEY_get0_provider(pem_key.get()), nullptr) << "a key read from PEM";
  auto rsa = parse(rsa_leaf_der_);
  EXPECT_NE(EVP_PKEY_get0_provider(X509_get0_pubkey(rsa.get())), nullptr)
      << "an RSA certificate key";
}

TEST_F(BuiltinEcKeys, ChainsVerifyAndForgeriesDoNot) {
  const SystemTime now = std::chrono::system_clock::now();
  auto leaf = parse(leaf_der_);
  auto inter = parse(der(ca_->intermediate.get()));
  auto root = parse(der(ca_->root.get()));
  std::vector<X509Ptr> inters, roots;
  inters.push_back(std::move(inter));
  roots.push_back(std::move(root));
  auto ok = verifyChain(leaf.get(), inters, roots, {.at = now});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->spiffe_id->str(), "spiffe://example.org/ns/a/sa/b");

  // The last byte of the signature flipped: the intermediate's key refuses it.
  std::string forged = leaf_der_;
  forged.back() ^= 0x01;
  auto bad = parse(forged);
  ASSERT_NE(bad, nullptr);
  EXPECT_FALSE(verifyChain(bad.get(), inters, roots, {.at = now}).ok());

  // The same leaf under another CA's roots: refused.
  EXPECT_FALSE(
      verifyChain(leaf.get(), foreign_ca_->intermediates(), foreign_ca_->roots(), {.at = now})
          .ok());
}

TEST_F(BuiltinEcKeys, APointOffTheCurveIsStillRefused) {
  // The uncompressed point (04 || X || Y) is the last 65 bytes of the SPKI;
  // changing Y's last byte moves it off the curve.
  auto cert = parse(leaf_der_);
  unsigned char* spki = nullptr;
  int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert.get()), &spki);
  ASSERT_GT(n, 65);
  std::string spki_der(reinterpret_cast<char*>(spki), static_cast<size_t>(n));
  OPENSSL_free(spki);
  size_t at = leaf_der_.find(spki_der);
  ASSERT_NE(at, std::string::npos);
  std::string off = leaf_der_;
  off[at + spki_der.size() - 1] ^= 0x01;
  auto parsed = parse(off);
  ASSERT_NE(parsed, nullptr) << "the certificate still parses";
  EXPECT_EQ(X509_get0_pubkey(parsed.get()), nullptr) << "but its key does not";
}

// The proxy's contexts, server and client, over an in-memory BIO pair.
TEST_F(BuiltinEcKeys, TheProxysMutualTlsHandshakesAndResumes) {
  proxy::ProxyConfig config{orThrow(TrustDomain::parse("example.org"))};
  SystemClock clock;
  auto snap = orThrow(proxy::buildSnapshot(config, pem_.chain, pem_.key, pem_.bundle, clock, 1));
  for (int version : {0, TLS1_2_VERSION}) {
    auto full = proxy::testing::handshake(*snap, nullptr, version);
    ASSERT_TRUE(full.ok) << version;
    EXPECT_FALSE(full.resumed);
    auto again = proxy::testing::handshake(*snap, full.ticket.get(), version);
    ASSERT_TRUE(again.ok) << version;
    EXPECT_TRUE(again.resumed) << version;
  }
  // A client whose certificate comes from another mesh (trusting ours too):
  // the server refuses it.
  auto foreign = orThrow(proxy::buildSnapshot(config, foreign_pem_.chain, foreign_pem_.key,
                                              foreign_pem_.bundle + pem_.bundle, clock, 2));
  ASSERT_TRUE(proxy::testing::handshake(*foreign, nullptr).ok) << "the foreign client itself works";
  EXPECT_FALSE(proxy::testing::handshake(*snap, nullptr, 0, foreign.get()).ok);
}

// TLS key shares on the NIST curves are EC keys the process generates:
// with the ENGINE in place they are built-in keys too, and must still work
// (a client that offers only P-256, as FIPS-minded ones do).
TEST_F(BuiltinEcKeys, KeySharesOnNistCurvesStillWork) {
  proxy::ProxyConfig config{orThrow(TrustDomain::parse("example.org"))};
  SystemClock clock;
  // The curve under test first on both sides; P-256 after it because TLS 1.2
  // also needs the certificates' curve among the client's groups.
  for (const char* groups : {"P-256", "P-384:P-256", "P-521:P-256"}) {
    auto snap = orThrow(proxy::buildSnapshot(config, pem_.chain, pem_.key, pem_.bundle, clock, 3));
    ASSERT_EQ(SSL_CTX_set1_groups_list(snap->client->native_handle(), groups), 1) << groups;
    ASSERT_EQ(SSL_CTX_set1_groups_list(snap->server->native_handle(), groups), 1) << groups;
    for (int version : {0, TLS1_2_VERSION}) {
      auto full = proxy::testing::handshake(*snap, nullptr, version);
      EXPECT_TRUE(full.ok) << groups << " " << version;
    }
  }
}

}  // namespace
}  // namespace meshid::pki
