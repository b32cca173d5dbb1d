#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include "common/periodic_thread.h"
#include "store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace meshid::store {

// SQLite in WAL mode (synchronous=NORMAL: a committed row survives a crash of
// meshid; only an OS crash can lose the last moments). One connection behind a
// mutex: SQLite serialises writers anyway. Issuance records are group-committed:
// callers that arrive while a commit is running share the next transaction,
// and each returns only once the transaction holding its row has committed.
//
// The WAL is copied back into the database by a thread of the store's own
// (a passive checkpoint every `checkpoint_interval`, on a second connection),
// not by whichever commit crosses SQLite's 1,000-page mark: that commit ran on
// a CA event loop and held up every call behind it (docs/PERFORMANCE.md).
//
// The WAL starts over once it is all copied, and the checkpointer makes sure
// that happens under steady load too; past `wal_restart_bytes` it holds the
// writer back briefly to force it. A WAL file that grew past that size is cut
// back to it when it starts over.
struct SqliteStoreOptions {
  std::chrono::milliseconds checkpoint_interval{1000};
  uint64_t wal_restart_bytes = 64u << 20;
};

class SqliteStore final : public Store {
 public:
  // Opens or creates the database (0600) and applies pending migrations.
  static Result<std::unique_ptr<SqliteStore>> open(const std::filesystem::path& path,
                                                   SqliteStoreOptions options = {});
  ~SqliteStore() override;

  Result<void> recordIssuance(const IssuanceRecord& record) override;
  Result<void> recordIssuances(const std::vector<const IssuanceRecord*>& records) override;
  Result<std::optional<IssuanceRecord>> findIssuance(const std::string& serial) override;
  Result<std::vector<IssuanceRecord>> listIssuances(const IssuanceQuery& query) override;
  Result<uint64_t> countIssuances() override;
  Result<void> createJoinToken(const JoinTokenRecord& record) override;
  Result<JoinTokenRecord> consumeJoinToken(const std::string& token_hash, SystemTime now) override;
  Result<BundleVersion> saveBundle(const std::string& roots_pem, const std::string& sha256,
                                   SystemTime now) override;
  Result<std::optional<BundleVersion>> latestBundle() override;
  Result<PruneResult> pruneExpired(SystemTime expired_before, uint64_t max_rows) override;
  Result<int> schemaVersion() override;

  // The database file and its WAL as they are on disk, for /metrics and
  // /debug/ca.
  FileSizes fileSizes() const;

 private:
  SqliteStore(sqlite3* db, std::filesystem::path path) : path_(std::move(path)), db_(db) {}
  Result<void> migrate();
  void startCheckpointer(const std::filesystem::path& path, std::chrono::milliseconds interval,
                         uint64_t wal_restart_bytes);
  Result<std::optional<BundleVersion>> latestBundleLocked();
  Result<void> insertIssuancesLocked(const std::vector<const IssuanceRecord*>& batch);

  struct PendingIssuance {
    const IssuanceRecord* record;
    bool done = false;
    Result<void> result;
  };

  const std::filesystem::path path_;
  std::mutex mu_;
  sqlite3* db_;  // guarded by mu_
  // Prepared once: parsing BEGIN/INSERT/COMMIT for every batch showed up in
  // profiles of the signing path.
  sqlite3_stmt* begin_ = nullptr;   // guarded by mu_
  sqlite3_stmt* insert_ = nullptr;  // guarded by mu_
  sqlite3_stmt* commit_ = nullptr;  // guarded by mu_

  std::mutex batch_mu_;
  std::condition_variable batch_cv_;
  std::vector<PendingIssuance*> pending_;  // guarded by batch_mu_
  bool committing_ = false;                // guarded by batch_mu_

  sqlite3* checkpoint_db_ = nullptr;  // the checkpointer's own connection
  std::unique_ptr<PeriodicThread> checkpointer_;
};

}  // namespace meshid::store
