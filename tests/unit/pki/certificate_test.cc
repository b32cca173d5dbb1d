#include "pki/certificate.h"

#include <gtest/gtest.h>
#include <openssl/err.h>

#include <cctype>
#include <string>
#include <vector>

#include "pki/der.h"
#include "pki/key.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::pki {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using testing::certToDer;
using testing::certToPem;
using testing::newKey;
using testing::t0;
using testing::TestCa;

constexpr const char* kWeb = "spiffe://example.org/ns/default/sa/web";

class CertificateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = new TestCa(TestCa::create());
    leaf_key_ = newKey(KeyType::kEcP256).release();
    leaf_ = ca_->issueLeaf(leaf_key_, kWeb).release();
  }
  static void TearDownTestSuite() {
    X509_free(leaf_);
    EVP_PKEY_free(leaf_key_);
    delete ca_;
  }

  // A bundle refused with INVALID_ARGUMENT naming `reason`, with OpenSSL's
  // error queue left empty.
  static void expectRefused(std::string_view pem, std::string_view reason) {
    auto r = parseCertificatesPem(pem);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
    MESHID_EXPECT_CONTAINS(errorOf(r).message, std::string(reason));
    EXPECT_EQ(ERR_peek_error(), 0ul) << "OpenSSL error queue not drained";
    ERR_clear_error();
  }

  static TestCa* ca_;
  static EVP_PKEY* leaf_key_;
  static X509* leaf_;
};
TestCa* CertificateTest::ca_ = nullptr;
EVP_PKEY* CertificateTest::leaf_key_ = nullptr;
X509* CertificateTest::leaf_ = nullptr;

TEST_F(CertificateTest, ParsesBundleInOrder) {
  std::string pem =
      certToPem(leaf_) + certToPem(ca_->intermediate.get()) + certToPem(ca_->root.get());
  auto certs = parseCertificatesPem(pem);
  ASSERT_TRUE(certs.ok()) << certs.error().message;
  ASSERT_EQ(certs->size(), 3u);
  EXPECT_EQ(X509_cmp((*certs)[0].get(), leaf_), 0);
  EXPECT_EQ(X509_cmp((*certs)[1].get(), ca_->intermediate.get()), 0);
  EXPECT_EQ(X509_cmp((*certs)[2].get(), ca_->root.get()), 0);

  // Reversed input, reversed output: nothing is sorted.
  auto reversed = parseCertificatesPem(certToPem(ca_->root.get()) + certToPem(leaf_));
  ASSERT_TRUE(reversed.ok());
  EXPECT_EQ(X509_cmp((*reversed)[0].get(), ca_->root.get()), 0);
  EXPECT_EQ(X509_cmp((*reversed)[1].get(), leaf_), 0);
}

TEST_F(CertificateTest, IgnoresTextBetweenBlocks) {
  std::string pem = "subject=CN=whatever\n" + certToPem(leaf_) + "\n# comment\n\n" +
                    certToPem(ca_->root.get()) + "trailing words\n";
  auto certs = parseCertificatesPem(pem);
  ASSERT_TRUE(certs.ok()) << certs.error().message;
  EXPECT_EQ(certs->size(), 2u);
}

TEST_F(CertificateTest, CertificatesToPemRoundTrips) {
  std::vector<X509Ptr> in = testing::certList({leaf_, ca_->intermediate.get()});
  auto out = parseCertificatesPem(certificatesToPem(in));
  ASSERT_TRUE(out.ok()) << out.error().message;
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ(X509_cmp((*out)[0].get(), leaf_), 0);
  EXPECT_EQ(X509_cmp((*out)[1].get(), ca_->intermediate.get()), 0);
  EXPECT_EQ(certificateToPem(leaf_), certToPem(leaf_));
}

TEST_F(CertificateTest, RefusesInputWithoutCertificates) {
  expectRefused("", "no PEM certificate");
  expectRefused("garbage that is not PEM at all", "no PEM certificate");
  expectRefused(std::string(1000, '\0'), "no PEM certificate");
}

TEST_F(CertificateTest, RefusesGarbageInsideBlock) {
  expectRefused("-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
                "malformed PEM block");
  // Valid base64 of something that is not a certificate.
  expectRefused("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
                "malformed certificate");
}

TEST_F(CertificateTest, RefusesTruncatedBase64) {
  std::string leaf_pem = certToPem(leaf_);
  // The second certificate stops in the middle of its base64: the first must
  // not be returned alone as if the bundle were complete.
  std::string bundle = leaf_pem + certToPem(ca_->root.get()).substr(0, 200);
  expectRefused(bundle, "malformed PEM block after certificate 1");
  expectRefused(leaf_pem.substr(0, leaf_pem.size() / 2), "malformed PEM block after certificate 0");
  // Whole base64 lines removed: the block is well-formed PEM, the DER is short.
  size_t line2 = leaf_pem.find('\n', leaf_pem.find('\n') + 1) + 1;
  std::string short_body = leaf_pem.substr(0, line2) + leaf_pem.substr(line2 + 65);
  expectRefused(short_body, "malformed certificate");
}

TEST_F(CertificateTest, RefusesPrivateKeyBlockWithoutEchoingIt) {
  auto key_pem = privateKeyToPem(leaf_key_);
  ASSERT_TRUE(key_pem.ok());
  std::string bundle = certToPem(leaf_) + *key_pem + certToPem(ca_->root.get());
  auto r = parseCertificatesPem(bundle);
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "PRIVATE KEY");
  // No line of the key's base64 appears in the message.
  size_t body = key_pem->find('\n') + 1;
  std::string first_line = key_pem->substr(body, key_pem->find('\n', body) - body);
  MESHID_EXPECT_NOT_CONTAINS(errorOf(r).message, first_line.substr(0, 16));
  MESHID_EXPECT_NOT_CONTAINS(errorOf(r).message, first_line.substr(24, 16));
  ERR_clear_error();
}

TEST_F(CertificateTest, RefusesOtherPemBlocks) {
  expectRefused(certToPem(leaf_) + "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
                "unexpected PEM block");
}

TEST_F(CertificateTest, RefusesMoreThanMaxCertificates) {
  std::string one = certToPem(ca_->root.get());
  std::string max;
  for (size_t i = 0; i < kMaxBundleCertificates; ++i) {
    max += one;
  }
  auto at_limit = parseCertificatesPem(max);
  ASSERT_TRUE(at_limit.ok()) << at_limit.error().message;
  EXPECT_EQ(at_limit->size(), kMaxBundleCertificates);
  expectRefused(max + one, "more than 100 certificates");
}

TEST_F(CertificateTest, RefusesOversizeBundle) {
  std::string pem = certToPem(leaf_) + std::string(kMaxBundleBytes, '\n');
  expectRefused(pem, "larger than the limit");
}

TEST_F(CertificateTest, ParsesDer) {
  std::string der = certToDer(leaf_);
  auto cert = parseCertificateDer({reinterpret_cast<const uint8_t*>(der.data()), der.size()});
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  EXPECT_EQ(X509_cmp(cert->get(), leaf_), 0);
  EXPECT_EQ(certificateToDer(leaf_), der);
  // parseCertificates takes DER when there is no PEM marker.
  auto list = parseCertificates(der);
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(X509_cmp((*list)[0].get(), leaf_), 0);
  // ... and PEM when there is.
  auto pem_list = parseCertificates(certToPem(leaf_) + certToPem(ca_->root.get()));
  ASSERT_TRUE(pem_list.ok());
  EXPECT_EQ(pem_list->size(), 2u);
}

TEST_F(CertificateTest, RefusesDerWithTrailingBytes) {
  std::string der = certToDer(leaf_) + "x";
  auto r = parseCertificateDer({reinterpret_cast<const uint8_t*>(der.data()), der.size()});
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "trailing bytes");
  EXPECT_EQ(errorOf(parseCertificates(der)).code, Code::kInvalidArgument);
  // Two DER certificates back to back are not a bundle either.
  EXPECT_EQ(errorOf(parseCertificates(certToDer(leaf_) + certToDer(ca_->root.get()))).code,
            Code::kInvalidArgument);
}

TEST_F(CertificateTest, RefusesBadDer) {
  std::string der = certToDer(leaf_);
  for (std::string bad :
       {std::string(), der.substr(0, der.size() - 1), der.substr(0, 10), std::string(64, '\x30')}) {
    auto r = parseCertificateDer({reinterpret_cast<const uint8_t*>(bad.data()), bad.size()});
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << bad.size();
    ERR_clear_error();
  }
}

// Found by fuzz_certificates: OpenSSL decodes a signature BIT STRING that
// claims an unused bit which is set, and re-encodes it with that bit cleared.
TEST_F(CertificateTest, RefusesWhatIsNotDer) {
  std::string der = certToDer(leaf_);
  // The certificate ends with its signature (03 len 00 sig...): claim one
  // unused bit, and set it.
  der::Reader top(der::asBytes(der));
  der::Tlv cert, tbs, alg, sig;
  ASSERT_TRUE(top.expect(der::kSequence, &cert));
  der::Reader parts(cert.value);
  ASSERT_TRUE(parts.expect(der::kSequence, &tbs) && parts.expect(der::kSequence, &alg) &&
              parts.expect(der::kBitString, &sig));
  size_t at = der.size() - sig.value.size();  // the unused-bits byte
  ASSERT_EQ(der[at], '\0');
  std::string bad = der;
  bad[at] = '\x01';
  bad.back() = static_cast<char>(bad.back() | 1);
  auto r = parseCertificateDer({reinterpret_cast<const uint8_t*>(bad.data()), bad.size()});
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "not DER");
  // The same bytes in a PEM bundle.
  auto pem = parseCertificates(certToPem(ca_->root.get()) + derToPem(bad, "CERTIFICATE"));
  EXPECT_EQ(errorOf(pem).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(pem).message, "not DER");
  EXPECT_EQ(ERR_peek_error(), 0u);
  // The untouched certificate still parses.
  EXPECT_TRUE(parseCertificates(der).ok());
}

TEST_F(CertificateTest, DescribesLeaf) {
  CertificateInfo info = describeCertificate(leaf_);
  ASSERT_TRUE(info.spiffe_id.has_value());
  EXPECT_EQ(*info.spiffe_id, kWeb);
  EXPECT_EQ(info.uri_sans, std::vector<std::string>{kWeb});
  EXPECT_FALSE(info.is_ca);
  EXPECT_FALSE(info.path_length.has_value());
  EXPECT_FALSE(info.self_signed);
  EXPECT_EQ(info.subject, "");
  EXPECT_EQ(info.issuer, "CN=meshid intermediate,O=example.org");
  EXPECT_EQ(info.key, "ECDSA P-256");
  EXPECT_EQ(info.not_before, t0() - 60s);
  EXPECT_EQ(info.not_after, t0() + 1h);
  EXPECT_EQ(info.key_usage, std::vector<std::string>{"digitalSignature"});
  EXPECT_EQ(info.ext_key_usage, (std::vector<std::string>{"serverAuth", "clientAuth"}));
}

TEST_F(CertificateTest, DescribesRootAndIntermediate) {
  CertificateInfo root = describeCertificate(ca_->root.get());
  EXPECT_TRUE(root.is_ca);
  EXPECT_TRUE(root.self_signed);
  EXPECT_FALSE(root.path_length.has_value());
  EXPECT_EQ(root.subject, root.issuer);
  EXPECT_EQ(root.subject, "CN=meshid root,O=example.org");
  // A CA may carry its trust domain's ID: that is the spiffe_id reported.
  EXPECT_EQ(root.spiffe_id, "spiffe://example.org");
  EXPECT_EQ(root.key_usage, (std::vector<std::string>{"keyCertSign", "cRLSign"}));

  CertificateInfo mid = describeCertificate(ca_->intermediate.get());
  EXPECT_TRUE(mid.is_ca);
  EXPECT_FALSE(mid.self_signed);
  ASSERT_TRUE(mid.path_length.has_value());
  EXPECT_EQ(*mid.path_length, 0);
}

TEST_F(CertificateTest, FingerprintIsSha256OfDerAsColonHex) {
  std::string fp = describeCertificate(leaf_).sha256_fingerprint;
  ASSERT_EQ(fp.size(), 32u * 3 - 1) << fp;
  for (size_t i = 0; i < fp.size(); ++i) {
    if (i % 3 == 2) {
      EXPECT_EQ(fp[i], ':') << fp;
    } else {
      EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(fp[i])) &&
                  !std::islower(static_cast<unsigned char>(fp[i])))
          << fp;
    }
  }
  std::string der = certToDer(leaf_);
  unsigned char md[32];
  unsigned int len = 0;
  ASSERT_EQ(EVP_Digest(der.data(), der.size(), md, &len, EVP_sha256(), nullptr), 1);
  ASSERT_EQ(len, 32u);
  for (unsigned int i = 0; i < len; ++i) {
    EXPECT_EQ(std::stoul(fp.substr(i * 3, 2), nullptr, 16), md[i]) << "byte " << i;
  }
  EXPECT_NE(fp, describeCertificate(ca_->root.get()).sha256_fingerprint);
}

TEST_F(CertificateTest, SerialHexIsLowercaseAndMatchesSerial) {
  std::string hex = describeCertificate(leaf_).serial_hex;
  ASSERT_FALSE(hex.empty());
  for (char c : hex) {
    EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f')) << hex;
  }
  BIGNUM* parsed = nullptr;
  ASSERT_GT(BN_hex2bn(&parsed, hex.c_str()), 0);
  BignumPtr from_hex(parsed);
  BignumPtr actual(ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf_), nullptr));
  EXPECT_EQ(BN_cmp(from_hex.get(), actual.get()), 0);
  EXPECT_EQ(serialHex(leaf_), hex);
}

TEST_F(CertificateTest, SpiffeIdIsFirstValidUriSan) {
  EvpPkeyPtr key = newKey();
  X509Ptr cert = testing::craftCertificate(
      {.public_key = key.get(),
       .extensions = {{NID_subject_alt_name,
                       "URI:https://example.org/x,URI:spiffe://example.org/b,"
                       "URI:spiffe://example.org/c,DNS:b.example.org,IP:192.0.2.1"}}},
      ca_->intermediate.get(), ca_->intermediate_key.get());
  CertificateInfo info = describeCertificate(cert.get());
  EXPECT_EQ(info.spiffe_id, "spiffe://example.org/b");
  EXPECT_EQ(info.uri_sans.size(), 3u);
  EXPECT_EQ(info.dns_sans, std::vector<std::string>{"b.example.org"});
  EXPECT_EQ(info.ip_sans, std::vector<std::string>{"192.0.2.1"});
  // No valid SPIFFE ID at all: none reported.
  X509Ptr plain = testing::craftCertificate(
      {.public_key = key.get(),
       .extensions = {{NID_subject_alt_name, "URI:spiffe://Bad.example/x"}}},
      ca_->intermediate.get(), ca_->intermediate_key.get());
  EXPECT_FALSE(describeCertificate(plain.get()).spiffe_id.has_value());
}

TEST_F(CertificateTest, DescribesRsaKey) {
  EvpPkeyPtr rsa = newKey(KeyType::kRsa2048);
  X509Ptr cert = ca_->issueLeaf(rsa.get(), kWeb);
  CertificateInfo info = describeCertificate(cert.get());
  EXPECT_EQ(info.key, "RSA 2048");
  EXPECT_EQ(info.key_usage, (std::vector<std::string>{"digitalSignature", "keyEncipherment"}));
}

}  // namespace
}  // namespace meshid::pki
