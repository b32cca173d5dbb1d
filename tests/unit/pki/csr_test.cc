#include "pki/csr.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <string>
#include <vector>

#include "pki/key.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::pki {
namespace {

using meshid::testing::errorOf;
using meshid::testing::orThrow;
using testing::craftCsr;
using testing::newEcKey;
using testing::newKey;
using testing::newRsaKey;
using testing::reqToDer;
using testing::spiffeId;

constexpr const char* kWeb = "spiffe://example.org/ns/default/sa/web";

EvpPkeyPtr keyOf(const ParsedCsr& csr) {
  return orThrow(publicKeyFromSpki(der::asBytes(csr.spki_der)), "csr key");
}

class CsrTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { key_ = newKey(KeyType::kEcP256).release(); }
  static void TearDownTestSuite() { EVP_PKEY_free(key_); }

  static const EVP_PKEY* key() { return key_; }
  static X509ReqPtr goodCsr() { return orThrow(buildCsr(key_, spiffeId(kWeb)), "csr"); }
  static std::string goodPem() { return csrToPem(goodCsr().get()); }
  static std::string goodDer() { return reqToDer(goodCsr().get()); }

  // parseCsr failed with INVALID_ARGUMENT naming `reason`, and left nothing on
  // OpenSSL's error queue to confuse a later, unrelated call.
  static void expectRefused(std::string_view input, std::string_view reason) {
    auto r = parseCsr(input);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
    MESHID_EXPECT_CONTAINS(errorOf(r).message, std::string(reason));
    EXPECT_EQ(ERR_peek_error(), 0ul) << "OpenSSL error queue not drained";
    ERR_clear_error();
  }

 private:
  static EVP_PKEY* key_;
};
EVP_PKEY* CsrTest::key_ = nullptr;

// A PEM block named `name` around arbitrary bytes.
std::string pemBlock(const char* name, std::string_view der) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio(bio.get(), name, "", reinterpret_cast<const unsigned char*>(der.data()),
                static_cast<long>(der.size()));
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

TEST_F(CsrTest, PemRoundTrips) {
  std::string pem = goodPem();
  EXPECT_TRUE(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n")) << pem;
  auto parsed = parseCsr(pem);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->uri_sans, std::vector<std::string>{kWeb});
  EXPECT_TRUE(parsed->dns_sans.empty());
  EXPECT_EQ(parsed->subject, "");
  EXPECT_EQ(EVP_PKEY_eq(keyOf(*parsed).get(), key()), 1);
  auto id = csrSpiffeId(*parsed);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(id->str(), kWeb);
}

TEST_F(CsrTest, DerRoundTrips) {
  auto parsed = parseCsr(goodDer());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->uri_sans, std::vector<std::string>{kWeb});
  EXPECT_EQ(EVP_PKEY_eq(keyOf(*parsed).get(), key()), 1);
}

TEST_F(CsrTest, RoundTripsForEveryAlgorithm) {
  for (KeyType type : {KeyType::kEcP384, KeyType::kRsa2048, KeyType::kEd25519}) {
    EvpPkeyPtr k = newKey(type);
    auto req = buildCsr(k.get(), spiffeId(kWeb));
    ASSERT_TRUE(req.ok()) << keyTypeName(type) << ": " << req.error().message;
    auto parsed = parseCsr(csrToPem(req->get()));
    ASSERT_TRUE(parsed.ok()) << keyTypeName(type) << ": " << parsed.error().message;
    EXPECT_EQ(EVP_PKEY_eq(keyOf(*parsed).get(), k.get()), 1) << keyTypeName(type);
  }
}

TEST_F(CsrTest, BuiltCsrHasEmptySubjectAndCriticalUriSan) {
  X509ReqPtr req = goodCsr();
  EXPECT_EQ(X509_NAME_entry_count(X509_REQ_get_subject_name(req.get())), 0);
  ExtensionStackPtr exts(X509_REQ_get_extensions(req.get()));
  ASSERT_TRUE(exts);
  ASSERT_EQ(sk_X509_EXTENSION_num(exts.get()), 1);
  X509_EXTENSION* san = sk_X509_EXTENSION_value(exts.get(), 0);
  EXPECT_EQ(OBJ_obj2nid(X509_EXTENSION_get_object(san)), NID_subject_alt_name);
  EXPECT_EQ(X509_EXTENSION_get_critical(san), 1);
}

TEST_F(CsrTest, BuildRefusesWeakKey) {
  EvpPkeyPtr weak = newRsaKey(1024);
  EXPECT_EQ(errorOf(buildCsr(weak.get(), spiffeId(kWeb))).code, Code::kInvalidArgument);
}

TEST_F(CsrTest, AcceptsNewCertificateRequestLabel) {
  std::string pem = goodPem();
  auto swap = [&](std::string_view from, std::string_view to) {
    pem.replace(pem.find(from), from.size(), to);
  };
  swap("BEGIN CERTIFICATE REQUEST", "BEGIN NEW CERTIFICATE REQUEST");
  swap("END CERTIFICATE REQUEST", "END NEW CERTIFICATE REQUEST");
  MESHID_EXPECT_OK(parseCsr(pem));
}

TEST_F(CsrTest, ReportsSubjectAndEveryKindOfSan) {
  X509ReqPtr req = craftCsr(key(),
                            {"URI:spiffe://example.org/a,DNS:web.default.svc,DNS:web,"
                             "IP:10.0.0.1,IP:2001:db8::1,email:ops@example.org"},
                            {{"O", "example.org"}, {"CN", "web"}});
  auto parsed = parseCsr(reqToDer(req.get()));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->subject, "CN=web,O=example.org");
  EXPECT_EQ(parsed->uri_sans, std::vector<std::string>{"spiffe://example.org/a"});
  EXPECT_EQ(parsed->dns_sans, (std::vector<std::string>{"web.default.svc", "web"}));
  EXPECT_EQ(parsed->ip_sans, (std::vector<std::string>{"10.0.0.1", "2001:db8:0:0:0:0:0:1"}));
  EXPECT_EQ(parsed->email_sans, std::vector<std::string>{"ops@example.org"});
  EXPECT_EQ(csrSpiffeId(*parsed)->str(), "spiffe://example.org/a");
}

TEST_F(CsrTest, SpiffeIdRejectsTwoUriSans) {
  X509ReqPtr req = craftCsr(key(), {"URI:spiffe://example.org/a,URI:spiffe://example.org/b"});
  auto parsed = parseCsr(reqToDer(req.get()));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->uri_sans.size(), 2u);
  auto id = csrSpiffeId(*parsed);
  EXPECT_EQ(errorOf(id).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(id).message, "2 URI SANs");
}

TEST_F(CsrTest, RejectsTwoSubjectAltNameExtensions) {
  // Each extension alone is a valid SVID request; together a parser that read
  // only the first (or the last) would certify the wrong identity.
  X509ReqPtr req = craftCsr(key(), {"URI:spiffe://example.org/a", "URI:spiffe://example.org/b"});
  expectRefused(reqToDer(req.get()), "more than one subjectAltName");
}

TEST_F(CsrTest, SpiffeIdRejectsCsrWithoutUriSan) {
  for (const std::vector<std::string>& sans :
       {std::vector<std::string>{}, std::vector<std::string>{"DNS:web.example.org"}}) {
    X509ReqPtr req = craftCsr(key(), sans, {{"CN", "spiffe://example.org/a"}});
    auto parsed = parseCsr(reqToDer(req.get()));
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    auto id = csrSpiffeId(*parsed);
    EXPECT_EQ(errorOf(id).code, Code::kInvalidArgument);
    MESHID_EXPECT_CONTAINS(errorOf(id).message, "no URI SAN");
  }
}

TEST_F(CsrTest, SpiffeIdRejectsTrustDomainOnlyId) {
  X509ReqPtr req = craftCsr(key(), {"URI:spiffe://example.org"});
  auto parsed = parseCsr(reqToDer(req.get()));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  auto id = csrSpiffeId(*parsed);
  EXPECT_EQ(errorOf(id).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(id).message, "no path");
}

TEST_F(CsrTest, SpiffeIdRejectsInvalidUri) {
  for (const char* san : {"URI:https://example.org/a", "URI:spiffe://Example.org/a",
                          "URI:spiffe://example.org/a/../b", "URI:spiffe://example.org:1/a"}) {
    X509ReqPtr req = craftCsr(key(), {san});
    auto parsed = parseCsr(reqToDer(req.get()));
    ASSERT_TRUE(parsed.ok()) << san << ": " << parsed.error().message;
    EXPECT_EQ(errorOf(csrSpiffeId(*parsed)).code, Code::kInvalidArgument) << san;
  }
}

TEST_F(CsrTest, RejectsUnsupportedSanType) {
  X509ReqPtr req = craftCsr(key(), {"URI:spiffe://example.org/a,otherName:1.2.3.4;UTF8:x"});
  expectRefused(reqToDer(req.get()), "unsupported subjectAltName");
}

TEST_F(CsrTest, RejectsMalformedSanExtension) {
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_pubkey(req.get(), const_cast<EVP_PKEY*>(key()));
  Asn1OctetStringPtr junk(ASN1_OCTET_STRING_new());
  ASN1_OCTET_STRING_set(junk.get(), reinterpret_cast<const unsigned char*>("\x30\x05\x86\x01"), 4);
  ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
  sk_X509_EXTENSION_push(
      exts.get(), X509_EXTENSION_create_by_NID(nullptr, NID_subject_alt_name, 0, junk.get()));
  ASSERT_EQ(X509_REQ_add_extensions(req.get(), exts.get()), 1);
  ASSERT_GT(X509_REQ_sign(req.get(), const_cast<EVP_PKEY*>(key()), EVP_sha256()), 0);
  expectRefused(reqToDer(req.get()), "malformed subjectAltName");
}

TEST_F(CsrTest, RejectsRsa1024Csr) {
  EvpPkeyPtr weak = newRsaKey(1024);
  X509ReqPtr req = craftCsr(weak.get(), {std::string("URI:") + kWeb});
  expectRefused(reqToDer(req.get()), "too weak");
  expectRefused(csrToPem(req.get()), "too weak");
}

TEST_F(CsrTest, RejectsUnknownCurveCsr) {
  EvpPkeyPtr k = newEcKey("secp256k1");
  X509ReqPtr req = craftCsr(k.get(), {std::string("URI:") + kWeb});
  expectRefused(reqToDer(req.get()), "secp256k1");
}

TEST_F(CsrTest, RejectsExplicitCurveCsr) {
  // Go's crypto/x509 and BoringSSL refuse such keys in certificates; never certify one.
  EvpPkeyPtr k = testing::explicitCurveKey();
  X509ReqPtr req = craftCsr(k.get(), {std::string("URI:") + kWeb});
  expectRefused(reqToDer(req.get()), "explicit curve parameters");
}

TEST_F(CsrTest, RejectsBadSignature) {
  std::string der = goodDer();
  der.back() ^= 0x01;  // the last byte belongs to the signature value
  expectRefused(der, "signature does not verify");
}

TEST_F(CsrTest, RejectsTamperedIdentity) {
  // Someone else's valid CSR with the SAN edited: no proof of possession.
  std::string der = goodDer();
  size_t at = der.find("sa/web");
  ASSERT_NE(at, std::string::npos);
  der[at + 3] = 'x';  // ".../sa/xeb"
  expectRefused(der, "signature does not verify");
}

TEST_F(CsrTest, RejectsTruncatedDer) {
  std::string der = goodDer();
  for (size_t len : {size_t{1}, size_t{2}, size_t{10}, der.size() / 2, der.size() - 1}) {
    expectRefused(std::string_view(der).substr(0, len), "malformed certificate signing request");
  }
}

TEST_F(CsrTest, RejectsTrailingBytes) {
  std::string der = goodDer();
  expectRefused(der + std::string(1, '\0'), "trailing bytes");
  expectRefused(der + der, "trailing bytes");
  // The same inside PEM.
  expectRefused(pemBlock("CERTIFICATE REQUEST", der + "x"), "trailing bytes");
}

TEST_F(CsrTest, RejectsOversizeInput) {
  expectRefused(std::string(kMaxCsrBytes + 1, 'A'), "larger than the limit");
  // A valid CSR padded past the limit is refused before any parsing.
  expectRefused(goodPem() + std::string(kMaxCsrBytes, '\n'), "larger than the limit");
  // At the limit the size check passes and the content decides.
  std::string pem = goodPem();
  MESHID_EXPECT_OK(parseCsr(pem + std::string(kMaxCsrBytes - pem.size(), '\n')));
}

TEST_F(CsrTest, RejectsEmptyInput) {
  expectRefused("", "empty");
}

TEST_F(CsrTest, RejectsGarbage) {
  expectRefused("hello world", "malformed certificate signing request");
  expectRefused(std::string(100, '\xff'), "malformed certificate signing request");
  expectRefused(
      "-----BEGIN CERTIFICATE REQUEST-----\n@@@@ not base64 @@@@\n"
      "-----END CERTIFICATE REQUEST-----\n",
      "malformed PEM");
  expectRefused(pemBlock("CERTIFICATE REQUEST", "\x30\x03\x02\x01\x00"),
                "malformed certificate signing request");
}

TEST_F(CsrTest, RejectsTruncatedPem) {
  std::string pem = goodPem();
  expectRefused(pem.substr(0, pem.size() / 2), "malformed PEM");
  expectRefused(pem.substr(0, pem.size() - 30), "malformed PEM");  // END line cut
}

// The PEM framing we accept is a subset of what OpenSSL's PEM reader reads
// to the same bytes (tests/fuzz/fuzz_csr.cc checks the same on mutations).
TEST_F(CsrTest, AcceptsPemLayoutsOpenSslReads) {
  std::string pem = goodPem();
  std::string body = pem.substr(pem.find('\n') + 1);
  body = body.substr(0, body.find("-----END"));
  std::string one_line;  // the body without its line breaks: one line over 255 bytes
  for (char c : body)
    if (c != '\n')
      one_line.push_back(c);
  ASSERT_GT(one_line.size(), 255u);
  auto replaceAll = [](std::string s, std::string_view from, std::string_view to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
      s.replace(at, from.size(), to);
    return s;
  };
  const std::string kBegin = "-----BEGIN CERTIFICATE REQUEST-----";
  const std::string kEnd = "-----END CERTIFICATE REQUEST-----";
  for (const std::string& layout : {
           replaceAll(pem, "\n", "\r\n"),                  // CRLF line ends
           kBegin + "\n" + one_line + "\n" + kEnd + "\n",  // the body on one line
           kBegin + " \t\n" + replaceAll(body, "\n", " \n") + kEnd + "  \n",  // trailing blanks
           kBegin + "\n" + replaceAll(body, "A", " A") +
               kEnd,  // spaces inside lines, no final newline
           "Certificate request for web:\nsubject=\n" + pem + "trailing text\n",  // text around
           "-----BEGIN NEW CERTIFICATE REQUEST-----\n" + body +
               "-----END NEW CERTIFICATE REQUEST-----\n",
       }) {
    auto parsed = parseCsr(layout);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message << "\n" << layout;
    EXPECT_EQ(parsed->uri_sans, std::vector<std::string>{kWeb});
    BioPtr bio(BIO_new_mem_buf(layout.data(), static_cast<int>(layout.size())));
    X509ReqPtr openssl(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    ASSERT_NE(openssl, nullptr) << "OpenSSL does not read it:\n" << layout;
    EXPECT_EQ(EVP_PKEY_eq(X509_REQ_get0_pubkey(openssl.get()), keyOf(*parsed).get()), 1);
  }
}

TEST_F(CsrTest, RejectsPemLayoutsOutsideTheFormat) {
  std::string pem = goodPem();
  size_t first_nl = pem.find('\n');
  std::string head = pem.substr(0, first_nl + 1);
  std::string body = pem.substr(first_nl + 1);
  std::string tail = body.substr(body.find("-----END"));
  body = body.substr(0, body.find("-----END"));
  size_t second_line = body.find('\n') + 1;
  expectRefused("prefix " + pem, "the BEGIN line does not start a line");
  expectRefused(head.substr(0, first_nl) + " x\n" + body + tail, "text after the BEGIN line");
  expectRefused(head + body.substr(0, body.size() - 1) + tail,
                "the END line does not start a line");
  expectRefused(head + body + tail.substr(0, tail.size() - 1) + "x\n", "text after the END line");
  // A blank line: OpenSSL would take the lines above it for headers.
  expectRefused(head + body.substr(0, second_line) + "\n" + body.substr(second_line) + tail,
                "not valid base64 lines");
  expectRefused(head + body.substr(0, second_line) + "  \t\n" + body.substr(second_line) + tail,
                "not valid base64 lines");
  expectRefused(head + "\n" + body + tail, "not valid base64 lines");
  // Padding inside the body, data after it, a length that is not whole quanta.
  std::string padded = body;
  padded.replace(8, 1, "=");
  expectRefused(head + padded + tail, "not valid base64 lines");
  std::string last = body.substr(0, body.size() - 1);  // the body without its last newline
  if (last.back() == '=') {
    expectRefused(head + body + "AAAA\n" + tail, "not valid base64 lines");  // after padding
  } else {
    expectRefused(head + body + "AAAA\n" + tail, "trailing bytes");  // whole quanta decode on
  }
  expectRefused(head + last + "A\n" + tail, "not valid base64 lines");
  expectRefused(head + "QQ=\n" + tail, "not valid base64 lines");
  expectRefused(head + "Q===\n" + tail, "not valid base64 lines");
  expectRefused(head + tail, "not valid base64 lines");
  expectRefused(head + body, "no END line");
  expectRefused(head.substr(0, first_nl), "no END line");
}

TEST_F(CsrTest, RejectsTwoPemBlocks) {
  expectRefused(goodPem() + goodPem(), "exactly one PEM block");
  // A second block of another kind after a good CSR is refused too.
  auto key_pem = privateKeyToPem(key());
  ASSERT_TRUE(key_pem.ok());
  expectRefused(goodPem() + *key_pem, "exactly one PEM block");
}

TEST_F(CsrTest, RejectsNonCsrPemBlock) {
  testing::TestCa ca = testing::TestCa::create();
  expectRefused(testing::certToPem(ca.root.get()), "not a CERTIFICATE REQUEST");
  // A private key pasted by mistake is refused without being echoed.
  auto key_pem = privateKeyToPem(key());
  ASSERT_TRUE(key_pem.ok());
  auto r = parseCsr(*key_pem);
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  std::string body_line = key_pem->substr(key_pem->find('\n') + 1, 20);
  MESHID_EXPECT_NOT_CONTAINS(errorOf(r).message, body_line);
}

}  // namespace
}  // namespace meshid::pki
