#include "ca/authn/mtls_authenticator.h"

#include <gtest/gtest.h>

#include <string>

#include "pki/certificate.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using pki::testing::certToPem;
using pki::testing::craftCertificate;
using pki::testing::newKey;
using pki::testing::t0;
using pki::testing::TestCa;
using pki::testing::TestCaOptions;

constexpr std::string_view kWorkload = "spiffe://example.org/host/node-1";

CallerCredentials withCert(std::string pem) {
  CallerCredentials c;
  c.peer_certificate_pem = std::move(pem);
  c.peer = "ipv4:127.0.0.1:5555";
  return c;
}

class MtlsAuthenticatorTest : public ::testing::Test {
 protected:
  TestCa ca_ = TestCa::create();
  pki::EvpPkeyPtr key_ = newKey();
  FakeClock clock_{t0()};
  MtlsAuthenticator authn_{ca_.trust_domain, clock_};
};

TEST_F(MtlsAuthenticatorTest, NoCertificateIsNotMine) {
  auto r = authn_.authenticate(CallerCredentials{});
  MESHID_ASSERT_OK(r);
  EXPECT_FALSE(r->has_value());
}

TEST_F(MtlsAuthenticatorTest, BearerTokenPresentIsNotMine) {
  auto leaf = ca_.issueLeaf(key_.get(), kWorkload);
  CallerCredentials c = withCert(pki::certificateToPem(leaf.get()));
  c.bearer_token = "some.jwt.token";
  auto r = authn_.authenticate(c);
  MESHID_ASSERT_OK(r);
  EXPECT_FALSE(r->has_value());
  // Even an empty (unusable) authorization header defers to the token path,
  // which refuses it: a certificate never rescues a bad header.
  c.bearer_token = "";
  EXPECT_FALSE(authn_.authenticate(c)->has_value());
}

TEST_F(MtlsAuthenticatorTest, LeafOfThisTrustDomainIsItsIdentity) {
  auto leaf = ca_.issueLeaf(key_.get(), kWorkload);
  auto r = authn_.authenticate(withCert(pki::certificateToPem(leaf.get())));
  MESHID_ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->spiffe_id.str(), kWorkload);
  EXPECT_EQ((*r)->method, "mtls");
}

// The TLS layer checked the certificate at handshake time; a connection kept
// open past the certificate's expiry must not keep renewing with it.
TEST_F(MtlsAuthenticatorTest, ExpiredLeafIsUnauthenticatedEvenAfterASuccess) {
  auto leaf = ca_.issueLeaf(key_.get(), kWorkload, 1h);
  CallerCredentials c = withCert(pki::certificateToPem(leaf.get()));
  MESHID_ASSERT_OK(authn_.authenticate(c));
  clock_.advance(1h);
  auto r = authn_.authenticate(c);
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "expired");
}

// Repeated calls with one certificate (an agent renewing many workloads over
// its own SVID) give the same answer every time.
TEST_F(MtlsAuthenticatorTest, RepeatedCallsGiveTheSameIdentity) {
  auto leaf = ca_.issueLeaf(key_.get(), kWorkload);
  CallerCredentials c = withCert(pki::certificateToPem(leaf.get()));
  for (int i = 0; i < 3; ++i) {
    auto r = authn_.authenticate(c);
    MESHID_ASSERT_OK(r);
    ASSERT_TRUE(r->has_value());
    EXPECT_EQ((*r)->spiffe_id.str(), kWorkload);
    EXPECT_EQ((*r)->method, "mtls");
  }
  // A refused certificate stays refused on the next call too.
  CallerCredentials ca_cert = withCert(pki::certificateToPem(ca_.intermediate.get()));
  EXPECT_EQ(errorOf(authn_.authenticate(ca_cert)).code, Code::kUnauthenticated);
  EXPECT_EQ(errorOf(authn_.authenticate(ca_cert)).code, Code::kUnauthenticated);
}

TEST_F(MtlsAuthenticatorTest, LeafOfAnotherTrustDomainIsUnauthenticated) {
  TestCa other = TestCa::create(TestCaOptions{.trust_domain = "other.org"});
  auto leaf = other.issueLeaf(key_.get(), "spiffe://other.org/host/node-1");
  auto r = authn_.authenticate(withCert(pki::certificateToPem(leaf.get())));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "other.org");
}

TEST_F(MtlsAuthenticatorTest, CaCertificateAsClientIsUnauthenticated) {
  for (const X509* c : {ca_.intermediate.get(), ca_.root.get()}) {
    auto r = authn_.authenticate(withCert(pki::certificateToPem(c)));
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated) << pki::subjectString(c);
  }
}

// A CA:FALSE certificate that still carries keyCertSign, or two URI SANs,
// is no X.509-SVID (PROTOCOLS.md §4) even if the TLS layer accepted it.
TEST_F(MtlsAuthenticatorTest, NonSvidLeavesAreUnauthenticated) {
  using Spec = pki::testing::CertSpec;
  auto craft = [&](std::vector<std::pair<int, std::string>> exts) {
    return craftCertificate(Spec{.public_key = key_.get(), .extensions = std::move(exts)},
                            ca_.intermediate.get(), ca_.intermediate_key.get());
  };
  auto key_cert_sign =
      craft({{NID_basic_constraints, "critical,CA:FALSE"},
             {NID_key_usage, "critical,digitalSignature,keyCertSign"},
             {NID_subject_alt_name, std::string("URI:") + std::string(kWorkload)}});
  auto two_uris = craft({{NID_basic_constraints, "critical,CA:FALSE"},
                         {NID_key_usage, "critical,digitalSignature"},
                         {NID_subject_alt_name, std::string("URI:") + std::string(kWorkload) +
                                                    ",URI:spiffe://example.org/host/node-2"}});
  auto no_path = craft({{NID_basic_constraints, "critical,CA:FALSE"},
                        {NID_key_usage, "critical,digitalSignature"},
                        {NID_subject_alt_name, "URI:spiffe://example.org"}});
  auto no_uri = craft({{NID_basic_constraints, "critical,CA:FALSE"},
                       {NID_key_usage, "critical,digitalSignature"},
                       {NID_subject_alt_name, "DNS:node-1.example.org"}});
  for (const auto* c : {key_cert_sign.get(), two_uris.get(), no_path.get(), no_uri.get()}) {
    auto r = authn_.authenticate(withCert(certToPem(c)));
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  }
}

TEST_F(MtlsAuthenticatorTest, GarbagePemIsUnauthenticated) {
  for (std::string pem : {std::string(), std::string("garbage"),
                          std::string("-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                                      "CERTIFICATE-----\n")}) {
    auto r = authn_.authenticate(withCert(pem));
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated) << pem;
  }
}

// gRPC hands over the leaf; if a chain ever comes along, the first
// certificate is the one judged.
TEST_F(MtlsAuthenticatorTest, FirstCertificateOfAChainIsJudged) {
  auto leaf = ca_.issueLeaf(key_.get(), kWorkload);
  std::string chain =
      pki::certificateToPem(leaf.get()) + pki::certificateToPem(ca_.intermediate.get());
  auto r = authn_.authenticate(withCert(chain));
  MESHID_ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->spiffe_id.str(), kWorkload);

  std::string reversed =
      pki::certificateToPem(ca_.intermediate.get()) + pki::certificateToPem(leaf.get());
  EXPECT_EQ(errorOf(authn_.authenticate(withCert(reversed))).code, Code::kUnauthenticated);
}

}  // namespace
}  // namespace meshid::ca
