#include "pki/ca_directory.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/key.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::pki {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::TempDir;
using testing::certList;
using testing::certToPem;
using testing::craftCertificate;
using testing::kDay;
using testing::newKey;
using testing::signerFor;
using testing::spiffeId;
using testing::t0;
using testing::TestCa;
using testing::verifyAt;

unsigned modeOf(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    return 0xffff;
  }
  return st.st_mode & 07777;
}

void writeText(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out << data;
}

std::string readText(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// SEC1 / PKCS#1 PEM, as cert-manager writes tls.key by default.
std::string traditionalKeyPem(const EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string keyPem(const EVP_PKEY* key) {
  return meshid::testing::orThrow(privateKeyToPem(key), "key pem");
}

CaMaterial materialOf(const TestCa& ca) {
  CaMaterial m;
  m.layout = CaLayout::kIstioCacerts;
  m.signing_cert = shareX509(ca.intermediate.get());
  m.signing_key = shareKey(ca.intermediate_key.get());
  m.chain = certList({ca.intermediate.get()});
  m.roots = certList({ca.root.get()});
  return m;
}

bool sameCerts(const std::vector<X509Ptr>& a, std::initializer_list<const X509*> b) {
  if (a.size() != b.size()) {
    return false;
  }
  size_t i = 0;
  for (const X509* c : b) {
    if (X509_cmp(a[i++].get(), c) != 0) {
      return false;
    }
  }
  return true;
}

// Proves loaded material is usable: it signs a leaf that verifies to its roots.
void expectCanIssue(const CaMaterial& m) {
  auto signer = signerFor(m.signing_key);
  EvpPkeyPtr leaf_key = newKey();
  auto leaf = issueX509Svid({.public_key = leaf_key.get(),
                             .spiffe_id = spiffeId("spiffe://example.org/ns/a/sa/b"),
                             .lifetime = 1h,
                             .now = t0()},
                            m.signing_cert.get(), *signer);
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  std::vector<X509Ptr> chain;
  for (const auto& c : m.chain) {
    chain.push_back(shareX509(c.get()));
  }
  MESHID_EXPECT_OK(verifyChain(leaf->get(), chain, m.roots, verifyAt(t0())));
}

class CaDirectoryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ca_ = new TestCa(TestCa::create()); }
  static void TearDownTestSuite() { delete ca_; }
  void TearDown() override {
    EXPECT_EQ(ERR_peek_error(), 0ul) << "OpenSSL error queue not drained";
    ERR_clear_error();
  }
  static const TestCa& ca() { return *ca_; }

  // Istio cacerts written by hand, file by file.
  static void writeIstio(const fs::path& dir, const X509* signing, const EVP_PKEY* key,
                         const std::string& chain_pem, const std::string& roots_pem) {
    fs::create_directories(dir);
    writeText(dir / kCaCertFile, certToPem(signing));
    writeText(dir / kCaKeyFile, keyPem(key));
    if (!chain_pem.empty()) {
      writeText(dir / kCertChainFile, chain_pem);
    }
    writeText(dir / kRootCertFile, roots_pem);
  }

  TempDir tmp_;

 private:
  static TestCa* ca_;
};
TestCa* CaDirectoryTest::ca_ = nullptr;

TEST_F(CaDirectoryTest, WriteThenLoadRoundTrips) {
  MESHID_ASSERT_OK(writeIstioCacerts(tmp_.path(), materialOf(ca()), false));
  auto loaded = loadCaDirectory(tmp_.path(), t0());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->layout, CaLayout::kIstioCacerts);
  EXPECT_EQ(X509_cmp(loaded->signing_cert.get(), ca().intermediate.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq(loaded->signing_key.get(), ca().intermediate_key.get()), 1);
  EXPECT_TRUE(sameCerts(loaded->chain, {ca().intermediate.get()}));
  EXPECT_TRUE(sameCerts(loaded->roots, {ca().root.get()}));
  expectCanIssue(*loaded);
}

TEST_F(CaDirectoryTest, WritesIstioFileContents) {
  MESHID_ASSERT_OK(writeIstioCacerts(tmp_.path(), materialOf(ca()), false));
  auto chain = parseCertificatesPem(readText(tmp_ / kCertChainFile));
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  // cert-chain.pem runs from ca-cert up to and including the root.
  EXPECT_TRUE(sameCerts(*chain, {ca().intermediate.get(), ca().root.get()}));
  auto roots = parseCertificatesPem(readText(tmp_ / kRootCertFile));
  ASSERT_TRUE(roots.ok());
  EXPECT_TRUE(sameCerts(*roots, {ca().root.get()}));
  auto signing = parseCertificatesPem(readText(tmp_ / kCaCertFile));
  ASSERT_TRUE(signing.ok());
  EXPECT_TRUE(sameCerts(*signing, {ca().intermediate.get()}));
  auto key = parsePrivateKeyPem(readText(tmp_ / kCaKeyFile));
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(EVP_PKEY_eq(key->get(), ca().intermediate_key.get()), 1);
}

TEST_F(CaDirectoryTest, KeyFileIsOwnerOnly) {
  mode_t old = ::umask(0);
  auto r = writeIstioCacerts(tmp_.path(), materialOf(ca()), false);
  ::umask(old);
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(modeOf(tmp_ / kCaKeyFile), 0600u);
  EXPECT_EQ(modeOf(tmp_ / kCaCertFile), 0644u);
  EXPECT_EQ(modeOf(tmp_ / kCertChainFile), 0644u);
  EXPECT_EQ(modeOf(tmp_ / kRootCertFile), 0644u);
}

TEST_F(CaDirectoryTest, CreatesMissingDirectories) {
  fs::path dir = tmp_ / "a" / "b" / "cacerts";
  MESHID_ASSERT_OK(writeIstioCacerts(dir, materialOf(ca()), false));
  MESHID_EXPECT_OK(loadCaDirectory(dir, t0()));
}

TEST_F(CaDirectoryTest, RefusesOverwriteWithoutFlag) {
  MESHID_ASSERT_OK(writeIstioCacerts(tmp_.path(), materialOf(ca()), false));
  std::string key_before = readText(tmp_ / kCaKeyFile);
  TestCa second = TestCa::create();
  auto r = writeIstioCacerts(tmp_.path(), materialOf(second), false);
  EXPECT_EQ(errorOf(r).code, Code::kAlreadyExists);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "already exists");
  EXPECT_EQ(readText(tmp_ / kCaKeyFile), key_before);
  auto loaded = loadCaDirectory(tmp_.path(), t0());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(X509_cmp(loaded->signing_cert.get(), ca().intermediate.get()), 0);

  MESHID_ASSERT_OK(writeIstioCacerts(tmp_.path(), materialOf(second), true));
  auto replaced = loadCaDirectory(tmp_.path(), t0());
  ASSERT_TRUE(replaced.ok()) << replaced.error().message;
  EXPECT_EQ(X509_cmp(replaced->signing_cert.get(), second.intermediate.get()), 0);
}

TEST_F(CaDirectoryTest, RefusesOverwriteWhenAnyOneFileExists) {
  writeText(tmp_ / kRootCertFile, "operator's root\n");
  auto r = writeIstioCacerts(tmp_.path(), materialOf(ca()), false);
  EXPECT_EQ(errorOf(r).code, Code::kAlreadyExists);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, kRootCertFile);
  // Nothing else was written, and the existing file is untouched.
  EXPECT_FALSE(fs::exists(tmp_ / kCaKeyFile));
  EXPECT_FALSE(fs::exists(tmp_ / kCaCertFile));
  EXPECT_EQ(readText(tmp_ / kRootCertFile), "operator's root\n");
}

TEST_F(CaDirectoryTest, LoadsCertManagerLayout) {
  // tls.crt: the signing certificate followed by its chain; tls.key in SEC1.
  writeText(tmp_ / kTlsCrtFile, certToPem(ca().intermediate.get()) + certToPem(ca().root.get()));
  writeText(tmp_ / kTlsKeyFile, traditionalKeyPem(ca().intermediate_key.get()));
  writeText(tmp_ / kCaCrtFile, certToPem(ca().root.get()));
  auto loaded = loadCaDirectory(tmp_.path(), t0());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->layout, CaLayout::kCertManager);
  EXPECT_EQ(X509_cmp(loaded->signing_cert.get(), ca().intermediate.get()), 0);
  // The root is never part of the served chain.
  EXPECT_TRUE(sameCerts(loaded->chain, {ca().intermediate.get()}));
  EXPECT_TRUE(sameCerts(loaded->roots, {ca().root.get()}));
  expectCanIssue(*loaded);
}

TEST_F(CaDirectoryTest, LoadsCertManagerStyleCaCertificate) {
  // What cert-manager makes for an Istio seed: a self-signed root and a CA
  // with digitalSignature + keyEncipherment (+ certSign), a CN, a DNS SAN,
  // an RSA key in PKCS#1.
  EvpPkeyPtr root_key = newKey(KeyType::kRsa2048), ca_key = newKey(KeyType::kRsa2048);
  const std::string usages = "critical,digitalSignature,keyEncipherment,keyCertSign";
  X509Ptr root = craftCertificate(
      {.public_key = root_key.get(),
       .subject = {{"O", "cert-manager"}, {"CN", "selfsigned-root"}},
       .not_before = t0() - kDay,
       .not_after = t0() + 90 * kDay,
       .extensions = {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_key_usage, usages}}},
      nullptr, root_key.get());
  X509Ptr istio_ca =
      craftCertificate({.public_key = ca_key.get(),
                        .subject = {{"O", "cert-manager"}, {"CN", "istio-ca"}},
                        .not_before = t0() - kDay,
                        .not_after = t0() + 60 * kDay,
                        .extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                                       {NID_key_usage, usages},
                                       {NID_subject_alt_name, "DNS:istio-ca.istio-system.svc"}}},
                       root.get(), root_key.get());
  writeText(tmp_ / kTlsCrtFile, certToPem(istio_ca.get()));
  std::string pkcs1 = traditionalKeyPem(ca_key.get());
  ASSERT_TRUE(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
  writeText(tmp_ / kTlsKeyFile, pkcs1);
  writeText(tmp_ / kCaCrtFile, certToPem(root.get()));

  auto loaded = loadCaDirectory(tmp_.path(), t0());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->layout, CaLayout::kCertManager);
  EXPECT_EQ(X509_cmp(loaded->signing_cert.get(), istio_ca.get()), 0);
  expectCanIssue(*loaded);
}

TEST_F(CaDirectoryTest, LoadsSelfSignedCertManagerCa) {
  // A CA issued by cert-manager's SelfSigned issuer: tls.crt and ca.crt are the same root.
  writeText(tmp_ / kTlsCrtFile, certToPem(ca().root.get()));
  writeText(tmp_ / kTlsKeyFile, keyPem(ca().root_key.get()));
  writeText(tmp_ / kCaCrtFile, certToPem(ca().root.get()));
  auto loaded = loadCaDirectory(tmp_.path(), t0());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(X509_cmp(loaded->signing_cert.get(), ca().root.get()), 0);
  expectCanIssue(*loaded);
}

TEST_F(CaDirectoryTest, RefusesKeyNotMatchingCertificate) {
  EvpPkeyPtr other = newKey();
  writeIstio(tmp_.path(), ca().intermediate.get(), other.get(), "", certToPem(ca().root.get()));
  auto r = loadCaDirectory(tmp_.path(), t0());
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "key mismatch");
  MESHID_EXPECT_CONTAINS(errorOf(r).message, kCaKeyFile);
}

TEST_F(CaDirectoryTest, RefusesChainNotVerifyingToRoot) {
  TestCa other = TestCa::create();
  writeIstio(tmp_.path(), ca().intermediate.get(), ca().intermediate_key.get(), "",
             certToPem(other.root.get()));
  auto r = loadCaDirectory(tmp_.path(), t0());
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "does not chain to root-cert.pem");
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "unknown issuer");
}

TEST_F(CaDirectoryTest, RefusesExpiredSigningCertificate) {
  MESHID_ASSERT_OK(writeIstioCacerts(tmp_.path(), materialOf(ca()), false));
  auto r = loadCaDirectory(tmp_.path(), t0() + 400 * kDay);
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "expired");
}

TEST_F(CaDirectoryTest, RefusesNonCaSigningCertificate) {
  EvpPkeyPtr leaf_key = newKey();
  X509Ptr leaf = ca().issueLeaf(leaf_key.get(), "spiffe://example.org/ns/a/sa/b");
  writeIstio(tmp_.path(), leaf.get(), leaf_key.get(), "", certToPem(ca().root.get()));
  auto r = loadCaDirectory(tmp_.path(), t0());
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "not a CA");
}

TEST_F(CaDirectoryTest, RefusesCaWithoutKeyCertSign) {
  EvpPkeyPtr key = newKey();
  X509Ptr odd = craftCertificate(
      {.public_key = key.get(),
       .subject = {{"CN", "odd"}},
       .extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                      {NID_key_usage, "critical,digitalSignature,keyEncipherment"}}},
      ca().root.get(), ca().root_key.get());
  writeIstio(tmp_.path(), odd.get(), key.get(), "", certToPem(ca().root.get()));
  auto r = loadCaDirectory(tmp_.path(), t0());
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "keyCertSign");
}

TEST_F(CaDirectoryTest, LoadsThreeLevelChainFromCertChainFile) {
  TestCa deep = TestCa::create({.intermediate_path_length = 1});
  EvpPkeyPtr key = newKey();
  X509Ptr issuing =
      *issueIntermediateCertificate({.public_key = key.get(),
                                     .trust_domain = deep.trust_domain,
                                     .common_name = "issuing",
                                     .lifetime = 30 * kDay,
                                     .now = t0(),
                                     .path_length = 0},
                                    deep.intermediate.get(), *deep.intermediate_signer);
  std::string chain_pem =
      certToPem(issuing.get()) + certToPem(deep.intermediate.get()) + certToPem(deep.root.get());
  writeIstio(tmp_.path(), issuing.get(), key.get(), chain_pem, certToPem(deep.root.get()));
  auto loaded = loadCaDirectory(tmp_.path(), t0());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_TRUE(sameCerts(loaded->chain, {issuing.get(), deep.intermediate.get()}));
  expectCanIssue(*loaded);

  // Without cert-chain.pem the middle CA is missing.
  fs::remove(tmp_ / kCertChainFile);
  auto r = loadCaDirectory(tmp_.path(), t0());
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "unknown issuer");
}

TEST_F(CaDirectoryTest, LoadsSeveralRootsDuringRotation) {
  TestCa next = TestCa::create();
  writeIstio(tmp_.path(), ca().intermediate.get(), ca().intermediate_key.get(), "",
             certToPem(next.root.get()) + certToPem(ca().root.get()));
  auto loaded = loadCaDirectory(tmp_.path(), t0());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_TRUE(sameCerts(loaded->roots, {next.root.get(), ca().root.get()}));
}

TEST_F(CaDirectoryTest, LoadsKubernetesSymlinkLayout) {
  // What the kubelet mounts for a secret volume.
  fs::path dir = tmp_.path();
  fs::path data = dir / "..2026_11_25_09_00_00.123456789";
  MESHID_ASSERT_OK(writeIstioCacerts(data, materialOf(ca()), false));
  fs::create_directory_symlink(data.filename(), dir / "..data");
  for (const char* name : {kCaCertFile, kCaKeyFile, kCertChainFile, kRootCertFile}) {
    fs::create_symlink(fs::path("..data") / name, dir / name);
  }
  ASSERT_TRUE(fs::is_symlink(dir / kCaCertFile));
  auto loaded = loadCaDirectory(dir, t0());
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(X509_cmp(loaded->signing_cert.get(), ca().intermediate.get()), 0);
}

TEST_F(CaDirectoryTest, MissingDirectoryIsNotFound) {
  auto r = loadCaDirectory(tmp_ / "absent", t0());
  EXPECT_EQ(errorOf(r).code, Code::kNotFound);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "absent");
  EXPECT_EQ(errorOf(loadCaDirectory(tmp_.path(), t0())).code, Code::kNotFound);  // empty
}

TEST_F(CaDirectoryTest, MissingFileIsNotFound) {
  for (const char* missing : {kCaKeyFile, kRootCertFile}) {
    TempDir dir;
    MESHID_ASSERT_OK(writeIstioCacerts(dir.path(), materialOf(ca()), false));
    fs::remove(dir / missing);
    auto r = loadCaDirectory(dir.path(), t0());
    EXPECT_EQ(errorOf(r).code, Code::kNotFound) << missing;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, missing);
  }
}

TEST_F(CaDirectoryTest, RefusesGarbageFiles) {
  MESHID_ASSERT_OK(writeIstioCacerts(tmp_.path(), materialOf(ca()), false));
  writeText(tmp_ / kCaCertFile, "not a certificate\n");
  auto r = loadCaDirectory(tmp_.path(), t0());
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, kCaCertFile);

  MESHID_ASSERT_OK(writeIstioCacerts(tmp_.path(), materialOf(ca()), true));
  writeText(tmp_ / kCaKeyFile, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  r = loadCaDirectory(tmp_.path(), t0());
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, kCaKeyFile);
}

TEST_F(CaDirectoryTest, RefusesEncryptedKey) {
  writeIstio(tmp_.path(), ca().intermediate.get(), ca().intermediate_key.get(), "",
             certToPem(ca().root.get()));
  writeText(tmp_ / kCaKeyFile, *privateKeyToPem(ca().intermediate_key.get(), "pw"));
  auto r = loadCaDirectory(tmp_.path(), t0());
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "passphrase");
}

TEST(CaLayoutName, NamesBothLayouts) {
  EXPECT_EQ(caLayoutName(CaLayout::kIstioCacerts), "istio-cacerts");
  EXPECT_EQ(caLayoutName(CaLayout::kCertManager), "cert-manager");
}

}  // namespace
}  // namespace meshid::pki
