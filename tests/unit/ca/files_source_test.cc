#include "ca/signers/files_source.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "pki/ca_directory.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "unit/ca/secret_volume.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using meshid::testing::cacertsFiles;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using meshid::testing::SecretVolume;
using meshid::testing::TempDir;
using pki::testing::kDay;
using pki::testing::newKey;
using pki::testing::t0;
using pki::testing::TestCa;
using pki::testing::TestCaOptions;

struct Intermediate {
  pki::EvpPkeyPtr key;
  pki::X509Ptr cert;
};

// Another intermediate under ca's root (what an operator rotates in).
Intermediate newIntermediate(const TestCa& ca, std::string name) {
  Intermediate i{newKey(), nullptr};
  i.cert = orThrow(pki::issueIntermediateCertificate({.public_key = i.key.get(),
                                                      .trust_domain = ca.trust_domain,
                                                      .common_name = std::move(name),
                                                      .lifetime = 180 * kDay,
                                                      .now = t0(),
                                                      .path_length = 0},
                                                     ca.root.get(), *ca.root_signer),
                   "intermediate");
  return i;
}

std::map<std::string, std::string> filesFor(const X509* cert, const EVP_PKEY* key,
                                            const X509* root) {
  return cacertsFiles(cert, key, {cert}, {root});
}

// "meshid_ca_signer_reloads_total{result="failed"} N" as served on /metrics.
std::string reloads(const CaMetrics& metrics, std::string_view result) {
  std::string text = metrics.serialize();
  std::string prefix = "meshid_ca_signer_reloads_total{result=\"" + std::string(result) + "\"} ";
  size_t at = text.find(prefix);
  if (at == std::string::npos)
    return "<absent>";
  size_t end = text.find('\n', at);
  return text.substr(at + prefix.size(), end - at - prefix.size());
}

class FilesSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    volume_.publish(filesFor(ca_.intermediate.get(), ca_.intermediate_key.get(), ca_.root.get()));
    initial_ = orThrow(FilesSource::loadNow(volume_.path(), clock_), "initial load");
    authority_ = std::make_unique<LocalAuthority>("files", initial_);
    source_ = std::make_unique<FilesSource>(
        volume_.path(), *authority_, metrics_, clock_, std::chrono::milliseconds(0),
        [this](std::shared_ptr<const SigningMaterial> m) { reloaded_.push_back(std::move(m)); });
  }

  const X509* signingCert() const { return authority_->material()->cert.get(); }

  TempDir dir_;
  FakeClock clock_{t0()};
  TestCa ca_ = TestCa::create();
  SecretVolume volume_{dir_ / "cacerts"};
  CaMetrics metrics_;
  std::shared_ptr<const SigningMaterial> initial_;
  std::unique_ptr<LocalAuthority> authority_;
  std::unique_ptr<FilesSource> source_;
  std::vector<std::shared_ptr<const SigningMaterial>> reloaded_;
};

TEST_F(FilesSourceTest, LoadsTheSetThroughDataSymlinks) {
  ASSERT_TRUE(fs::is_symlink(volume_.path() / "ca-cert.pem"));
  EXPECT_EQ(X509_cmp(initial_->cert.get(), ca_.intermediate.get()), 0);
  ASSERT_EQ(initial_->roots.size(), 1u);
  EXPECT_EQ(X509_cmp(initial_->roots[0].get(), ca_.root.get()), 0);
  ASSERT_EQ(initial_->chain.size(), 1u);
}

TEST_F(FilesSourceTest, UnchangedFilesDoNotReload) {
  EXPECT_FALSE(source_->checkOnce());
  EXPECT_FALSE(source_->checkOnce());
  EXPECT_EQ(authority_->material(), initial_);
  EXPECT_TRUE(reloaded_.empty());
  EXPECT_EQ(reloads(metrics_, "ok"), "0");
  EXPECT_EQ(reloads(metrics_, "failed"), "0");
}

// Touching files without changing them is no change (fingerprint by content).
TEST_F(FilesSourceTest, SameContentRepublishedDoesNotReload) {
  volume_.publish(filesFor(ca_.intermediate.get(), ca_.intermediate_key.get(), ca_.root.get()));
  EXPECT_FALSE(source_->checkOnce());
  EXPECT_EQ(authority_->material(), initial_);
}

TEST_F(FilesSourceTest, DataSymlinkSwapToNewIntermediateIsPublished) {
  Intermediate next = newIntermediate(ca_, "rotated intermediate");
  volume_.publish(filesFor(next.cert.get(), next.key.get(), ca_.root.get()));

  EXPECT_TRUE(source_->checkOnce());
  EXPECT_EQ(X509_cmp(signingCert(), next.cert.get()), 0);
  ASSERT_EQ(reloaded_.size(), 1u);
  EXPECT_EQ(reloaded_[0], authority_->material());
  EXPECT_EQ(X509_cmp(reloaded_[0]->roots[0].get(), ca_.root.get()), 0);
  EXPECT_EQ(reloads(metrics_, "ok"), "1");
  EXPECT_EQ(reloads(metrics_, "failed"), "0");

  // The new material signs, and its leaves chain to the same root.
  auto leaf_key = newKey();
  auto issued = authority_->sign({.public_key = leaf_key.get(),
                                  .spiffe_id = pki::testing::spiffeId("spiffe://example.org/w"),
                                  .lifetime = 1h,
                                  .now = t0()});
  MESHID_ASSERT_OK(issued);
  auto leaf = orThrow(pki::parseCertificates(issued->leaf.der), "leaf");
  MESHID_EXPECT_OK(pki::verifyChain(leaf.front().get(), issued->material->chain, ca_.roots(),
                                    pki::testing::verifyAt(t0())));
  EXPECT_EQ(X509_cmp(issued->material->cert.get(), next.cert.get()), 0);

  // Seen once: the next check finds nothing new.
  EXPECT_FALSE(source_->checkOnce());
  EXPECT_EQ(reloaded_.size(), 1u);
}

// An operator editing a plain (non-symlinked) folder in place is seen too.
TEST_F(FilesSourceTest, InPlaceEditIsPublished) {
  TempDir plain;
  orThrow(pki::writeIstioCacerts(plain.path(),
                                 {.layout = pki::CaLayout::kIstioCacerts,
                                  .signing_cert = pki::shareX509(ca_.intermediate.get()),
                                  .signing_key = pki::shareKey(ca_.intermediate_key.get()),
                                  .chain = ca_.intermediates(),
                                  .roots = ca_.roots()},
                                 false),
          "write cacerts");
  LocalAuthority authority("files", orThrow(FilesSource::loadNow(plain.path(), clock_)));
  FilesSource source(plain.path(), authority, metrics_, clock_, std::chrono::milliseconds(0), {});
  Intermediate next = newIntermediate(ca_, "edited in place");
  orThrow(pki::writeIstioCacerts(plain.path(),
                                 {.layout = pki::CaLayout::kIstioCacerts,
                                  .signing_cert = pki::shareX509(next.cert.get()),
                                  .signing_key = pki::shareKey(next.key.get()),
                                  .chain = pki::testing::certList({next.cert.get()}),
                                  .roots = ca_.roots()},
                                 true),
          "rewrite cacerts");
  EXPECT_TRUE(source.checkOnce());  // a null on_reload is allowed
  EXPECT_EQ(X509_cmp(authority.material()->cert.get(), next.cert.get()), 0);
}

class BrokenSetTest : public FilesSourceTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(BrokenSetTest, IsRefusedAndSigningContinuesWithThePreviousSet) {
  Intermediate next = newIntermediate(ca_, "next");
  TestCa foreign = TestCa::create(TestCaOptions{.root_name = "foreign root"});
  std::map<std::string, std::string> files =
      filesFor(next.cert.get(), next.key.get(), ca_.root.get());
  const std::string& kind = GetParam();
  if (kind == "key_of_another_cert") {
    files["ca-key.pem"] = orThrow(pki::privateKeyToPem(newKey().get()));
  } else if (kind == "garbage_cert") {
    files["ca-cert.pem"] = "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n";
  } else if (kind == "garbage_key") {
    files["ca-key.pem"] = "not a key";
  } else if (kind == "chain_to_another_root") {
    files = cacertsFiles(foreign.intermediate.get(), foreign.intermediate_key.get(),
                         {foreign.intermediate.get()}, {ca_.root.get()});
  } else if (kind == "empty_root") {
    files["root-cert.pem"] = "";
  } else if (kind == "leaf_as_signing_cert") {
    auto leaf = ca_.issueLeaf(next.key.get(), "spiffe://example.org/not-a-ca");
    files["ca-cert.pem"] = pki::certificateToPem(leaf.get());
  } else if (kind == "expired_intermediate") {
    clock_.advance(200 * kDay);  // past next's 180 days, inside the initial 365
  } else {
    FAIL() << kind;
  }
  volume_.publish(files);

  EXPECT_FALSE(source_->checkOnce());
  EXPECT_EQ(authority_->material(), initial_) << "the authority keeps the previous set";
  EXPECT_TRUE(reloaded_.empty());
  EXPECT_EQ(reloads(metrics_, "failed"), "1");
  EXPECT_EQ(reloads(metrics_, "ok"), "0");

  // The refused set is not retried (and not counted again) until it changes.
  EXPECT_FALSE(source_->checkOnce());
  EXPECT_EQ(reloads(metrics_, "failed"), "1");

  // A fixed set is then taken.
  clock_.set(t0());
  Intermediate fixed = newIntermediate(ca_, "fixed");
  volume_.publish(filesFor(fixed.cert.get(), fixed.key.get(), ca_.root.get()));
  EXPECT_TRUE(source_->checkOnce());
  EXPECT_EQ(X509_cmp(signingCert(), fixed.cert.get()), 0);
  EXPECT_EQ(reloads(metrics_, "ok"), "1");
}

INSTANTIATE_TEST_SUITE_P(FilesSource, BrokenSetTest,
                         ::testing::Values("key_of_another_cert", "garbage_cert", "garbage_key",
                                           "chain_to_another_root", "empty_root",
                                           "leaf_as_signing_cert", "expired_intermediate"));

TEST_F(FilesSourceTest, FilesDisappearingIsRefused) {
  fs::remove(volume_.path() / "..data");
  EXPECT_FALSE(source_->checkOnce());
  EXPECT_EQ(authority_->material(), initial_);
  EXPECT_EQ(reloads(metrics_, "failed"), "1");
}

TEST_F(FilesSourceTest, BrokenSetAtStartupIsAnError) {
  SecretVolume broken(dir_ / "broken");
  auto files = filesFor(ca_.intermediate.get(), ca_.intermediate_key.get(), ca_.root.get());
  files["ca-key.pem"] = orThrow(pki::privateKeyToPem(newKey().get()));
  broken.publish(files);
  EXPECT_FALSE(FilesSource::loadNow(broken.path(), clock_).ok());
  EXPECT_EQ(errorOf(FilesSource::loadNow(dir_ / "nowhere", clock_)).code, Code::kNotFound);
}

// With a poll interval the source watches by itself and stops on destruction.
TEST_F(FilesSourceTest, PollThreadPicksUpChangesAndStops) {
  source_.reset();
  std::mutex mu;
  std::condition_variable cv;
  int reloads_seen = 0;
  auto polling = std::make_unique<FilesSource>(volume_.path(), *authority_, metrics_, clock_,
                                               std::chrono::milliseconds(10),
                                               [&](std::shared_ptr<const SigningMaterial>) {
                                                 std::lock_guard lock(mu);
                                                 ++reloads_seen;
                                                 cv.notify_all();
                                               });
  Intermediate next = newIntermediate(ca_, "polled");
  volume_.publish(filesFor(next.cert.get(), next.key.get(), ca_.root.get()));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return reloads_seen == 1; }));
  }
  EXPECT_EQ(X509_cmp(signingCert(), next.cert.get()), 0);
  polling.reset();  // joins
}

}  // namespace
}  // namespace meshid::ca
