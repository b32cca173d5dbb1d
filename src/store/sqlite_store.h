#pragma once

#include <filesystem>
#include <memory>
#include <mutex>

#include "store/store.h"

struct sqlite3;

namespace meshid::store {

// SQLite in WAL mode (synchronous=NORMAL: a committed row survives a crash of
// meshid; only an OS crash can lose the last moments). One connection behind a
// mutex: SQLite serialises writers anyway.
class SqliteStore final : public Store {
 public:
  // Opens or creates the database (0600) and applies pending migrations.
  static Result<std::unique_ptr<SqliteStore>> open(const std::filesystem::path& path);
  ~SqliteStore() override;

  Result<void> recordIssuance(const IssuanceRecord& record) override;
  Result<std::optional<IssuanceRecord>> findIssuance(const std::string& serial) override;
  Result<uint64_t> countIssuances() override;
  Result<void> createJoinToken(const JoinTokenRecord& record) override;
  Result<JoinTokenRecord> consumeJoinToken(const std::string& token_hash, SystemTime now) override;
  Result<BundleVersion> saveBundle(const std::string& roots_pem, const std::string& sha256,
                                   SystemTime now) override;
  Result<std::optional<BundleVersion>> latestBundle() override;
  Result<int> schemaVersion() override;

 private:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  Result<void> migrate();
  Result<std::optional<BundleVersion>> latestBundleLocked();

  std::mutex mu_;
  sqlite3* db_;  // guarded by mu_
};

}  // namespace meshid::store
