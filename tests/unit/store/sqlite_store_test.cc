#include "store/sqlite_store.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "unit/common/test_util.h"

namespace meshid::store {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using meshid::testing::TempDir;

const SystemTime kT0 = fromUnixSeconds(1'790'000'000);

unsigned modeOf(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    return 0xffff;
  }
  return st.st_mode & 07777;
}

std::unique_ptr<SqliteStore> openStore(const fs::path& p) {
  return orThrow(SqliteStore::open(p), "open store");
}

IssuanceRecord record(std::string serial, std::string id = "spiffe://example.org/ns/a/sa/b") {
  return IssuanceRecord{.serial = std::move(serial),
                        .spiffe_id = std::move(id),
                        .not_before = kT0 - 60s,
                        .not_after = kT0 + 24h,
                        .signer = "selfsigned",
                        .caller = "spiffe://example.org/ns/a/sa/b",
                        .method = "jwt",
                        .api = "istio",
                        .issued_at = kT0};
}

JoinTokenRecord token(std::string hash, SystemTime expires = kT0 + 1h) {
  return JoinTokenRecord{.token_hash = std::move(hash),
                         .spiffe_id = "spiffe://example.org/host/node-1",
                         .created_at = kT0,
                         .expires_at = expires,
                         .used_at = std::nullopt};
}

// Runs one statement on the database file through a second, raw connection.
void rawExec(const fs::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

TEST(SqliteStore, MigrationsCreateSchemaVersionOne) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  auto v = store->schemaVersion();
  MESHID_ASSERT_OK(v);
  EXPECT_EQ(*v, 1);
  // Every table the schema promises can be used on a fresh database.
  EXPECT_EQ(*store->countIssuances(), 0u);
  EXPECT_FALSE(store->latestBundle()->has_value());
  EXPECT_FALSE(store->findIssuance("00")->has_value());
}

TEST(SqliteStore, ReopeningKeepsDataAndDoesNotReapplyMigrations) {
  TempDir dir;
  {
    auto store = openStore(dir / "ca.db");
    MESHID_ASSERT_OK(store->recordIssuance(record("aa01")));
    MESHID_ASSERT_OK(store->createJoinToken(token("h1")));
    MESHID_ASSERT_OK(store->saveBundle("ROOTS", "sha-1", kT0));
  }
  auto store = openStore(dir / "ca.db");
  EXPECT_EQ(*store->schemaVersion(), 1);
  EXPECT_EQ(*store->countIssuances(), 1u);
  auto found = store->findIssuance("aa01");
  MESHID_ASSERT_OK(found);
  ASSERT_TRUE(found->has_value());
  auto bundle = store->latestBundle();
  MESHID_ASSERT_OK(bundle);
  ASSERT_TRUE(bundle->has_value());
  EXPECT_EQ((*bundle)->version, 1u);
  EXPECT_EQ((*bundle)->roots_pem, "ROOTS");
  // The token made before the restart is still there and still unused.
  MESHID_EXPECT_OK(store->consumeJoinToken("h1", kT0));
}

TEST(SqliteStore, RefusesDatabaseWithNewerSchemaVersion) {
  TempDir dir;
  fs::path db = dir / "ca.db";
  { auto store = openStore(db); }
  rawExec(db, "INSERT INTO schema_migrations (version, applied_at) VALUES (2, 0)");
  auto reopened = SqliteStore::open(db);
  EXPECT_EQ(errorOf(reopened).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(reopened).message, "newer");
  MESHID_EXPECT_CONTAINS(errorOf(reopened).message, db.string());
}

// Two processes (the server and `meshid ca token create`, or two replicas)
// opening a fresh database at once: both must come up on one schema.
TEST(SqliteStore, ConcurrentFirstOpensBothMigrate) {
  TempDir dir;
  for (int round = 0; round < 20; ++round) {
    fs::path db = dir / ("race-" + std::to_string(round) + ".db");
    std::atomic<bool> go{false};
    Result<std::unique_ptr<SqliteStore>> a = Error::internal("unset"), b = Error::internal("unset");
    std::thread ta([&] {
      while (!go.load())
        std::this_thread::yield();
      a = SqliteStore::open(db);
    });
    std::thread tb([&] {
      while (!go.load())
        std::this_thread::yield();
      b = SqliteStore::open(db);
    });
    go = true;
    ta.join();
    tb.join();
    MESHID_ASSERT_OK(a);
    MESHID_ASSERT_OK(b);
    EXPECT_EQ(*(*a)->schemaVersion(), 1);
    EXPECT_EQ(*(*b)->schemaVersion(), 1);
  }
}

TEST(SqliteStore, RecordsAndFindsIssuances) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  IssuanceRecord r = record("0f1e2d3c", "spiffe://example.org/ns/x/sa/y");
  r.caller = "spiffe://example.org/ns/x/sa/y";
  r.method = "mtls";
  r.api = "meshid";
  r.signer = "files";
  MESHID_ASSERT_OK(store->recordIssuance(r));
  MESHID_ASSERT_OK(store->recordIssuance(record("0f1e2d3d")));

  auto found = store->findIssuance("0f1e2d3c");
  MESHID_ASSERT_OK(found);
  ASSERT_TRUE(found->has_value());
  const IssuanceRecord& f = **found;
  EXPECT_EQ(f.serial, "0f1e2d3c");
  EXPECT_EQ(f.spiffe_id, "spiffe://example.org/ns/x/sa/y");
  EXPECT_EQ(f.not_before, r.not_before);
  EXPECT_EQ(f.not_after, r.not_after);
  EXPECT_EQ(f.signer, "files");
  EXPECT_EQ(f.caller, "spiffe://example.org/ns/x/sa/y");
  EXPECT_EQ(f.method, "mtls");
  EXPECT_EQ(f.api, "meshid");
  EXPECT_EQ(f.issued_at, kT0);

  EXPECT_FALSE(store->findIssuance("ffff")->has_value());
  EXPECT_EQ(*store->countIssuances(), 2u);
}

// Concurrent writers (group-committed): each call returns only once its own
// row is durable, and every row lands exactly once.
TEST(SqliteStore, ConcurrentIssuanceRecordsAllLand) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  constexpr int kThreads = 8, kEach = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string serial = std::to_string(t) + "-" + std::to_string(i);
        if (!store->recordIssuance(record(serial)).ok())
          ++failures;
        // Visible as soon as the call returns.
        auto found = store->findIssuance(serial);
        if (!found.ok() || !found->has_value())
          ++failures;
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(*store->countIssuances(), static_cast<uint64_t>(kThreads * kEach));
}

// Commits only append to the WAL; the store's own thread copies it into the
// database file. Without that thread nothing would: the store turns SQLite's
// automatic checkpoints off, and these rows are far below their 1,000 pages.
TEST(SqliteStore, TheWalIsCheckpointedInTheBackground) {
  TempDir dir;
  auto store = orThrow(SqliteStore::open(dir / "ca.db", {.checkpoint_interval = 100ms}), "open");
  std::this_thread::sleep_for(300ms);  // the schema's pages are copied first
  auto main_size = [&] { return fs::file_size(dir / "ca.db"); };
  const auto before = main_size();
  std::vector<IssuanceRecord> rows;
  for (int i = 0; i < 2000; ++i)
    rows.push_back(record("serial-" + std::to_string(i)));
  std::vector<const IssuanceRecord*> batch;
  for (const auto& r : rows)
    batch.push_back(&r);
  ASSERT_TRUE(store->recordIssuances(batch).ok());
  EXPECT_GT(fs::file_size(dir / "ca.db-wal"), 0u);
  bool grew = false;
  for (int i = 0; i < 50 && !grew; ++i) {
    std::this_thread::sleep_for(100ms);
    grew = main_size() > before;
  }
  EXPECT_TRUE(grew) << "the database file stayed at " << before << " bytes";
  EXPECT_EQ(*store->countIssuances(), 2000u);
}

// Random serials, as a CA's are: each batch touches pages all over the
// serial index, as in production.
std::vector<IssuanceRecord> randomRows(std::mt19937_64& rng, int n) {
  std::vector<IssuanceRecord> rows;
  for (int i = 0; i < n; ++i)
    rows.push_back(record(fmt::format("{:016x}{:016x}", rng(), rng())));
  return rows;
}

Result<void> recordAll(Store& store, const std::vector<IssuanceRecord>& rows) {
  std::vector<const IssuanceRecord*> batch;
  for (const auto& r : rows)
    batch.push_back(&r);
  return store.recordIssuances(batch);
}

uintmax_t sizeOr0(const fs::path& p) {
  std::error_code ec;
  uintmax_t n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// The WAL header's checkpoint sequence number: SQLite adds one each time the
// WAL starts over.
uint32_t walRestarts(const fs::path& wal) {
  std::ifstream in(wal, std::ios::binary);
  unsigned char h[16] = {};
  in.read(reinterpret_cast<char*>(h), sizeof h);
  return in ? (uint32_t{h[12]} << 24) | (uint32_t{h[13]} << 16) | (uint32_t{h[14]} << 8) | h[15]
            : 0;
}

// A CA under steady load commits a batch every few milliseconds. One passive
// checkpoint per round then never found the WAL fully copied (the writer
// appends while it copies), so the WAL never started over and grew with
// every row: 360 MB after 30 s at full load. Here the writer keeps going for
// about a second and puts some 176 MB through the WAL: it must start over
// again and again (31-33 times here) and stay a fraction of that (7-12 MB).
// With one passive checkpoint per round it started over 0 times and kept all
// 176 MB.
TEST(SqliteStore, TheWalStartsOverUnderSteadyWrites) {
  TempDir dir;
  auto store = orThrow(
      SqliteStore::open(dir / "ca.db", {.checkpoint_interval = 20ms, .wal_restart_bytes = 1 << 20}),
      "open");
  std::mt19937_64 rng(7);
  MESHID_ASSERT_OK(recordAll(*store, randomRows(rng, 64)));
  const uint32_t restarts_before = walRestarts(dir / "ca.db-wal");
  uintmax_t largest_wal = 0;
  for (int i = 0; i < 600; ++i) {
    MESHID_ASSERT_OK(recordAll(*store, randomRows(rng, 64)));
    largest_wal = std::max(largest_wal, sizeOr0(dir / "ca.db-wal"));
    std::this_thread::sleep_for(1ms);  // the CA signs the next batch
  }
  const uint32_t restarts = walRestarts(dir / "ca.db-wal") - restarts_before;
  EXPECT_EQ(*store->countIssuances(), 601u * 64);
  EXPECT_GE(restarts, 10u);
  EXPECT_LT(largest_wal, uintmax_t{24} << 20) << restarts << " restarts";
}

// A reader's snapshot holds the WAL back (no checkpoint may overwrite pages it
// reads), so the file grows; once the reader lets go the WAL starts over, and
// the file is cut back to the limit instead of keeping its largest size.
TEST(SqliteStore, AWalThatGrewIsCutBackOnceItStartsOver) {
  TempDir dir;
  constexpr uintmax_t kLimit = 256 << 10;
  auto store = orThrow(
      SqliteStore::open(dir / "ca.db", {.checkpoint_interval = 20ms, .wal_restart_bytes = kLimit}),
      "open");
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(std::string(dir / "ca.db").c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM issuances;", nullptr, nullptr, nullptr),
      SQLITE_OK);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 40; ++i)
    MESHID_ASSERT_OK(recordAll(*store, randomRows(rng, 64)));
  std::this_thread::sleep_for(100ms);  // rounds that cannot copy past the reader
  const uintmax_t held = fs::file_size(dir / "ca.db-wal");
  EXPECT_GT(held, 4 * kLimit);
  ASSERT_EQ(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(reader);
  uintmax_t now = held;
  uint64_t more = 0;
  for (; more < 100 && now > kLimit; ++more) {  // a commit after the restart cuts the file
    std::this_thread::sleep_for(50ms);
    MESHID_ASSERT_OK(recordAll(*store, randomRows(rng, 1)));
    now = fs::file_size(dir / "ca.db-wal");
  }
  EXPECT_LE(now, kLimit) << "the WAL stayed at " << now << " bytes after growing to " << held;
  EXPECT_EQ(*store->countIssuances(), 40u * 64 + more);
}

// What /metrics and /debug/ca report as the store's size: the two files as
// they are on disk, the WAL included.
TEST(SqliteStore, FileSizesAreTheFilesOnDisk) {
  TempDir dir;
  auto store = orThrow(SqliteStore::open(dir / "ca.db", {.checkpoint_interval = 1h}), "open");
  std::mt19937_64 rng(3);
  MESHID_ASSERT_OK(recordAll(*store, randomRows(rng, 200)));
  FileSizes sizes = store->fileSizes();
  EXPECT_EQ(sizes.database, fs::file_size(dir / "ca.db"));
  EXPECT_EQ(sizes.wal, fs::file_size(dir / "ca.db-wal"));
  EXPECT_GT(sizes.wal, 200u * 64);  // the rows are in the WAL, not yet copied
  store.reset();                    // the last connection to close removes the WAL
  EXPECT_FALSE(fs::exists(dir / "ca.db-wal"));
}

TEST(SqliteStore, DuplicateSerialIsRefusedAndFirstRecordKept) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  MESHID_ASSERT_OK(store->recordIssuance(record("abcd", "spiffe://example.org/first")));
  auto again = store->recordIssuance(record("abcd", "spiffe://example.org/second"));
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(*store->countIssuances(), 1u);
  EXPECT_EQ((*store->findIssuance("abcd"))->spiffe_id, "spiffe://example.org/first");
}

// A batch is one transaction: a duplicate serial anywhere in it leaves none
// of its rows behind.
TEST(SqliteStore, IssuanceBatchIsAllOrNothing) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  auto a = record("0a"), b = record("0b"), c = record("0c");
  MESHID_ASSERT_OK(store->recordIssuances({&a, &b}));
  EXPECT_EQ(*store->countIssuances(), 2u);
  auto dup = record("0b", "spiffe://example.org/again");
  auto refused = store->recordIssuances({&c, &dup});
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(*store->countIssuances(), 2u);
  EXPECT_FALSE(store->findIssuance("0c")->has_value());
  MESHID_ASSERT_OK(store->recordIssuances({}));
  MESHID_ASSERT_OK(store->recordIssuances({&c}));
  EXPECT_EQ(*store->countIssuances(), 3u);
}

TEST(SqliteStore, DuplicateJoinTokenIsAlreadyExists) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  MESHID_ASSERT_OK(store->createJoinToken(token("h")));
  EXPECT_EQ(errorOf(store->createJoinToken(token("h"))).code, Code::kAlreadyExists);
}

TEST(SqliteStore, JoinTokenIsConsumedExactlyOnce) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  MESHID_ASSERT_OK(store->createJoinToken(token("h")));
  auto first = store->consumeJoinToken("h", kT0 + 5s);
  MESHID_ASSERT_OK(first);
  EXPECT_EQ(first->spiffe_id, "spiffe://example.org/host/node-1");
  EXPECT_EQ(first->token_hash, "h");
  ASSERT_TRUE(first->used_at.has_value());
  EXPECT_EQ(*first->used_at, kT0 + 5s);

  auto second = store->consumeJoinToken("h", kT0 + 6s);
  EXPECT_EQ(errorOf(second).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(second).message, "already used");
}

TEST(SqliteStore, ExpiredJoinTokenIsFailedPreconditionAndStaysUnused) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  MESHID_ASSERT_OK(store->createJoinToken(token("h", kT0 + 1h)));
  auto late = store->consumeJoinToken("h", kT0 + 1h);  // expiry instant itself is too late
  EXPECT_EQ(errorOf(late).code, Code::kFailedPrecondition);
  MESHID_EXPECT_CONTAINS(errorOf(late).message, "expired");
  // The refusal rolled back: the token is not marked used by a failed attempt.
  MESHID_EXPECT_OK(store->consumeJoinToken("h", kT0 + 1h - 1s));
}

TEST(SqliteStore, UnknownJoinTokenIsNotFound) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  EXPECT_EQ(errorOf(store->consumeJoinToken("nope", kT0)).code, Code::kNotFound);
}

// Two threads racing for one token through one store: exactly one wins.
TEST(SqliteStore, ConcurrentConsumersOfOneTokenHaveOneWinner) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    std::string hash = "race-" + std::to_string(round);
    MESHID_ASSERT_OK(store->createJoinToken(token(hash)));
    std::atomic<int> wins{0}, used{0}, other{0};
    std::atomic<bool> go{false};
    auto consumer = [&] {
      while (!go.load())
        std::this_thread::yield();
      auto r = store->consumeJoinToken(hash, kT0);
      if (r.ok()) {
        ++wins;
      } else if (r.error().code == Code::kFailedPrecondition) {
        ++used;
      } else {
        ++other;
      }
    };
    std::thread a(consumer), b(consumer);
    go = true;
    a.join();
    b.join();
    EXPECT_EQ(wins.load(), 1) << "round " << round;
    EXPECT_EQ(used.load(), 1) << "round " << round;
    EXPECT_EQ(other.load(), 0) << "round " << round;
  }
}

// The same race between two connections to one file (two CA processes on one
// database): SQLite's locking, not our mutex, must decide.
TEST(SqliteStore, ConcurrentConsumersOnTwoConnectionsHaveOneWinner) {
  TempDir dir;
  auto one = openStore(dir / "ca.db");
  auto two = openStore(dir / "ca.db");
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    std::string hash = "race-" + std::to_string(round);
    MESHID_ASSERT_OK(one->createJoinToken(token(hash)));
    std::atomic<int> wins{0}, used{0}, other{0};
    std::atomic<bool> go{false};
    auto consumer = [&](SqliteStore* s) {
      while (!go.load())
        std::this_thread::yield();
      auto r = s->consumeJoinToken(hash, kT0);
      if (r.ok()) {
        ++wins;
      } else if (r.error().code == Code::kFailedPrecondition) {
        ++used;
      } else {
        ++other;
      }
    };
    std::thread a(consumer, one.get()), b(consumer, two.get());
    go = true;
    a.join();
    b.join();
    EXPECT_EQ(wins.load(), 1) << "round " << round;
    EXPECT_EQ(used.load(), 1) << "round " << round;
    EXPECT_EQ(other.load(), 0) << "round " << round;
  }
}

TEST(SqliteStore, BundleVersionIncreasesOnlyWhenDigestChanges) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  auto v1 = store->saveBundle("A", "sha-a", kT0);
  MESHID_ASSERT_OK(v1);
  EXPECT_EQ(v1->version, 1u);
  EXPECT_EQ(v1->created_at, kT0);

  auto same = store->saveBundle("A", "sha-a", kT0 + 1h);
  MESHID_ASSERT_OK(same);
  EXPECT_EQ(same->version, 1u);
  EXPECT_EQ(same->created_at, kT0) << "an unchanged bundle keeps its time";

  auto v2 = store->saveBundle("A\nB", "sha-ab", kT0 + 2h);
  MESHID_ASSERT_OK(v2);
  EXPECT_EQ(v2->version, 2u);

  // Back to the first set is a change too: versions never go backwards.
  auto v3 = store->saveBundle("A", "sha-a", kT0 + 3h);
  MESHID_ASSERT_OK(v3);
  EXPECT_EQ(v3->version, 3u);

  auto latest = store->latestBundle();
  MESHID_ASSERT_OK(latest);
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->version, 3u);
  EXPECT_EQ((*latest)->sha256, "sha-a");
  EXPECT_EQ((*latest)->roots_pem, "A");
  EXPECT_EQ((*latest)->created_at, kT0 + 3h);
}

// A record issued at `issued` for `lifetime`.
IssuanceRecord issued(std::string serial, SystemTime issued, std::chrono::seconds lifetime) {
  IssuanceRecord r = record(std::move(serial));
  r.issued_at = issued;
  r.not_before = issued - 60s;
  r.not_after = issued + lifetime;
  return r;
}

std::vector<std::string> serialsIn(SqliteStore& store, const std::vector<std::string>& serials) {
  std::vector<std::string> found;
  for (const auto& s : serials)
    if (orThrow(store.findIssuance(s), "find").has_value())
      found.push_back(s);
  return found;
}

// Retention: expired before the cutoff goes, whatever was recorded around it;
// a longer-lived certificate recorded earlier neither goes early nor holds
// back the rows after it, across many of the store's windows.
TEST(SqliteStore, PruneDeletesExactlyTheRecordsExpiredBeforeTheCutoff) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  std::vector<std::string> expired, kept;
  auto add = [&](const IssuanceRecord& r, bool expires_before_cutoff) {
    MESHID_ASSERT_OK(store->recordIssuance(r));
    (expires_before_cutoff ? expired : kept).push_back(r.serial);
  };
  const SystemTime cutoff = kT0 + 30 * 24h;
  add(issued("long-0", kT0, 90 * 24h), false);  // recorded first, lives past the cutoff
  for (int i = 0; i < 1000; ++i) {
    auto at = kT0 + std::chrono::minutes(i);
    add(issued("short-" + std::to_string(i), at, 24h), true);
    if (i % 97 == 0)
      add(issued("long-" + std::to_string(i + 1), at, 60 * 24h), false);
  }
  add(issued("edge", cutoff - 24h, 24h), false);  // not_after == cutoff: not before it
  add(issued("recent", cutoff - 1h, 24h), false);
  add(issued("after", cutoff + 1h, 1h), false);

  auto pruned = store->pruneExpired(cutoff, 1'000'000);
  MESHID_ASSERT_OK(pruned);
  EXPECT_EQ(pruned->issuances, expired.size());
  EXPECT_TRUE(pruned->complete);
  EXPECT_TRUE(serialsIn(*store, expired).empty());
  EXPECT_EQ(serialsIn(*store, kept), kept);
  EXPECT_EQ(orThrow(store->countIssuances(), "count"), kept.size());

  // Nothing more is due at the same cutoff; a later one takes the next.
  EXPECT_EQ(orThrow(store->pruneExpired(cutoff, 1'000'000), "again").issuances, 0u);
  EXPECT_EQ(orThrow(store->pruneExpired(cutoff + 1s, 1'000'000), "later").issuances, 1u);  // edge
  // New rows after the deletions (rowids move on) are swept like the old.
  MESHID_ASSERT_OK(store->recordIssuance(issued("late-short", cutoff + 2h, 1h)));
  EXPECT_EQ(orThrow(store->pruneExpired(cutoff + 4h, 1'000'000), "late").issuances, 2u);
  EXPECT_EQ(serialsIn(*store, {"late-short", "recent", "after"}),
            std::vector<std::string>{"recent"});
}

// Rows recorded out of issue order (a clock stepped back, rows copied in
// from another CA) are found when they sit among rows the sweep reaches.
TEST(SqliteStore, PruneFindsRowsRecordedOutOfOrder) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  const SystemTime cutoff = kT0 + 48h;
  MESHID_ASSERT_OK(store->recordIssuance(issued("new", cutoff + 1h, 24h)));
  MESHID_ASSERT_OK(store->recordIssuance(issued("old", kT0, 1h)));
  MESHID_ASSERT_OK(store->recordIssuance(issued("old-live", kT0, 90 * 24h)));
  auto r = store->pruneExpired(cutoff, 1000);
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->issuances, 1u);
  EXPECT_EQ(serialsIn(*store, {"new", "old", "old-live"}),
            (std::vector<std::string>{"new", "old-live"}));
}

// Pruning beside recording: every record made during a long prune lands,
// and the pruner takes exactly the due ones.
TEST(SqliteStore, PruneAndRecordingInterleave) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  std::vector<IssuanceRecord> old;
  for (int i = 0; i < 5000; ++i)
    old.push_back(issued("old-" + std::to_string(i), kT0, 1h));
  std::vector<const IssuanceRecord*> ptrs;
  for (const auto& r : old)
    ptrs.push_back(&r);
  MESHID_ASSERT_OK(store->recordIssuances(ptrs));
  std::atomic<bool> pruning{true};
  std::atomic<int> recorded{0};
  std::thread writer([&] {
    for (int i = 0; pruning || i < 50; ++i) {
      if (store->recordIssuance(issued("new-" + std::to_string(i), kT0 + 72h, 24h)).ok())
        ++recorded;
    }
  });
  auto r = store->pruneExpired(kT0 + 48h, 1'000'000);
  pruning = false;
  writer.join();
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->issuances, 5000u);
  EXPECT_GE(recorded.load(), 50);
  EXPECT_EQ(orThrow(store->countIssuances(), "count"), static_cast<uint64_t>(recorded.load()));
}

TEST(SqliteStore, PruneStopsNearMaxRowsAndResumes) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  for (int i = 0; i < 1500; ++i)
    MESHID_ASSERT_OK(store->recordIssuance(issued("s" + std::to_string(i), kT0, 1h)));
  auto first = store->pruneExpired(kT0 + 2h, 400);
  MESHID_ASSERT_OK(first);
  EXPECT_FALSE(first->complete);
  EXPECT_GE(first->issuances, 400u);
  EXPECT_LT(first->issuances, 400u + 256u);  // one window past the limit at most
  uint64_t total = first->issuances;
  for (int calls = 1; total < 1500; ++calls) {
    auto r = store->pruneExpired(kT0 + 2h, 400);
    MESHID_ASSERT_OK(r);
    total += r->issuances;
    ASSERT_LT(calls, 10);
    if (r->complete)
      break;
  }
  EXPECT_EQ(total, 1500u);
  EXPECT_EQ(orThrow(store->countIssuances(), "count"), 0u);
}

TEST(SqliteStore, PruneDeletesJoinTokensExpiredBeforeTheCutoff) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  MESHID_ASSERT_OK(store->createJoinToken(token("old-unused", kT0 + 1h)));
  MESHID_ASSERT_OK(store->createJoinToken(token("old-used", kT0 + 1h)));
  MESHID_ASSERT_OK(store->consumeJoinToken("old-used", kT0 + 1s));
  MESHID_ASSERT_OK(store->createJoinToken(token("live", kT0 + 48h)));
  auto r = store->pruneExpired(kT0 + 24h, 1000);
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->join_tokens, 2u);
  EXPECT_EQ(errorOf(store->consumeJoinToken("old-unused", kT0)).code, Code::kNotFound);
  EXPECT_EQ(errorOf(store->consumeJoinToken("old-used", kT0)).code, Code::kNotFound);
  MESHID_EXPECT_OK(store->consumeJoinToken("live", kT0 + 25h));
}

TEST(SqliteStore, PruneOfAnEmptyStoreDeletesNothing) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  auto r = store->pruneExpired(kT0, 10);
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(r->issuances, 0u);
  EXPECT_EQ(r->join_tokens, 0u);
  EXPECT_TRUE(r->complete);
}

TEST(SqliteStore, ListsIssuancesNewestFirstByIdentityAndTime) {
  TempDir dir;
  auto store = openStore(dir / "ca.db");
  const std::string a = "spiffe://example.org/ns/a/sa/a", b = "spiffe://example.org/ns/b/sa/b";
  auto at = [&](std::string serial, const std::string& id, SystemTime t) {
    IssuanceRecord r = issued(std::move(serial), t, 24h);
    r.spiffe_id = id;
    MESHID_ASSERT_OK(store->recordIssuance(r));
  };
  at("a1", a, kT0);
  at("b1", b, kT0 + 1h);
  at("a2", a, kT0 + 2h);
  at("a3", a, kT0 + 3h);
  auto serials = [&](const IssuanceQuery& q) {
    std::vector<std::string> out;
    for (const auto& r : orThrow(store->listIssuances(q), "list"))
      out.push_back(r.serial);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(serials({}), (V{"a3", "a2", "b1", "a1"}));
  EXPECT_EQ(serials({.spiffe_id = a}), (V{"a3", "a2", "a1"}));
  EXPECT_EQ(serials({.spiffe_id = a, .limit = 2}), (V{"a3", "a2"}));
  EXPECT_EQ(serials({.spiffe_id = a, .since = kT0 + 2h}), (V{"a3", "a2"}));
  EXPECT_EQ(serials({.since = kT0 + 1h}), (V{"a3", "a2", "b1"}));
  EXPECT_EQ(serials({.spiffe_id = "spiffe://example.org/none"}), V{});
  EXPECT_EQ(serials({.limit = 0}), V{});
  auto all = orThrow(store->listIssuances({.spiffe_id = b}), "b");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].issued_at, kT0 + 1h);
  EXPECT_EQ(all[0].not_after, kT0 + 25h);
  EXPECT_EQ(all[0].method, "jwt");
}

TEST(SqliteStore, DatabaseFilesAreOwnerOnly) {
  TempDir dir;
  fs::path db = dir / "ca.db";
  mode_t old = ::umask(022);  // a permissive umask must not leak into the file
  auto store = openStore(db);
  ::umask(old);
  MESHID_ASSERT_OK(store->recordIssuance(record("01")));  // makes the WAL files exist
  EXPECT_EQ(modeOf(db), 0600u);
  for (const char* suffix : {"-wal", "-shm"}) {
    fs::path side = db.string() + suffix;
    if (fs::exists(side)) {
      EXPECT_EQ(modeOf(side), 0600u) << side;
    }
  }
}

TEST(SqliteStore, OpenRestoresUmask) {
  TempDir dir;
  mode_t old = ::umask(022);
  auto store = openStore(dir / "ca.db");
  mode_t after = ::umask(old);
  EXPECT_EQ(after, 022u);
}

TEST(SqliteStore, UnopenablePathIsUnavailable) {
  TempDir dir;
  // A regular file where a directory should be: unwritable even for root.
  std::ofstream(dir / "not-a-dir") << "x";
  auto r = SqliteStore::open(dir / "not-a-dir" / "ca.db");
  EXPECT_EQ(errorOf(r).code, Code::kUnavailable);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "not-a-dir");

  auto missing = SqliteStore::open(dir / "no" / "such" / "dir" / "ca.db");
  EXPECT_EQ(errorOf(missing).code, Code::kUnavailable);

  // A directory where the database file should be.
  fs::create_directory(dir / "db-dir");
  EXPECT_EQ(errorOf(SqliteStore::open(dir / "db-dir")).code, Code::kUnavailable);
}

// 0 when opening (and, if that works, writing to) db gives UNAVAILABLE.
int readOnlyOutcome(const fs::path& db) {
  auto r = SqliteStore::open(db);
  if (!r.ok())
    return r.error().code == Code::kUnavailable ? 0 : 10 + static_cast<int>(r.error().code);
  auto w = (*r)->recordIssuance(record("01"));
  if (w.ok())
    return 1;
  return w.error().code == Code::kUnavailable ? 0 : 30 + static_cast<int>(w.error().code);
}

TEST(SqliteStore, ReadOnlyDatabaseIsUnavailable) {
  TempDir dir;
  fs::path db = dir / "ca.db";
  { auto store = openStore(db); }
  fs::permissions(db, fs::perms::owner_read);
  fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
  int outcome = 0;
  if (::geteuid() != 0) {
    outcome = readOnlyOutcome(db);
  } else {
    // Root ignores permissions: try as nobody, in a child process.
    constexpr uid_t kNobody = 65534;
    ASSERT_EQ(::chown(dir.path().c_str(), kNobody, kNobody), 0);
    ASSERT_EQ(::chown(db.c_str(), kNobody, kNobody), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0)
        ::_exit(2);
      ::_exit(readOnlyOutcome(db));
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    outcome = WEXITSTATUS(status);
  }
  fs::permissions(dir.path(), fs::perms::owner_all);
  EXPECT_EQ(outcome, 0) << "1: write succeeded; 10+code: open failed with code; 30+code: write "
                           "failed with code";
}

}  // namespace
}  // namespace meshid::store
