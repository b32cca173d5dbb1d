#include "pki/chain.h"

#include <gtest/gtest.h>
#include <openssl/err.h>

#include <string>
#include <vector>

#include "pki/key.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::pki {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using testing::certList;
using testing::craftCertificate;
using testing::kDay;
using testing::newKey;
using testing::spiffeId;
using testing::t0;
using testing::TestCa;
using testing::verifyAt;

constexpr const char* kWeb = "spiffe://example.org/ns/default/sa/web";

class ChainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = new TestCa(TestCa::create());
    leaf_key_ = newKey().release();
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(leaf_key_);
    delete ca_;
  }
  void TearDown() override {
    EXPECT_EQ(ERR_peek_error(), 0ul) << "OpenSSL error queue not drained";
    ERR_clear_error();
  }

  static const TestCa& ca() { return *ca_; }
  static const EVP_PKEY* leafKey() { return leaf_key_; }

  static Result<VerifiedChain> verify(const X509* leaf, SystemTime at = t0(),
                                      std::optional<SpiffeId> expected = std::nullopt) {
    return verifyChain(leaf, ca_->intermediates(), ca_->roots(),
                       {.at = at, .expected_id = std::move(expected), .svid_leaf_checks = true});
  }

  // A leaf of the usual SVID shape signed by the test intermediate; `extensions`
  // replace the defaults (so one field can be made wrong at a time).
  static X509Ptr craftLeaf(std::vector<std::pair<int, std::string>> extensions,
                           SystemTime not_before = t0() - 1h, SystemTime not_after = t0() + kDay) {
    return craftCertificate({.public_key = leaf_key_,
                             .subject = {},
                             .not_before = not_before,
                             .not_after = not_after,
                             .extensions = std::move(extensions)},
                            ca_->intermediate.get(), ca_->intermediate_key.get());
  }
  static std::vector<std::pair<int, std::string>> svidExtensions(
      std::string san = std::string("critical,URI:") + kWeb, std::string bc = "critical,CA:FALSE",
      std::string ku = "critical,digitalSignature") {
    return {{NID_basic_constraints, bc},
            {NID_key_usage, ku},
            {NID_ext_key_usage, "serverAuth,clientAuth"},
            {NID_subject_alt_name, san}};
  }

 private:
  static TestCa* ca_;
  static EVP_PKEY* leaf_key_;
};
TestCa* ChainTest::ca_ = nullptr;
EVP_PKEY* ChainTest::leaf_key_ = nullptr;

void expectUnauthenticated(const Result<VerifiedChain>& r, std::string_view reason) {
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, std::string(reason));
}

TEST_F(ChainTest, VerifiesLeafIntermediateRoot) {
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  auto r = verify(leaf.get(), t0(), spiffeId(kWeb));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->path.size(), 3u);
  EXPECT_EQ(X509_cmp(r->path[0].get(), leaf.get()), 0);
  EXPECT_EQ(X509_cmp(r->path[1].get(), ca().intermediate.get()), 0);
  EXPECT_EQ(X509_cmp(r->path[2].get(), ca().root.get()), 0);
  ASSERT_TRUE(r->spiffe_id.has_value());
  EXPECT_EQ(r->spiffe_id->str(), kWeb);
}

TEST_F(ChainTest, VerifiesAtBothEndsOfTheLeafValidity) {
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb, 1h);
  MESHID_EXPECT_OK(verify(leaf.get(), t0() - 60s));      // the backdated notBefore
  MESHID_EXPECT_OK(verify(leaf.get(), t0() + 1h - 1s));  // the last valid second
  // OpenSSL counts notAfter itself as expired, as issuance does for a CA.
  expectUnauthenticated(verify(leaf.get(), t0() + 1h), "expired");
  expectUnauthenticated(verify(leaf.get(), t0() - 61s), "not yet valid");
}

TEST_F(ChainTest, IntermediatesInAnyOrderWithExtras) {
  TestCa other = TestCa::create({.trust_domain = "other.org"});
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  auto r = verifyChain(
      leaf.get(), certList({other.intermediate.get(), other.root.get(), ca().intermediate.get()}),
      ca().roots(), verifyAt(t0()));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->path.size(), 3u);
}

TEST_F(ChainTest, TrustsAnyOfSeveralRoots) {
  TestCa other = TestCa::create();
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  auto r = verifyChain(leaf.get(), ca().intermediates(),
                       certList({other.root.get(), ca().root.get()}), verifyAt(t0()));
  MESHID_EXPECT_OK(r);
}

TEST_F(ChainTest, MissingIntermediateIsUnknownIssuer) {
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  auto r = verifyChain(leaf.get(), {}, ca().roots(), verifyAt(t0()));
  expectUnauthenticated(r, "unknown issuer");
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "meshid intermediate");
}

TEST_F(ChainTest, LeafFromAnotherRootIsUnknownIssuer) {
  // Same trust domain and the same CA names: only the keys differ.
  TestCa other = TestCa::create();
  X509Ptr foreign = other.issueLeaf(leafKey(), kWeb);
  expectUnauthenticated(verify(foreign.get()), "unknown issuer");
  // Given the foreign intermediate too, the chain still ends at an untrusted root.
  auto r = verifyChain(foreign.get(), other.intermediates(), ca().roots(), verifyAt(t0()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Code::kUnauthenticated);
}

TEST_F(ChainTest, ExpiredIntermediateIsExpired) {
  TestCa short_ca = TestCa::create({.intermediate_lifetime = 1h});
  // The leaf outlives its intermediate (made by hand: issueX509Svid would clamp
  // it), so the intermediate is what has expired at t0 + 2h.
  X509Ptr leaf = craftCertificate({.public_key = leafKey(),
                                   .not_before = t0(),
                                   .not_after = t0() + kDay,
                                   .extensions = svidExtensions()},
                                  short_ca.intermediate.get(), short_ca.intermediate_key.get());
  MESHID_ASSERT_OK(
      verifyChain(leaf.get(), short_ca.intermediates(), short_ca.roots(), verifyAt(t0() + 30min)));
  auto r = verifyChain(leaf.get(), short_ca.intermediates(), short_ca.roots(), verifyAt(t0() + 2h));
  expectUnauthenticated(r, "expired");
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "meshid intermediate");
}

TEST_F(ChainTest, NotYetValidLeafIsNotYetValid) {
  X509Ptr leaf = craftLeaf(svidExtensions(), t0() + 1h, t0() + kDay);
  auto r = verify(leaf.get());
  expectUnauthenticated(r, "not yet valid");
  MESHID_EXPECT_CONTAINS(errorOf(r).message, kWeb);
}

TEST_F(ChainTest, WrongExpectedSpiffeIdIsRefused) {
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  auto r = verify(leaf.get(), t0(), spiffeId("spiffe://example.org/ns/default/sa/db"));
  expectUnauthenticated(r, "wrong SPIFFE ID");
  MESHID_EXPECT_CONTAINS(errorOf(r).message, kWeb);
}

TEST_F(ChainTest, ExpectedIdIsCheckedWithoutSvidChecksToo) {
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  ChainVerifyOptions opts{.at = t0(), .expected_id = spiffeId(kWeb), .svid_leaf_checks = false};
  auto ok = verifyChain(leaf.get(), ca().intermediates(), ca().roots(), opts);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_FALSE(ok->spiffe_id.has_value());
  opts.expected_id = spiffeId("spiffe://example.org/other");
  expectUnauthenticated(verifyChain(leaf.get(), ca().intermediates(), ca().roots(), opts),
                        "wrong SPIFFE ID");
}

TEST_F(ChainTest, ForgedSignatureIsBadSignature) {
  // Names the real intermediate as issuer (name and AKI) but is signed by another key.
  EvpPkeyPtr forger = newKey();
  X509Ptr forged = craftCertificate({.public_key = leafKey(), .extensions = svidExtensions()},
                                    ca().intermediate.get(), forger.get());
  expectUnauthenticated(verify(forged.get()), "bad signature");
}

TEST_F(ChainTest, LeafSignedByLeafIsNotACa) {
  X509Ptr parent = ca().issueLeaf(leafKey(), kWeb);
  EvpPkeyPtr key = newKey();
  X509Ptr child = craftCertificate(
      {.public_key = key.get(), .extensions = svidExtensions("URI:spiffe://example.org/child")},
      parent.get(), leafKey());
  auto r = verifyChain(child.get(), certList({parent.get(), ca().intermediate.get()}), ca().roots(),
                       verifyAt(t0()));
  expectUnauthenticated(r, "not a CA");
}

TEST_F(ChainTest, CaBelowPathLengthZeroExceedsPathLength) {
  EvpPkeyPtr sub_key = newKey();
  X509Ptr sub_ca = craftCertificate({.public_key = sub_key.get(),
                                     .subject = {{"CN", "sub"}},
                                     .extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                                                    {NID_key_usage, "critical,keyCertSign"}}},
                                    ca().intermediate.get(), ca().intermediate_key.get());
  X509Ptr leaf = craftCertificate({.public_key = leafKey(), .extensions = svidExtensions()},
                                  sub_ca.get(), sub_key.get());
  auto r = verifyChain(leaf.get(), certList({sub_ca.get(), ca().intermediate.get()}), ca().roots(),
                       verifyAt(t0()));
  expectUnauthenticated(r, "path length exceeded");
}

TEST_F(ChainTest, UntrustedSelfSignedIsUnknownRoot) {
  TestCa other = TestCa::create();
  expectUnauthenticated(verifyChain(other.root.get(), {}, ca().roots(), verifyAt(t0(), false)),
                        "unknown root");
  X509Ptr foreign = other.issueLeaf(leafKey(), kWeb);
  expectUnauthenticated(
      verifyChain(foreign.get(), certList({other.intermediate.get(), other.root.get()}),
                  ca().roots(), verifyAt(t0())),
      "unknown root");
}

TEST_F(ChainTest, RefusesMissingInputs) {
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  EXPECT_EQ(errorOf(verifyChain(nullptr, {}, ca().roots(), verifyAt(t0()))).code,
            Code::kInvalidArgument);
  EXPECT_EQ(errorOf(verifyChain(leaf.get(), ca().intermediates(), {}, verifyAt(t0()))).code,
            Code::kInvalidArgument);
}

TEST_F(ChainTest, CheckSvidLeafAcceptsWellFormedLeaf) {
  // The control for the rejections below: only one field differs in each.
  X509Ptr leaf = craftLeaf(svidExtensions());
  auto id = checkSvidLeaf(leaf.get());
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(id->str(), kWeb);
  // keyEncipherment and keyAgreement are allowed (Istio adds keyEncipherment).
  X509Ptr istio = craftLeaf(svidExtensions(std::string("URI:") + kWeb, "critical,CA:FALSE",
                                           "critical,digitalSignature,keyEncipherment,"
                                           "keyAgreement"));
  MESHID_EXPECT_OK(checkSvidLeaf(istio.get()));
}

TEST_F(ChainTest, CheckSvidLeafRejectsCaLeaf) {
  X509Ptr leaf = craftLeaf(svidExtensions(std::string("URI:") + kWeb, "critical,CA:TRUE"));
  auto r = checkSvidLeaf(leaf.get());
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "is a CA");
  // OpenSSL's chain verification alone accepts it: the SVID check must catch it.
  MESHID_EXPECT_OK(
      verifyChain(leaf.get(), ca().intermediates(), ca().roots(), verifyAt(t0(), false)));
  expectUnauthenticated(verify(leaf.get()), "is a CA");
}

TEST_F(ChainTest, CheckSvidLeafRejectsKeyCertSignAndCrlSign) {
  for (const char* ku :
       {"critical,digitalSignature,keyCertSign", "critical,digitalSignature,cRLSign"}) {
    X509Ptr leaf = craftLeaf(svidExtensions(std::string("URI:") + kWeb, "critical,CA:FALSE", ku));
    auto r = checkSvidLeaf(leaf.get());
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated) << ku;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, "keyCertSign or cRLSign");
    expectUnauthenticated(verify(leaf.get()), "keyCertSign or cRLSign");
  }
}

TEST_F(ChainTest, CheckSvidLeafRejectsTwoUriSans) {
  X509Ptr leaf = craftLeaf(
      svidExtensions(std::string("URI:") + kWeb + ",URI:spiffe://example.org/ns/default/sa/admin"));
  auto r = checkSvidLeaf(leaf.get());
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "2 URI SANs");
  expectUnauthenticated(verify(leaf.get()), "2 URI SANs");
}

TEST_F(ChainTest, CheckSvidLeafRejectsIdWithoutPath) {
  X509Ptr leaf = craftLeaf(svidExtensions("URI:spiffe://example.org"));
  auto r = checkSvidLeaf(leaf.get());
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "no path");
  expectUnauthenticated(verify(leaf.get()), "no path");
}

TEST_F(ChainTest, CheckSvidLeafRejectsMissingOrInvalidUri) {
  X509Ptr dns_only = craftLeaf(svidExtensions("DNS:web.example.org"));
  auto r = checkSvidLeaf(dns_only.get());
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "no URI SAN");
  X509Ptr bad = craftLeaf(svidExtensions("URI:spiffe://example.org/a/../b"));
  r = checkSvidLeaf(bad.get());
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "not a valid SPIFFE ID");
}

TEST_F(ChainTest, CheckKeyMatchesCertificate) {
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  MESHID_EXPECT_OK(checkKeyMatchesCertificate(leaf.get(), leafKey()));
  EvpPkeyPtr other = newKey();
  auto r = checkKeyMatchesCertificate(leaf.get(), other.get());
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "key mismatch");
  MESHID_EXPECT_CONTAINS(errorOf(r).message, kWeb);
  EvpPkeyPtr ed = newKey(KeyType::kEd25519);
  EXPECT_EQ(errorOf(checkKeyMatchesCertificate(leaf.get(), ed.get())).code,
            Code::kFailedPrecondition);
}

// A certificate whose key does not decode (a point off its curve): a
// mismatch like any other, and OpenSSL's "decode error" is not left queued
// for the next caller's message (fuzz_sds_response found it left there).
TEST_F(ChainTest, AKeyThatDoesNotDecodeIsAMismatchAndLeavesNoError) {
  // A CA certificate: its label, unlike a leaf's, reads no extension that
  // would happen to drain the queue.
  const X509* leaf = ca().intermediate.get();
  unsigned char* der = nullptr;
  int len = i2d_X509(leaf, &der);
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  unsigned char* spki = nullptr;
  int spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &spki);
  std::string spki_der(reinterpret_cast<char*>(spki), static_cast<size_t>(spki_len));
  OPENSSL_free(spki);
  size_t at = bytes.find(spki_der);
  ASSERT_NE(at, std::string::npos);
  bytes[at + spki_der.size() - 1] ^= 0x01;  // the point's last byte: off the curve
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  X509Ptr broken(d2i_X509(nullptr, &p, static_cast<long>(bytes.size())));
  ASSERT_NE(broken, nullptr);
  ERR_clear_error();
  auto r = checkKeyMatchesCertificate(broken.get(), leafKey());
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(ChainTest, CertificateLabelNamesLeafOrCa) {
  X509Ptr leaf = ca().issueLeaf(leafKey(), kWeb);
  EXPECT_EQ(certificateLabel(leaf.get()), std::string("leaf ") + kWeb);
  EXPECT_EQ(certificateLabel(ca().root.get()), "root CA \"CN=meshid root,O=example.org\"");
  EXPECT_EQ(certificateLabel(ca().intermediate.get()),
            "CA \"CN=meshid intermediate,O=example.org\"");
}

}  // namespace
}  // namespace meshid::pki
