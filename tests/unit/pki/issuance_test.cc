// The X.509-SVID profile (PROTOCOLS.md §4), checked field by field with raw
// OpenSSL rather than with the project's own readers.
#include "pki/issuance.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>

#include "pki/key.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::pki {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using testing::findExtension;
using testing::kDay;
using testing::newKey;
using testing::newRsaKey;
using testing::signerFor;
using testing::spiffeId;
using testing::t0;
using testing::TestCa;

constexpr const char* kWeb = "spiffe://example.org/ns/default/sa/web";

time_t toTimeT(SystemTime t) {
  return std::chrono::system_clock::to_time_t(t);
}

// Exact comparison of an ASN1_TIME with a moment, independent of the code under test.
::testing::AssertionResult timeIs(const ASN1_TIME* actual, SystemTime expected) {
  if (ASN1_TIME_cmp_time_t(actual, toTimeT(expected)) == 0) {
    return ::testing::AssertionSuccess();
  }
  Asn1TimePtr want(ASN1_TIME_set(nullptr, toTimeT(expected)));
  BioPtr bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), actual);
  BIO_puts(bio.get(), " != ");
  ASN1_TIME_print(bio.get(), want.get());
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return ::testing::AssertionFailure() << std::string(data, static_cast<size_t>(len));
}

BignumPtr serialOf(const X509* cert) {
  return BignumPtr(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
}

std::string octets(const ASN1_OCTET_STRING* s) {
  if (s == nullptr) {
    return "<none>";
  }
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

class IssuanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = new TestCa(TestCa::create());
    leaf_key_ = newKey(KeyType::kEcP256).release();
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(leaf_key_);
    delete ca_;
  }
  static const TestCa& ca() { return *ca_; }
  static const EVP_PKEY* leafKey() { return leaf_key_; }
  static X509Ptr leaf(Seconds lifetime = 1h) { return ca_->issueLeaf(leaf_key_, kWeb, lifetime); }

  static Result<X509Ptr> issueWith(const X509* ca_cert, const KeySigner& signer,
                                   SystemTime now = t0(), Seconds lifetime = 1h,
                                   std::string_view id = kWeb) {
    return issueX509Svid(
        {.public_key = leaf_key_, .spiffe_id = spiffeId(id), .lifetime = lifetime, .now = now},
        ca_cert, signer);
  }

 private:
  static TestCa* ca_;
  static EVP_PKEY* leaf_key_;
};
TestCa* IssuanceTest::ca_ = nullptr;
EVP_PKEY* IssuanceTest::leaf_key_ = nullptr;

TEST_F(IssuanceTest, SerialIsPositiveRandomAndAtLeast64Bits) {
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    X509Ptr cert = leaf();
    const ASN1_INTEGER* raw = X509_get0_serialNumber(cert.get());
    EXPECT_EQ(ASN1_STRING_type(raw), V_ASN1_INTEGER) << "negative serial";
    BignumPtr serial = serialOf(cert.get());
    ASSERT_TRUE(serial);
    EXPECT_FALSE(BN_is_negative(serial.get()));
    EXPECT_FALSE(BN_is_zero(serial.get()));
    EXPECT_GE(BN_num_bits(serial.get()), 64);
    EXPECT_LE(BN_num_bytes(serial.get()), 20);  // RFC 5280 §4.1.2.2
    OsslStringPtr hex(BN_bn2hex(serial.get()));
    EXPECT_TRUE(seen.insert(hex.get()).second) << "serial repeated: " << hex.get();
  }
}

// The serial starts with the issue time (so the CA's issuance table, keyed by
// serial, grows at its end) and ends with 80 random bits.
TEST_F(IssuanceTest, SerialStartsWithTheIssueTimeThenRandomBits) {
  auto serialBytes = [&](SystemTime now) {
    auto issued = issueWith(ca().intermediate.get(), *ca().intermediate_signer, now);
    if (!issued.ok())
      throw std::runtime_error(issued.error().message);
    X509Ptr cert = std::move(issued).value();
    const ASN1_INTEGER* raw = X509_get0_serialNumber(cert.get());
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(raw)),
                       static_cast<size_t>(ASN1_STRING_length(raw)));
  };
  std::vector<std::string> in_order;
  for (auto at : {t0(), t0() + 1ms, t0() + 2s, t0() + 3 * kDay})
    in_order.push_back(serialBytes(at));
  for (size_t i = 0; i < in_order.size(); ++i) {
    ASSERT_EQ(in_order[i].size(), 16u);
    EXPECT_EQ(static_cast<unsigned char>(in_order[i][0]) & 0xc0, 0x40) << "positive, non-zero lead";
    if (i > 0) {
      EXPECT_LT(in_order[i - 1], in_order[i]) << "serials sort by issue time";
    }
  }
  // 1,790,000,000,000 ms = 0x01a0_c450_6c00, with 0x40 set in the first byte.
  EXPECT_EQ(in_order[0].substr(0, 6), std::string("\x41\xa0\xc4\x50\x6c\x00", 6));
  // Same millisecond: the same time prefix, different random tails.
  std::string a = serialBytes(t0()), b = serialBytes(t0());
  EXPECT_EQ(a.substr(0, 6), b.substr(0, 6));
  EXPECT_NE(a.substr(6), b.substr(6));
}

// The CA's signing threads draw serials from a SerialRandom (4 KiB of
// RAND_bytes at a time): across many refills no serial repeats, and each keeps
// the layout: 0x40 | 6 bytes of milliseconds | 10 random bytes.
TEST(SerialRandom, SerialsAreDistinctAcrossRefillsAndKeepTheLayout) {
  SerialRandom random;
  constexpr int kDraws = 5000;  // 409 serials per 4 KiB: a dozen refills
  static_assert(kDraws * 10 > 10 * static_cast<int>(SerialRandom::kBufferSize));
  std::set<std::string> tails;
  for (int i = 0; i < kDraws; ++i) {
    auto serial = leafSerial(t0(), random);
    ASSERT_TRUE(serial.ok()) << serial.error().message;
    // 1,790,000,000,000 ms = 0x01a0_c450_6c00, with 0x40 set in the first byte.
    ASSERT_EQ(std::string(reinterpret_cast<const char*>(serial->data()), 6),
              std::string("\x41\xa0\xc4\x50\x6c\x00", 6));
    std::string tail(reinterpret_cast<const char*>(serial->data()) + 6, 10);
    EXPECT_TRUE(tails.insert(tail).second) << "random part repeated at draw " << i;
  }
}

// A draw that does not fit in what is left of the buffer comes from a fresh
// buffer: bytes on either side of the boundary are never the same ones.
TEST(SerialRandom, RefillsWhenTheRestDoesNotFitAndNeverRepeatsBytes) {
  SerialRandom random;
  std::vector<unsigned char> first(SerialRandom::kBufferSize - 5), second(10),
      whole(SerialRandom::kBufferSize);
  ASSERT_TRUE(random.fill(first).ok());
  ASSERT_TRUE(random.fill(second).ok());  // 5 left: a refill
  ASSERT_TRUE(random.fill(whole).ok());   // a whole buffer again
  // 10 random bytes matching by chance at one offset: 2^-80.
  auto contains = [](const std::vector<unsigned char>& hay, const std::vector<unsigned char>& n) {
    return std::search(hay.begin(), hay.end(), n.begin(), n.end()) != hay.end();
  };
  EXPECT_FALSE(contains(first, second));
  EXPECT_FALSE(contains(whole, second));
  std::vector<unsigned char> head(whole.begin(), whole.begin() + 10);
  EXPECT_FALSE(contains(first, head));
  EXPECT_NE(std::vector<unsigned char>(first.begin(), first.begin() + 10), head);
}

// A leaf issued with a SerialRandom has the same serial layout as one without.
TEST_F(IssuanceTest, SerialFromASerialRandomHasTheSameLayout) {
  auto issuer = SvidIssuer::create(ca().intermediate.get(), *ca().intermediate_signer);
  ASSERT_TRUE(issuer.ok());
  SerialRandom random;
  std::set<std::string> seen;
  for (int i = 0; i < 3; ++i) {
    auto leaf = (*issuer)->issue({.public_key = leafKey(),
                                  .spiffe_id = spiffeId(kWeb),
                                  .lifetime = 1h,
                                  .now = t0(),
                                  .serial_random = &random});
    ASSERT_TRUE(leaf.ok()) << leaf.error().message;
    ASSERT_EQ(leaf->serial_hex.size(), 32u);
    EXPECT_EQ(leaf->serial_hex.substr(0, 12), "41a0c4506c00");
    EXPECT_TRUE(seen.insert(leaf->serial_hex).second);
    const auto* p = reinterpret_cast<const unsigned char*>(leaf->der.data());
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(leaf->der.size())));
    ASSERT_TRUE(cert);
    OsslStringPtr hex(BN_bn2hex(serialOf(cert.get()).get()));
    std::string in_cert(hex.get());
    std::transform(in_cert.begin(), in_cert.end(), in_cert.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    EXPECT_EQ(in_cert, leaf->serial_hex);
  }
}

TEST_F(IssuanceTest, SubjectIsEmpty) {
  X509Ptr cert = leaf();
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(cert.get())), 0);
  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(cert.get()),
                          X509_get_subject_name(ca().intermediate.get())),
            0);
}

TEST_F(IssuanceTest, HasExactlyOneCriticalUriSan) {
  X509Ptr cert = leaf();
  int at = X509_get_ext_by_NID(cert.get(), NID_subject_alt_name, -1);
  ASSERT_GE(at, 0);
  EXPECT_EQ(X509_get_ext_by_NID(cert.get(), NID_subject_alt_name, at), -1)
      << "second subjectAltName extension";
  X509_EXTENSION* ext = X509_get_ext(cert.get(), at);
  EXPECT_EQ(X509_EXTENSION_get_critical(ext), 1);
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
  ASSERT_TRUE(names);
  ASSERT_EQ(sk_GENERAL_NAME_num(names.get()), 1);
  const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), 0);
  ASSERT_EQ(gn->type, GEN_URI);
  EXPECT_EQ(octets(gn->d.uniformResourceIdentifier), kWeb);
}

TEST_F(IssuanceTest, BasicConstraintsCaFalseAndCritical) {
  X509Ptr cert = leaf();
  X509_EXTENSION* ext = findExtension(cert.get(), NID_basic_constraints);
  ASSERT_NE(ext, nullptr) << "basicConstraints missing";
  EXPECT_EQ(X509_EXTENSION_get_critical(ext), 1);
  BasicConstraintsPtr bc(static_cast<BASIC_CONSTRAINTS*>(X509V3_EXT_d2i(ext)));
  ASSERT_TRUE(bc);
  EXPECT_EQ(bc->ca, 0);
  EXPECT_EQ(bc->pathlen, nullptr);
  EXPECT_EQ(X509_check_ca(cert.get()), 0);
}

TEST_F(IssuanceTest, KeyUsageCriticalDigitalSignatureOnly) {
  X509Ptr cert = leaf();
  X509_EXTENSION* ext = findExtension(cert.get(), NID_key_usage);
  ASSERT_NE(ext, nullptr) << "keyUsage missing";
  EXPECT_EQ(X509_EXTENSION_get_critical(ext), 1);
  uint32_t ku = X509_get_key_usage(cert.get());
  EXPECT_TRUE(ku & KU_DIGITAL_SIGNATURE);
  EXPECT_FALSE(ku & KU_KEY_CERT_SIGN);
  EXPECT_FALSE(ku & KU_CRL_SIGN);
  EXPECT_FALSE(ku & KU_KEY_ENCIPHERMENT) << "an EC key cannot encipher";
}

TEST_F(IssuanceTest, RsaLeafAlsoGetsKeyEncipherment) {
  EvpPkeyPtr rsa = newKey(KeyType::kRsa2048);
  X509Ptr cert = ca().issueLeaf(rsa.get(), kWeb);
  uint32_t ku = X509_get_key_usage(cert.get());
  EXPECT_TRUE(ku & KU_DIGITAL_SIGNATURE);
  EXPECT_TRUE(ku & KU_KEY_ENCIPHERMENT);
  EXPECT_FALSE(ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_EQ(X509_EXTENSION_get_critical(findExtension(cert.get(), NID_key_usage)), 1);
}

TEST_F(IssuanceTest, ExtendedKeyUsageIsServerAndClientAuth) {
  X509Ptr cert = leaf();
  ExtKeyUsagePtr eku(static_cast<EXTENDED_KEY_USAGE*>(
      X509_get_ext_d2i(cert.get(), NID_ext_key_usage, nullptr, nullptr)));
  ASSERT_TRUE(eku) << "extKeyUsage missing";
  std::set<int> nids;
  for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()); ++i) {
    nids.insert(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku.get(), i)));
  }
  EXPECT_EQ(nids, (std::set<int>{NID_server_auth, NID_client_auth}));
  EXPECT_EQ(sk_ASN1_OBJECT_num(eku.get()), 2);
}

TEST_F(IssuanceTest, SubjectKeyIdPresentAndAuthorityKeyIdIsIssuerSki) {
  X509Ptr cert = leaf();
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(cert.get());
  ASSERT_NE(ski, nullptr) << "subjectKeyIdentifier missing";
  EXPECT_GT(ASN1_STRING_length(ski), 0);
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(cert.get());
  ASSERT_NE(aki, nullptr) << "authorityKeyIdentifier keyid missing";
  const ASN1_OCTET_STRING* issuer_ski = X509_get0_subject_key_id(ca().intermediate.get());
  ASSERT_NE(issuer_ski, nullptr);
  EXPECT_EQ(octets(aki), octets(issuer_ski));
  EXPECT_NE(octets(ski), octets(issuer_ski));
  // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING.
  unsigned char md[20];
  unsigned int len = 0;
  ASSERT_EQ(X509_pubkey_digest(cert.get(), EVP_sha1(), md, &len), 1);
  EXPECT_EQ(octets(ski), std::string(reinterpret_cast<char*>(md), len));
}

TEST_F(IssuanceTest, IsSignedByTheIntermediate) {
  X509Ptr cert = leaf();
  EXPECT_EQ(X509_verify(cert.get(), X509_get0_pubkey(ca().intermediate.get())), 1);
  EXPECT_NE(X509_verify(cert.get(), X509_get0_pubkey(ca().root.get())), 1);
  EXPECT_EQ(X509_get_version(cert.get()), X509_VERSION_3);
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(cert.get()), leafKey()), 1);
}

TEST(BackdateFor, IsMinOf60sAndATenthOfTheLifetime) {
  EXPECT_EQ(backdateFor(1h), 60s);
  EXPECT_EQ(backdateFor(24h), 60s);
  EXPECT_EQ(backdateFor(600s), 60s);
  EXPECT_EQ(backdateFor(599s), 59s);
  EXPECT_EQ(backdateFor(100s), 10s);
  EXPECT_EQ(backdateFor(5s), 0s);
}

TEST_F(IssuanceTest, OneHourLifetimeBackdatesSixtySeconds) {
  X509Ptr cert = leaf(1h);
  EXPECT_TRUE(timeIs(X509_get0_notAfter(cert.get()), t0() + 1h));
  EXPECT_TRUE(timeIs(X509_get0_notBefore(cert.get()), t0() - 60s));
}

TEST_F(IssuanceTest, HundredSecondLifetimeBackdatesTenSeconds) {
  X509Ptr cert = leaf(100s);
  EXPECT_TRUE(timeIs(X509_get0_notAfter(cert.get()), t0() + 100s));
  EXPECT_TRUE(timeIs(X509_get0_notBefore(cert.get()), t0() - 10s));
}

TEST_F(IssuanceTest, NotAfterClampedToCaNotAfter) {
  TestCa short_ca = TestCa::create({.intermediate_lifetime = 2h});
  X509Ptr cert = short_ca.issueLeaf(leafKey(), kWeb, 24h);
  EXPECT_TRUE(timeIs(X509_get0_notAfter(cert.get()), t0() + 2h));
  EXPECT_EQ(ASN1_TIME_compare(X509_get0_notAfter(cert.get()),
                              X509_get0_notAfter(short_ca.intermediate.get())),
            0);
  // Issued later in the CA's life, the clamp shortens the leaf further.
  X509Ptr later = short_ca.issueLeaf(leafKey(), kWeb, 24h, t0() + 90min);
  EXPECT_TRUE(timeIs(X509_get0_notAfter(later.get()), t0() + 2h));
  // The backdate still follows the requested lifetime.
  EXPECT_TRUE(timeIs(X509_get0_notBefore(later.get()), t0() + 90min - 60s));
}

TEST_F(IssuanceTest, RefusesExpiredCa) {
  TestCa short_ca = TestCa::create({.intermediate_lifetime = 2h});
  for (SystemTime at : {t0() + 2h, t0() + 2h + 1s, t0() + 30 * kDay}) {
    auto r = short_ca.tryIssueLeaf(leafKey(), kWeb, 1h, at);
    EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
    MESHID_EXPECT_CONTAINS(errorOf(r).message, "expired");
  }
  MESHID_EXPECT_OK(short_ca.tryIssueLeaf(leafKey(), kWeb, 1h, t0() + 2h - 1s));
}

TEST_F(IssuanceTest, RefusesNotYetValidCa) {
  // The intermediate's notBefore is t0 - 60 s (its own backdate).
  auto r = issueWith(ca().intermediate.get(), *ca().intermediate_signer, t0() - 61s);
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "not valid before");
}

TEST_F(IssuanceTest, RefusesCaKeyMismatch) {
  auto r = issueWith(ca().intermediate.get(), *ca().root_signer);
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "does not match");
}

TEST_F(IssuanceTest, RefusesNonCaSigner) {
  EvpPkeyPtr key = newKey();
  X509Ptr other_leaf = ca().issueLeaf(key.get(), "spiffe://example.org/other");
  auto r = issueWith(other_leaf.get(), *signerFor(key));
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "not a CA");
}

TEST_F(IssuanceTest, RefusesCaWithoutKeyCertSign) {
  EvpPkeyPtr key = newKey();
  X509Ptr odd_ca =
      testing::craftCertificate({.public_key = key.get(),
                                 .subject = {{"CN", "odd"}},
                                 .extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                                                {NID_key_usage, "critical,digitalSignature"}}},
                                ca().root.get(), ca().root_key.get());
  auto r = issueWith(odd_ca.get(), *signerFor(key));
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "keyCertSign");
}

TEST_F(IssuanceTest, RefusesTrustDomainOnlyId) {
  auto r = issueWith(ca().intermediate.get(), *ca().intermediate_signer, t0(), 1h,
                     "spiffe://example.org");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "no path");
}

TEST_F(IssuanceTest, RefusesZeroOrNegativeLifetime) {
  for (Seconds lifetime : {Seconds(0), Seconds(-1), Seconds(-3600)}) {
    auto r = issueWith(ca().intermediate.get(), *ca().intermediate_signer, t0(), lifetime);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << lifetime.count();
    MESHID_EXPECT_CONTAINS(errorOf(r).message, "lifetime");
  }
}

TEST_F(IssuanceTest, RefusesWeakOrMissingLeafKey) {
  EvpPkeyPtr weak = newRsaKey(1024);
  SvidRequest req{
      .public_key = weak.get(), .spiffe_id = spiffeId(kWeb), .lifetime = 1h, .now = t0()};
  auto r = issueX509Svid(req, ca().intermediate.get(), *ca().intermediate_signer);
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "too weak");
  EvpPkeyPtr explicit_curve = testing::explicitCurveKey();
  req.public_key = explicit_curve.get();
  EXPECT_EQ(errorOf(issueX509Svid(req, ca().intermediate.get(), *ca().intermediate_signer)).code,
            Code::kInvalidArgument);
  req.public_key = nullptr;
  EXPECT_EQ(errorOf(issueX509Svid(req, ca().intermediate.get(), *ca().intermediate_signer)).code,
            Code::kInvalidArgument);
}

struct CaKeyCase {
  KeyType type;
  const char* name;
  int signature_pkey_nid;
};

class IssuanceKeyTypeTest : public ::testing::TestWithParam<CaKeyCase> {};

TEST_P(IssuanceKeyTypeTest, EveryCaKeyTypeSignsVerifiableLeaves) {
  TestCa ca = TestCa::create({.key_type = GetParam().type});
  EvpPkeyPtr key = newKey(KeyType::kEd25519);
  X509Ptr cert = ca.issueLeaf(key.get(), kWeb);
  EXPECT_EQ(X509_verify(cert.get(), X509_get0_pubkey(ca.intermediate.get())), 1);
  EXPECT_EQ(X509_verify(ca.intermediate.get(), X509_get0_pubkey(ca.root.get())), 1);
  int pkey_nid = 0;
  ASSERT_EQ(OBJ_find_sigid_algs(X509_get_signature_nid(cert.get()), nullptr, &pkey_nid), 1);
  EXPECT_EQ(pkey_nid, GetParam().signature_pkey_nid);
}

INSTANTIATE_TEST_SUITE_P(
    CaKeys, IssuanceKeyTypeTest,
    ::testing::Values(CaKeyCase{KeyType::kEcP256, "EcP256", NID_X9_62_id_ecPublicKey},
                      CaKeyCase{KeyType::kEcP384, "EcP384", NID_X9_62_id_ecPublicKey},
                      CaKeyCase{KeyType::kRsa2048, "Rsa2048", NID_rsaEncryption},
                      CaKeyCase{KeyType::kEd25519, "Ed25519", NID_ED25519}),
    [](const ::testing::TestParamInfo<CaKeyCase>& info) { return info.param.name; });

TEST_F(IssuanceTest, RootIsSelfSignedCaWithKeyCertSign) {
  const X509* root = ca().root.get();
  EXPECT_EQ(X509_self_signed(const_cast<X509*>(root), 1), 1);
  EXPECT_EQ(X509_verify(const_cast<X509*>(root), ca().root_key.get()), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(root), X509_get_issuer_name(root)), 0);

  X509_EXTENSION* bc_ext = findExtension(root, NID_basic_constraints);
  ASSERT_NE(bc_ext, nullptr);
  EXPECT_EQ(X509_EXTENSION_get_critical(bc_ext), 1);
  BasicConstraintsPtr bc(static_cast<BASIC_CONSTRAINTS*>(X509V3_EXT_d2i(bc_ext)));
  ASSERT_TRUE(bc);
  EXPECT_NE(bc->ca, 0);
  EXPECT_EQ(bc->pathlen, nullptr);

  X509_EXTENSION* ku_ext = findExtension(root, NID_key_usage);
  ASSERT_NE(ku_ext, nullptr);
  EXPECT_EQ(X509_EXTENSION_get_critical(ku_ext), 1);
  uint32_t ku = X509_get_key_usage(const_cast<X509*>(root));
  EXPECT_TRUE(ku & KU_KEY_CERT_SIGN);
  EXPECT_FALSE(ku & KU_DIGITAL_SIGNATURE);

  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(const_cast<X509*>(root));
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(const_cast<X509*>(root));
  ASSERT_NE(ski, nullptr);
  ASSERT_NE(aki, nullptr);
  EXPECT_EQ(octets(aki), octets(ski));

  EXPECT_TRUE(timeIs(X509_get0_notAfter(root), t0() + 3650 * kDay));
  EXPECT_TRUE(timeIs(X509_get0_notBefore(root), t0() - 60s));
  BignumPtr serial = serialOf(root);
  EXPECT_FALSE(BN_is_negative(serial.get()));
  EXPECT_GE(BN_num_bits(serial.get()), 64);
}

TEST_F(IssuanceTest, CaCertificatesNameTheTrustDomain) {
  for (const X509* cert : {ca().root.get(), ca().intermediate.get()}) {
    X509_EXTENSION* ext = findExtension(cert, NID_subject_alt_name);
    ASSERT_NE(ext, nullptr);
    GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
    ASSERT_EQ(sk_GENERAL_NAME_num(names.get()), 1);
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), 0);
    ASSERT_EQ(gn->type, GEN_URI);
    EXPECT_EQ(octets(gn->d.uniformResourceIdentifier), "spiffe://example.org");
    const X509_NAME* subject = X509_get_subject_name(cert);
    int o = X509_NAME_get_index_by_NID(subject, NID_organizationName, -1);
    ASSERT_GE(o, 0);
    EXPECT_EQ(octets(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, o))), "example.org");
  }
}

TEST_F(IssuanceTest, RootRecordsRequestedPathLength) {
  EvpPkeyPtr key = newKey();
  auto root = issueRootCertificate({.public_key = key.get(),
                                    .trust_domain = ca().trust_domain,
                                    .common_name = "constrained root",
                                    .lifetime = kDay,
                                    .now = t0(),
                                    .path_length = 1},
                                   *signerFor(key));
  ASSERT_TRUE(root.ok()) << root.error().message;
  EXPECT_EQ(X509_get_pathlen(root->get()), 1);
}

TEST_F(IssuanceTest, RootRefusesForeignKey) {
  EvpPkeyPtr key = newKey(), other = newKey();
  auto root = issueRootCertificate({.public_key = key.get(),
                                    .trust_domain = ca().trust_domain,
                                    .common_name = "root",
                                    .lifetime = kDay,
                                    .now = t0(),
                                    .path_length = std::nullopt},
                                   *signerFor(other));
  EXPECT_EQ(errorOf(root).code, Code::kInvalidArgument);
}

TEST_F(IssuanceTest, CaRequestValidation) {
  EvpPkeyPtr key = newKey();
  CaCertificateRequest req{.public_key = key.get(),
                           .trust_domain = ca().trust_domain,
                           .common_name = "",
                           .lifetime = kDay,
                           .now = t0(),
                           .path_length = std::nullopt};
  auto signer = signerFor(key);
  EXPECT_EQ(errorOf(issueRootCertificate(req, *signer)).code, Code::kInvalidArgument);
  req.common_name = std::string(65, 'x');
  EXPECT_EQ(errorOf(issueRootCertificate(req, *signer)).code, Code::kInvalidArgument);
  req.common_name = std::string(64, 'x');
  MESHID_EXPECT_OK(issueRootCertificate(req, *signer));
  req.path_length = -1;
  EXPECT_EQ(errorOf(issueRootCertificate(req, *signer)).code, Code::kInvalidArgument);
  req.path_length = std::nullopt;
  req.lifetime = 0s;
  EXPECT_EQ(errorOf(issueRootCertificate(req, *signer)).code, Code::kInvalidArgument);
}

TEST_F(IssuanceTest, IntermediateChainsToRootWithPathLengthZero) {
  const X509* mid = ca().intermediate.get();
  EXPECT_EQ(X509_verify(const_cast<X509*>(mid), X509_get0_pubkey(ca().root.get())), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(mid), X509_get_subject_name(ca().root.get())), 0);
  EXPECT_EQ(X509_check_ca(const_cast<X509*>(mid)), 1);
  EXPECT_EQ(X509_get_pathlen(const_cast<X509*>(mid)), 0);
  EXPECT_TRUE(X509_get_key_usage(const_cast<X509*>(mid)) & KU_KEY_CERT_SIGN);
  EXPECT_EQ(octets(X509_get0_authority_key_id(const_cast<X509*>(mid))),
            octets(X509_get0_subject_key_id(ca().root.get())));
  EXPECT_TRUE(timeIs(X509_get0_notAfter(mid), t0() + 365 * kDay));
}

TEST_F(IssuanceTest, IntermediateWithPathLengthZeroCannotSignAnotherCa) {
  EvpPkeyPtr key = newKey();
  auto r = issueIntermediateCertificate({.public_key = key.get(),
                                         .trust_domain = ca().trust_domain,
                                         .common_name = "too deep",
                                         .lifetime = kDay,
                                         .now = t0(),
                                         .path_length = std::nullopt},
                                        ca().intermediate.get(), *ca().intermediate_signer);
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "path length 0");
}

TEST_F(IssuanceTest, IntermediatePathLengthMustFitUnderParent) {
  EvpPkeyPtr root_key = newKey(), mid_key = newKey();
  auto root_signer = signerFor(root_key);
  X509Ptr root = *issueRootCertificate({.public_key = root_key.get(),
                                        .trust_domain = ca().trust_domain,
                                        .common_name = "root pathlen 1",
                                        .lifetime = kDay,
                                        .now = t0(),
                                        .path_length = 1},
                                       *root_signer);
  CaCertificateRequest req{.public_key = mid_key.get(),
                           .trust_domain = ca().trust_domain,
                           .common_name = "mid",
                           .lifetime = kDay,
                           .now = t0(),
                           .path_length = 1};
  EXPECT_EQ(errorOf(issueIntermediateCertificate(req, root.get(), *root_signer)).code,
            Code::kInvalidArgument);
  req.path_length = 0;
  MESHID_EXPECT_OK(issueIntermediateCertificate(req, root.get(), *root_signer));
}

TEST_F(IssuanceTest, IntermediateClampedToParentAndRefusedByExpiredParent) {
  EvpPkeyPtr key = newKey();
  CaCertificateRequest req{.public_key = key.get(),
                           .trust_domain = ca().trust_domain,
                           .common_name = "long",
                           .lifetime = 20000 * kDay,
                           .now = t0(),
                           .path_length = 0};
  auto mid = issueIntermediateCertificate(req, ca().root.get(), *ca().root_signer);
  ASSERT_TRUE(mid.ok()) << mid.error().message;
  EXPECT_EQ(ASN1_TIME_compare(X509_get0_notAfter(mid->get()), X509_get0_notAfter(ca().root.get())),
            0);
  req.now = t0() + 3650 * kDay;
  auto late = issueIntermediateCertificate(req, ca().root.get(), *ca().root_signer);
  EXPECT_EQ(errorOf(late).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(late).message, "expired");
}

}  // namespace
}  // namespace meshid::pki
