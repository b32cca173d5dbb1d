#include "ca/trust_bundle.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <vector>

#include "pki/certificate.h"
#include "store/sqlite_store.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using meshid::testing::TempDir;
using pki::testing::certList;
using pki::testing::t0;
using pki::testing::TestCa;
using pki::testing::TestCaOptions;

// Saves nothing: the database is down.
class NoSaveStore final : public store::Store {
 public:
  Result<void> recordIssuance(const store::IssuanceRecord&) override { return okResult(); }
  Result<std::optional<store::IssuanceRecord>> findIssuance(const std::string&) override {
    return std::optional<store::IssuanceRecord>();
  }
  Result<std::vector<store::IssuanceRecord>> listIssuances(const store::IssuanceQuery&) override {
    return std::vector<store::IssuanceRecord>();
  }
  Result<uint64_t> countIssuances() override { return uint64_t{0}; }
  Result<void> createJoinToken(const store::JoinTokenRecord&) override { return okResult(); }
  Result<store::JoinTokenRecord> consumeJoinToken(const std::string&, SystemTime) override {
    return Error::notFound("none");
  }
  Result<store::BundleVersion> saveBundle(const std::string&, const std::string&,
                                          SystemTime) override {
    return Error::unavailable("database is locked");
  }
  Result<std::optional<store::BundleVersion>> latestBundle() override {
    return std::optional<store::BundleVersion>();
  }
  Result<store::PruneResult> pruneExpired(SystemTime, uint64_t) override {
    return store::PruneResult{};
  }
  Result<int> schemaVersion() override { return 1; }
};

class TrustBundleTest : public ::testing::Test {
 protected:
  TrustBundle& bundle() {
    if (!bundle_)
      bundle_ = std::make_unique<TrustBundle>(a_.trust_domain, *store_, clock_);
    return *bundle_;
  }

  TempDir dir_;
  FakeClock clock_{t0()};
  std::unique_ptr<store::SqliteStore> store_ = orThrow(store::SqliteStore::open(dir_ / "ca.db"));
  TestCa a_ = TestCa::create();
  TestCa b_ = TestCa::create(TestCaOptions{.root_name = "second root"});
  std::unique_ptr<TrustBundle> bundle_;
};

TEST_F(TrustBundleTest, EmptyBeforeFirstUpdate) {
  EXPECT_EQ(bundle().current(), nullptr);
}

TEST_F(TrustBundleTest, FirstUpdatePublishesVersionOne) {
  auto snap = bundle().update(a_.roots());
  MESHID_ASSERT_OK(snap);
  const BundleSnapshot& s = **snap;
  EXPECT_EQ(s.version, 1u);
  EXPECT_EQ(s.trust_domain, a_.trust_domain);
  ASSERT_EQ(s.roots.size(), 1u);
  EXPECT_EQ(X509_cmp(s.roots[0].get(), a_.root.get()), 0);
  ASSERT_EQ(s.roots_pem.size(), 1u);
  EXPECT_EQ(s.roots_pem[0], pki::certificateToPem(a_.root.get()));
  EXPECT_EQ(s.sha256, rootsDigest(a_.roots()));
  EXPECT_EQ(s.sha256.size(), 64u);
  EXPECT_EQ(s.updated, t0());
  EXPECT_EQ(bundle().current(), *snap);

  auto stored = store_->latestBundle();
  MESHID_ASSERT_OK(stored);
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->version, 1u);
  EXPECT_EQ((*stored)->sha256, s.sha256);
  EXPECT_EQ((*stored)->roots_pem, s.roots_pem[0]);
}

TEST_F(TrustBundleTest, VersionBumpsOnlyOnChange) {
  std::vector<uint64_t> seen;
  bundle().watch([&](std::shared_ptr<const BundleSnapshot> s) { seen.push_back(s->version); });

  auto v1 = bundle().update(a_.roots());
  MESHID_ASSERT_OK(v1);
  clock_.advance(1h);
  auto same = bundle().update(a_.roots());
  MESHID_ASSERT_OK(same);
  EXPECT_EQ(*same, *v1) << "the same roots return the same snapshot";
  EXPECT_EQ((*same)->version, 1u);

  auto v2 = bundle().update(certList({a_.root.get(), b_.root.get()}));
  MESHID_ASSERT_OK(v2);
  EXPECT_EQ((*v2)->version, 2u);
  EXPECT_EQ((*v2)->roots_pem.size(), 2u);
  EXPECT_EQ((*v2)->updated, t0() + 1h);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2})) << "watchers hear changes only";
  EXPECT_EQ(bundle().current()->version, 2u);
}

TEST_F(TrustBundleTest, OrderOfRootsIsPartOfTheDigest) {
  // Not a claim about what is right, a guard: a reordered set is a new
  // version, so watchers are told (harmless), never left behind.
  auto ab = bundle().update(certList({a_.root.get(), b_.root.get()}));
  auto ba = bundle().update(certList({b_.root.get(), a_.root.get()}));
  MESHID_ASSERT_OK(ab);
  MESHID_ASSERT_OK(ba);
  EXPECT_NE((*ab)->sha256, (*ba)->sha256);
  EXPECT_EQ((*ba)->version, 2u);
}

TEST_F(TrustBundleTest, WatchersGetTheNewSnapshot) {
  std::shared_ptr<const BundleSnapshot> got1, got2;
  bundle().watch([&](std::shared_ptr<const BundleSnapshot> s) { got1 = s; });
  bundle().watch([&](std::shared_ptr<const BundleSnapshot> s) { got2 = s; });
  EXPECT_EQ(bundle().watcherCount(), 2u);
  auto snap = bundle().update(b_.roots());
  MESHID_ASSERT_OK(snap);
  EXPECT_EQ(got1, *snap);
  EXPECT_EQ(got2, *snap);
  ASSERT_TRUE(got1);
  EXPECT_EQ(X509_cmp(got1->roots[0].get(), b_.root.get()), 0);
}

TEST_F(TrustBundleTest, UnwatchStopsCalls) {
  int calls_a = 0, calls_b = 0;
  uint64_t a = bundle().watch([&](auto) { ++calls_a; });
  bundle().watch([&](auto) { ++calls_b; });
  MESHID_ASSERT_OK(bundle().update(a_.roots()));
  bundle().unwatch(a);
  EXPECT_EQ(bundle().watcherCount(), 1u);
  MESHID_ASSERT_OK(bundle().update(b_.roots()));
  EXPECT_EQ(calls_a, 1);
  EXPECT_EQ(calls_b, 2);
  bundle().unwatch(a);  // twice is harmless
  bundle().unwatch(12345);
  EXPECT_EQ(bundle().watcherCount(), 1u);
}

// A watcher may unwatch itself (a stream ending) from inside its callback:
// callbacks run outside the lock, so this must not deadlock.
TEST_F(TrustBundleTest, WatcherMayUnwatchItselfDuringCallback) {
  uint64_t id = 0;
  int calls = 0;
  id = bundle().watch([&](auto) {
    ++calls;
    bundle().unwatch(id);
  });
  MESHID_ASSERT_OK(bundle().update(a_.roots()));
  MESHID_ASSERT_OK(bundle().update(b_.roots()));
  EXPECT_EQ(calls, 1);
}

TEST_F(TrustBundleTest, EmptyRootsAreRefused) {
  auto r = bundle().update({});
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  EXPECT_EQ(bundle().current(), nullptr);
}

TEST_F(TrustBundleTest, StoreFailureChangesNothing) {
  NoSaveStore down;
  TrustBundle b(a_.trust_domain, down, clock_);
  int calls = 0;
  b.watch([&](auto) { ++calls; });
  auto r = b.update(a_.roots());
  EXPECT_EQ(errorOf(r).code, Code::kUnavailable);
  EXPECT_EQ(b.current(), nullptr);
  EXPECT_EQ(calls, 0);
}

// After a restart the same roots keep their version: agents holding version
// N see no spurious change.
TEST_F(TrustBundleTest, RestartKeepsVersion) {
  MESHID_ASSERT_OK(bundle().update(a_.roots()));
  MESHID_ASSERT_OK(bundle().update(b_.roots()));
  TrustBundle restarted(a_.trust_domain, *store_, clock_);
  auto snap = restarted.update(b_.roots());
  MESHID_ASSERT_OK(snap);
  EXPECT_EQ((*snap)->version, 2u);
  auto changed = restarted.update(a_.roots());
  MESHID_ASSERT_OK(changed);
  EXPECT_EQ((*changed)->version, 3u);
}

TEST(RootsDigest, IsSha256OfConcatenatedDer) {
  TestCa ca = TestCa::create();
  std::string der = pki::certificateToDer(ca.root.get());
  unsigned char md[32];
  SHA256(reinterpret_cast<const unsigned char*>(der.data()), der.size(), md);
  std::string hex;
  for (unsigned char c : md) {
    static const char* kHex = "0123456789abcdef";
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  EXPECT_EQ(rootsDigest(ca.roots()), hex);
}

}  // namespace
}  // namespace meshid::ca
