#include "ca/record_pruner.h"

#include <gtest/gtest.h>

#include <thread>

#include "store/sqlite_store.h"
#include "unit/common/test_util.h"

namespace meshid::ca {
namespace {

using namespace std::chrono_literals;
using meshid::testing::orThrow;
using meshid::testing::TempDir;

const SystemTime kT0 = fromUnixSeconds(1'790'000'000);

store::IssuanceRecord expiringAt(std::string serial, SystemTime not_after) {
  return store::IssuanceRecord{.serial = std::move(serial),
                               .spiffe_id = "spiffe://example.org/ns/a/sa/b",
                               .not_before = not_after - 1h,
                               .not_after = not_after,
                               .signer = "selfsigned",
                               .caller = "spiffe://example.org/ns/a/sa/b",
                               .method = "mtls",
                               .api = "istio",
                               .issued_at = not_after - 1h};
}

class RecordPrunerTest : public ::testing::Test {
 protected:
  TempDir dir_;
  std::unique_ptr<store::SqliteStore> store_ =
      orThrow(store::SqliteStore::open(dir_ / "ca.db"), "open store");
  FakeClock clock_{kT0};
  CaMetrics metrics_;

  bool has(const std::string& serial) {
    return orThrow(store_->findIssuance(serial), "find").has_value();
  }
};

// In virtual time: a record goes once its certificate has been expired for
// the retention, not before.
TEST_F(RecordPrunerTest, DeletesRecordsOnceExpiredForTheRetention) {
  MESHID_ASSERT_OK(store_->recordIssuance(expiringAt("01", kT0 - 25h)));
  MESHID_ASSERT_OK(store_->recordIssuance(expiringAt("02", kT0 - 23h)));
  MESHID_ASSERT_OK(store_->recordIssuance(expiringAt("03", kT0 + 1h)));
  MESHID_ASSERT_OK(store_->createJoinToken({.token_hash = "t",
                                            .spiffe_id = "spiffe://example.org/host/h",
                                            .created_at = kT0 - 48h,
                                            .expires_at = kT0 - 47h}));
  RecordPruner pruner(*store_, clock_, 24h, 1h, metrics_);

  auto first = pruner.pruneNow();
  MESHID_ASSERT_OK(first);
  EXPECT_EQ(first->issuances, 1u);
  EXPECT_EQ(first->join_tokens, 1u);
  EXPECT_FALSE(has("01"));
  EXPECT_TRUE(has("02"));
  EXPECT_TRUE(has("03"));

  clock_.advance(2h);  // "02" is now 25 h past its expiry; "03" 1 h
  auto second = pruner.pruneNow();
  MESHID_ASSERT_OK(second);
  EXPECT_EQ(second->issuances, 1u);
  EXPECT_FALSE(has("02"));
  EXPECT_TRUE(has("03"));

  std::string text = metrics_.serialize();
  MESHID_EXPECT_CONTAINS(text, "meshid_ca_records_pruned_total{table=\"issuances\"} 2");
  MESHID_EXPECT_CONTAINS(text, "meshid_ca_records_pruned_total{table=\"join_tokens\"} 1");
  MESHID_EXPECT_CONTAINS(text, "meshid_ca_record_prune_runs_total{result=\"ok\"} 2");
}

// A pass goes on past one store call's worth of rows until nothing is due.
TEST_F(RecordPrunerTest, APassDeletesTheWholeBacklog) {
  const uint64_t n = RecordPruner::kRowsPerCall + 1500;
  std::vector<store::IssuanceRecord> rows;
  rows.reserve(n);
  for (uint64_t i = 0; i < n; ++i)
    rows.push_back(expiringAt("s" + std::to_string(i), kT0 - 48h));
  std::vector<const store::IssuanceRecord*> ptrs;
  for (const auto& r : rows)
    ptrs.push_back(&r);
  MESHID_ASSERT_OK(store_->recordIssuances(ptrs));
  RecordPruner pruner(*store_, clock_, 24h, 1h, metrics_);
  auto r = pruner.pruneNow();
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->issuances, n);
  EXPECT_TRUE(r->complete);
  EXPECT_EQ(orThrow(store_->countIssuances(), "count"), 0u);
}

// Started, it prunes at once and then every interval; destroying it stops it.
TEST_F(RecordPrunerTest, ItsThreadPrunesAtStartAndEveryInterval) {
  MESHID_ASSERT_OK(store_->recordIssuance(expiringAt("old", kT0 - 48h)));
  MESHID_ASSERT_OK(store_->recordIssuance(expiringAt("later", kT0 - 1h)));
  auto until = [](auto cond) {
    for (int i = 0; i < 500 && !cond(); ++i)
      std::this_thread::sleep_for(10ms);
    return cond();
  };
  {
    RecordPruner pruner(*store_, clock_, 24h, 50ms, metrics_);
    pruner.start();
    EXPECT_TRUE(until([&] { return !has("old"); }));
    EXPECT_TRUE(has("later"));
    clock_.advance(24h);
    EXPECT_TRUE(until([&] { return !has("later"); }));
  }
  // Stopped: a record due now stays.
  MESHID_ASSERT_OK(store_->recordIssuance(expiringAt("after-stop", kT0 - 48h)));
  std::this_thread::sleep_for(150ms);
  EXPECT_TRUE(has("after-stop"));
}

}  // namespace
}  // namespace meshid::ca
