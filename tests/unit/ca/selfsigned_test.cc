#include "ca/signers/selfsigned.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/file_util.h"
#include "pki/ca_directory.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using meshid::testing::TempDir;
using pki::testing::kDay;
using pki::testing::t0;

unsigned modeOf(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    return 0xffff;
  }
  return st.st_mode & 07777;
}

std::string readText(const fs::path& p) {
  return orThrow(readFile(p, 1 << 20), "read");
}

std::string der(const X509* c) {
  return pki::certificateToDer(c);
}

class SelfSignedTest : public ::testing::Test {
 protected:
  SelfSignedConfig config() const {
    return SelfSignedConfig{.dir = dir_ / "ca",
                            .trust_domain = orThrow(pki::TrustDomain::parse("example.org")),
                            .key_type = pki::KeyType::kEcP256,
                            .root_ttl = 3650 * kDay,
                            .intermediate_ttl = 30 * kDay};
  }
  std::shared_ptr<const SigningMaterial> load() {
    return orThrow(loadOrCreateSelfSigned(config(), clock_), "self-signed");
  }

  TempDir dir_;
  FakeClock clock_{t0()};
};

TEST_F(SelfSignedTest, FirstCallCreatesFilesWithPrivateKeys) {
  auto m = load();
  fs::path ca = dir_ / "ca";
  for (const char* f :
       {"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem", "root/root-key.pem"}) {
    EXPECT_TRUE(fs::exists(ca / f)) << f;
  }
  EXPECT_EQ(modeOf(ca / "ca-key.pem"), 0600u);
  EXPECT_EQ(modeOf(ca / "root" / "root-key.pem"), 0600u);
  EXPECT_EQ(modeOf(ca) & 077, 0u) << "the CA folder is owner-only";

  ASSERT_TRUE(m);
  ASSERT_EQ(m->roots.size(), 1u);
  ASSERT_EQ(m->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(m->chain[0].get(), m->cert.get()), 0);
  EXPECT_TRUE(pki::isCa(m->cert.get()));
  EXPECT_TRUE(pki::isSelfSigned(m->roots[0].get()));
  EXPECT_EQ(pki::notAfter(m->cert.get()), t0() + 30 * kDay);
  // The root key stays out of the cacerts files the intermediate serves from.
  MESHID_EXPECT_NOT_CONTAINS(readText(ca / "cert-chain.pem"), "PRIVATE KEY");
  MESHID_EXPECT_NOT_CONTAINS(readText(ca / "root-cert.pem"), "PRIVATE KEY");
  // The files are a valid cacerts set on their own.
  MESHID_EXPECT_OK(pki::loadCaDirectory(ca, t0()));
}

TEST_F(SelfSignedTest, SecondCallLoadsTheSameRootAndIntermediate) {
  auto first = load();
  std::string key_before = readText(dir_ / "ca" / "ca-key.pem");
  clock_.advance(1 * kDay);
  auto second = load();
  EXPECT_EQ(der(second->roots[0].get()), der(first->roots[0].get()));
  EXPECT_EQ(der(second->cert.get()), der(first->cert.get()));
  EXPECT_EQ(readText(dir_ / "ca" / "ca-key.pem"), key_before);
}

TEST_F(SelfSignedTest, IntermediateWithLessThanAThirdLeftIsReplacedUnderTheSameRoot) {
  auto first = load();
  std::string root_key_before = readText(dir_ / "ca" / "root" / "root-key.pem");

  clock_.advance(19 * kDay);  // 11 of 30 days left: more than a third, kept
  auto kept = load();
  EXPECT_EQ(der(kept->cert.get()), der(first->cert.get()));

  clock_.advance(2 * kDay);  // 9 of 30 days left: less than a third
  auto renewed = load();
  EXPECT_NE(der(renewed->cert.get()), der(first->cert.get()));
  EXPECT_EQ(der(renewed->roots[0].get()), der(first->roots[0].get())) << "same root";
  EXPECT_EQ(pki::notAfter(renewed->cert.get()), clock_.now() + 30 * kDay);
  EXPECT_EQ(readText(dir_ / "ca" / "root" / "root-key.pem"), root_key_before);
  EXPECT_EQ(modeOf(dir_ / "ca" / "ca-key.pem"), 0600u);

  // It signs leaves that chain to the unchanged root.
  auto key = pki::testing::newKey();
  pki::SvidRequest req{.public_key = key.get(),
                       .spiffe_id = pki::testing::spiffeId("spiffe://example.org/w"),
                       .lifetime = 1h,
                       .now = clock_.now()};
  auto leaf = pki::issueX509Svid(req, renewed->cert.get(), *renewed->signer);
  MESHID_ASSERT_OK(leaf);
  MESHID_EXPECT_OK(pki::verifyChain(leaf->get(), renewed->chain, first->roots,
                                    pki::testing::verifyAt(clock_.now())));

  // The renewal was written: the next start loads it instead of renewing again.
  auto again = load();
  EXPECT_EQ(der(again->cert.get()), der(renewed->cert.get()));
}

// A crash among the renames of a renewal (new key in place, old certificate
// beside it) is finished at the next start, not a CA that no longer loads.
TEST_F(SelfSignedTest, RenewalInterruptedAmongItsRenamesIsFinishedAtTheNextStart) {
  auto first = load();
  // The same CA renewed elsewhere gives the set the interrupted renewal wrote.
  fs::copy(dir_ / "ca", dir_ / "elsewhere", fs::copy_options::recursive);
  clock_.advance(21 * kDay);
  SelfSignedConfig other = config();
  other.dir = dir_ / "elsewhere";
  auto fresh = orThrow(loadOrCreateSelfSigned(other, clock_), "renew elsewhere");
  ASSERT_NE(der(fresh->cert.get()), der(first->cert.get()));

  fs::path pending = dir_ / "ca" / ".renewing";
  fs::create_directories(pending);
  for (const char* name :
       {pki::kCaKeyFile, pki::kCaCertFile, pki::kCertChainFile, pki::kRootCertFile})
    fs::copy_file(dir_ / "elsewhere" / name, pending / name);
  std::ofstream(pending / "complete").close();
  fs::rename(pending / pki::kCaKeyFile, dir_ / "ca" / pki::kCaKeyFile);  // then the crash

  auto loaded = load();
  EXPECT_EQ(der(loaded->cert.get()), der(fresh->cert.get()));
  EXPECT_EQ(der(loaded->roots[0].get()), der(first->roots[0].get()));
  EXPECT_FALSE(fs::exists(pending));
  EXPECT_EQ(modeOf(dir_ / "ca" / "ca-key.pem"), 0600u);
}

// A renewal interrupted before it was complete never touched the live set:
// it is dropped and the kept intermediate is used.
TEST_F(SelfSignedTest, UnfinishedRenewalIsDroppedAndTheKeptSetUsed) {
  auto first = load();
  fs::path pending = dir_ / "ca" / ".renewing";
  fs::create_directories(pending);
  std::ofstream(pending / pki::kCaKeyFile) << "half a key";
  auto loaded = load();
  EXPECT_EQ(der(loaded->cert.get()), der(first->cert.get()));
  EXPECT_FALSE(fs::exists(pending));
}

TEST_F(SelfSignedTest, ExpiredIntermediateIsRenewed) {
  auto first = load();
  clock_.advance(45 * kDay);  // the 30-day intermediate expired two weeks ago
  auto renewed = load();
  EXPECT_NE(der(renewed->cert.get()), der(first->cert.get()));
  EXPECT_EQ(der(renewed->roots[0].get()), der(first->roots[0].get()));
  EXPECT_GT(pki::notAfter(renewed->cert.get()), clock_.now());
  EXPECT_LE(pki::notBefore(renewed->cert.get()), clock_.now());
  MESHID_EXPECT_OK(pki::loadCaDirectory(dir_ / "ca", clock_.now()));
}

TEST_F(SelfSignedTest, IntermediateNeverOutlivesTheRoot) {
  SelfSignedConfig c = config();
  c.root_ttl = 60 * kDay;
  auto first = orThrow(loadOrCreateSelfSigned(c, clock_));
  clock_.advance(50 * kDay);  // root has 10 days left; intermediate expired
  auto renewed = loadOrCreateSelfSigned(c, clock_);
  MESHID_ASSERT_OK(renewed);
  EXPECT_LE(pki::notAfter((*renewed)->cert.get()), pki::notAfter(first->roots[0].get()));
}

TEST_F(SelfSignedTest, BrokenStateIsAnErrorNotARecreation) {
  auto first = load();
  { std::ofstream(dir_ / "ca" / "ca-key.pem", std::ios::trunc) << "garbage"; }
  auto r = loadOrCreateSelfSigned(config(), clock_);
  EXPECT_FALSE(r.ok());
  // Nothing was overwritten: an operator can still inspect and repair.
  EXPECT_EQ(readText(dir_ / "ca" / "ca-key.pem"), "garbage");
  EXPECT_EQ(der(orThrow(pki::parseCertificatesPem(readText(dir_ / "ca" / "root-cert.pem")))
                    .front()
                    .get()),
            der(first->roots[0].get()));
}

// A lost ca-cert.pem must not be taken for a first start: making a new CA
// would overwrite the root key that the distributed root belongs to.
TEST_F(SelfSignedTest, MissingSigningCertNeverOverwritesTheRootKey) {
  auto first = load();
  std::string root_key = readText(dir_ / "ca" / "root" / "root-key.pem");
  std::string root_cert = readText(dir_ / "ca" / "root-cert.pem");
  fs::remove(dir_ / "ca" / "ca-cert.pem");
  auto r = loadOrCreateSelfSigned(config(), clock_);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(readText(dir_ / "ca" / "root" / "root-key.pem"), root_key);
  EXPECT_EQ(readText(dir_ / "ca" / "root-cert.pem"), root_cert);
}

TEST_F(SelfSignedTest, MissingRootKeyFailsRenewalCleanly) {
  auto first = load();
  fs::remove(dir_ / "ca" / "root" / "root-key.pem");
  clock_.advance(25 * kDay);
  auto r = loadOrCreateSelfSigned(config(), clock_);
  EXPECT_FALSE(r.ok());
  // The old intermediate stays on disk.
  EXPECT_EQ(der(orThrow(pki::loadCaDirectory(dir_ / "ca", clock_.now())).signing_cert.get()),
            der(first->cert.get()));
}

}  // namespace
}  // namespace meshid::ca
