#include "store/sqlite_store.h"

#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <string_view>
#include <thread>

namespace meshid::store {
namespace {

// Each entry is one schema version; never edit an applied one, append.
constexpr std::array<std::string_view, 1> kMigrations{
    R"sql(
CREATE TABLE issuances (
  serial      TEXT PRIMARY KEY,
  spiffe_id   TEXT NOT NULL,
  not_before  INTEGER NOT NULL,
  not_after   INTEGER NOT NULL,
  signer      TEXT NOT NULL,
  caller      TEXT NOT NULL,
  method      TEXT NOT NULL,
  api         TEXT NOT NULL,
  issued_at   INTEGER NOT NULL
);
CREATE INDEX issuances_by_id ON issuances (spiffe_id, issued_at);
CREATE TABLE join_tokens (
  token_hash  TEXT PRIMARY KEY,
  spiffe_id   TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER
);
CREATE TABLE bundle_versions (
  version     INTEGER PRIMARY KEY,
  roots_pem   TEXT NOT NULL,
  sha256      TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
)sql",
};

int64_t unix(SystemTime t) {
  return toUnixSeconds(t);
}

Error sqliteError(sqlite3* db, std::string_view what) {
  int code = sqlite3_errcode(db);
  Code c = (code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_IOERR ||
            code == SQLITE_FULL || code == SQLITE_READONLY || code == SQLITE_CANTOPEN)
               ? Code::kUnavailable
               : Code::kInternal;
  return Error{c, fmt::format("{}: {}", what, sqlite3_errmsg(db))};
}

// A prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql) {
    ok_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) ==
          SQLITE_OK;
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return ok_; }
  Statement& bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& bindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int col) {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  }
  int64_t integer(int col) { return sqlite3_column_int64(stmt_, col); }
  bool isNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  bool ok_ = false;
};

Result<void> exec(sqlite3* db, std::string_view sql, std::string_view what) {
  char* err = nullptr;
  if (sqlite3_exec(db, std::string(sql).c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Error{Code::kUnavailable, fmt::format("{}: {}", what, msg)};
  }
  return okResult();
}

// Each WAL frame is a page behind a header of 24 bytes.
constexpr int kWalFrameHeader = 24;
// Passive passes in one round before it gives up catching the writer.
constexpr int kMaxCatchUpPasses = 8;
// How long a RESTART checkpoint waits for the writer's transaction to end,
// and then for readers of the WAL (holding the writer back while it does).
constexpr std::chrono::milliseconds kRestartWait{10};

int pageSize(sqlite3* db) {
  Statement s(db, "PRAGMA page_size");
  return s.ok() && s.step() == SQLITE_ROW ? static_cast<int>(s.integer(0)) : 4096;
}

// One round of the checkpointer. PASSIVE never waits for, nor blocks, the
// writer: it copies what was committed when it started. The writer starts the
// WAL over only when, at the start of its transaction, everything is copied.
// Under a steady stream of commits one pass never got there (the writer
// appends while it copies), so the WAL grew for as long as the load lasted:
// 360 MB after 30 s at 7,900 issuances/s (docs/PERFORMANCE.md). So passes
// repeat while commits keep arriving, each copying only what came in during
// the one before, until a pass finds nothing new; at the CA's pace (a commit
// every few milliseconds) the next transaction then starts the WAL over. A
// writer with hardly a pause between transactions still outruns that, so once
// the WAL passes `restart_frames` a RESTART checkpoint takes the write lock
// between two transactions, copies the rest and sees that the next one starts
// over. It waits at most kRestartWait for the writer and then for readers,
// holding the writer back meanwhile; a reader that stays longer makes it
// give up until the next round.
void checkpointRound(sqlite3* db, int restart_frames) {
  int previous = -1, frames = 0, copied = 0;
  for (int pass = 0; pass < kMaxCatchUpPasses; ++pass) {
    if (sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied) !=
        SQLITE_OK) {
      return;  // busy (another checkpoint) or broken: the next round tries again
    }
    if (frames == 0 || copied < frames)
      return;  // empty; or a reader holds frames back, which nothing here can change
    if (frames == previous)
      break;  // nothing new came in during the last pass
    previous = frames;
  }
  if (frames > restart_frames)
    sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
}

// COMMIT, or ROLLBACK when it fails (disk full, I/O error): a connection left
// inside a failed transaction would refuse every later write.
Result<void> commit(sqlite3* db, std::string_view what) {
  auto r = exec(db, "COMMIT", what);
  if (!r.ok() && !sqlite3_get_autocommit(db)) {
    (void)exec(db, "ROLLBACK", "rollback");
  }
  return r;
}

constexpr std::string_view kIssuanceColumns =
    "serial, spiffe_id, not_before, not_after, signer, caller, method, api, issued_at";

// The row `s` is on, selected with kIssuanceColumns.
IssuanceRecord issuanceAt(Statement& s) {
  return IssuanceRecord{s.text(0),
                        s.text(1),
                        fromUnixSeconds(s.integer(2)),
                        fromUnixSeconds(s.integer(3)),
                        s.text(4),
                        s.text(5),
                        s.text(6),
                        s.text(7),
                        fromUnixSeconds(s.integer(8))};
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::filesystem::path& path,
                                                       SqliteStoreOptions options) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  // The database holds join-token hashes and who got what: keep it private.
  mode_t old_mask = ::umask(077);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  ::umask(old_mask);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Error::unavailable(fmt::format("cannot open database {}: {}", path.string(), msg));
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(db, path));
  sqlite3_busy_timeout(db, 5000);
  // Switching a fresh database to WAL takes an exclusive lock, and SQLite
  // answers SQLITE_BUSY at once, without the busy handler, when another
  // connection is opening the same file at that moment: retry for about as
  // long as the busy timeout.
  Result<void> wal = exec(db, "PRAGMA journal_mode=WAL", "cannot enable WAL");
  for (int i = 0; i < 500 && !wal.ok() && sqlite3_errcode(db) == SQLITE_BUSY; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    wal = exec(db, "PRAGMA journal_mode=WAL", "cannot enable WAL");
  }
  MESHID_RETURN_IF_ERROR(wal);
  MESHID_RETURN_IF_ERROR(exec(db, "PRAGMA synchronous=NORMAL", "cannot set synchronous"));
  MESHID_RETURN_IF_ERROR(exec(db, "PRAGMA foreign_keys=ON", "cannot enable foreign keys"));
  auto migrated = store->migrate();
  if (!migrated.ok()) {
    return migrated.error().wrap(path.string());
  }
  // A WAL that started over keeps its file: without a limit it stays at the
  // largest it ever was.
  MESHID_RETURN_IF_ERROR(
      exec(db, fmt::format("PRAGMA journal_size_limit={}", options.wal_restart_bytes).c_str(),
           "cannot limit the WAL's size"));
  store->startCheckpointer(path, options.checkpoint_interval, options.wal_restart_bytes);
  return store;
}

void SqliteStore::startCheckpointer(const std::filesystem::path& path,
                                    std::chrono::milliseconds interval,
                                    uint64_t wal_restart_bytes) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(db);
    return;  // SQLite's own automatic checkpoints stay on
  }
  // A new connection learns the journal mode when it first reads the file;
  // until then a checkpoint on it does nothing.
  bool wal = false;
  {
    Statement mode(db, "PRAGMA journal_mode");
    wal = mode.ok() && mode.step() == SQLITE_ROW && mode.text(0) == "wal";
  }
  if (!wal) {
    sqlite3_close(db);
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (!exec(db_, "PRAGMA wal_autocheckpoint=0", "cannot hand checkpoints over").ok()) {
      sqlite3_close(db);
      return;
    }
  }
  checkpoint_db_ = db;
  sqlite3_busy_timeout(db, static_cast<int>(kRestartWait.count()));
  int restart_frames = static_cast<int>(std::min<uint64_t>(
      wal_restart_bytes / static_cast<uint64_t>(pageSize(db) + kWalFrameHeader), INT32_MAX));
  checkpointer_ = std::make_unique<PeriodicThread>(
      interval, PeriodicThread::First::kAfterInterval,
      [db, restart_frames] { checkpointRound(db, restart_frames); });
}

FileSizes SqliteStore::fileSizes() const {
  auto size = [](const std::filesystem::path& p) -> uint64_t {
    std::error_code ec;
    uintmax_t n = std::filesystem::file_size(p, ec);
    return ec ? 0 : static_cast<uint64_t>(n);
  };
  std::filesystem::path wal = path_;
  wal += "-wal";
  return FileSizes{size(path_), size(wal)};
}

SqliteStore::~SqliteStore() {
  checkpointer_.reset();  // joined before its connection closes
  sqlite3_close(checkpoint_db_);
  for (sqlite3_stmt* st : {begin_, insert_, commit_})
    sqlite3_finalize(st);
  sqlite3_close(db_);
}

Result<void> SqliteStore::migrate() {
  std::lock_guard lock(mu_);
  MESHID_RETURN_IF_ERROR(exec(db_,
                              "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER "
                              "PRIMARY KEY, applied_at INTEGER NOT NULL)",
                              "cannot create schema_migrations"));
  // The statement is finalized before any BEGIN: a pending read keeps a WAL
  // snapshot, and upgrading a stale snapshot to a writer fails at once with
  // "database is locked" instead of waiting for the busy timeout.
  auto readVersion = [this]() -> Result<int64_t> {
    Statement current(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    if (!current.ok() || current.step() != SQLITE_ROW) {
      return sqliteError(db_, "cannot read schema version");
    }
    return current.integer(0);
  };
  MESHID_ASSIGN_OR_RETURN(int64_t version, readVersion());
  if (version > static_cast<int64_t>(kMigrations.size())) {
    return Error::failedPrecondition(fmt::format(
        "database schema version {} is newer than this meshid knows ({}): refusing to touch it",
        version, kMigrations.size()));
  }
  for (size_t v = static_cast<size_t>(version) + 1; v <= kMigrations.size(); ++v) {
    MESHID_RETURN_IF_ERROR(exec(db_, "BEGIN IMMEDIATE", "cannot begin migration"));
    // Another process opening the same fresh database may have applied this
    // migration while we waited for the write lock.
    auto now_at = readVersion();
    if (!now_at.ok()) {
      (void)exec(db_, "ROLLBACK", "rollback");
      return now_at.error();
    }
    if (*now_at >= static_cast<int64_t>(v)) {
      MESHID_RETURN_IF_ERROR(commit(db_, "cannot commit migration"));
      continue;
    }
    auto applied = exec(db_, kMigrations[v - 1], fmt::format("migration {} failed", v));
    if (applied.ok()) {
      Statement mark(
          db_,
          "INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%s','now'))");
      mark.bind(1, static_cast<int64_t>(v));
      if (!mark.ok() || mark.step() != SQLITE_DONE) {
        applied = sqliteError(db_, "cannot record migration");
      }
    }
    if (!applied.ok()) {
      (void)exec(db_, "ROLLBACK", "rollback");
      return applied;
    }
    MESHID_RETURN_IF_ERROR(commit(db_, "cannot commit migration"));
  }
  return okResult();
}

Result<int> SqliteStore::schemaVersion() {
  std::lock_guard lock(mu_);
  Statement s(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!s.ok() || s.step() != SQLITE_ROW) {
    return sqliteError(db_, "cannot read schema version");
  }
  return static_cast<int>(s.integer(0));
}

Result<void> SqliteStore::recordIssuance(const IssuanceRecord& r) {
  PendingIssuance mine{&r};
  std::unique_lock lock(batch_mu_);
  pending_.push_back(&mine);
  // Someone is committing: wait for them to take our row in the next batch.
  batch_cv_.wait(lock, [&] { return mine.done || !committing_; });
  if (mine.done)
    return mine.result;
  // We lead: commit everything pending, again and again, until none is left.
  committing_ = true;
  while (!pending_.empty()) {
    std::vector<PendingIssuance*> batch;
    batch.swap(pending_);
    lock.unlock();
    std::vector<const IssuanceRecord*> rows;
    rows.reserve(batch.size());
    for (auto* p : batch)
      rows.push_back(p->record);
    Result<void> result;
    {
      std::lock_guard db_lock(mu_);
      result = insertIssuancesLocked(rows);
    }
    lock.lock();
    for (auto* p : batch) {
      p->result = result;
      p->done = true;
    }
    batch_cv_.notify_all();
  }
  committing_ = false;
  batch_cv_.notify_all();
  return mine.result;
}

Result<void> SqliteStore::recordIssuances(const std::vector<const IssuanceRecord*>& records) {
  if (records.empty())
    return okResult();
  std::lock_guard lock(mu_);
  return insertIssuancesLocked(records);
}

// One transaction for the batch: all rows or none (a duplicate serial fails
// the whole batch; serials are 126 random bits, so that is a broken RNG).
Result<void> SqliteStore::insertIssuancesLocked(const std::vector<const IssuanceRecord*>& batch) {
  auto prepare = [&](sqlite3_stmt** st, const char* sql) {
    return *st != nullptr || sqlite3_prepare_v2(db_, sql, -1, st, nullptr) == SQLITE_OK;
  };
  if (!prepare(&begin_, "BEGIN IMMEDIATE") || !prepare(&commit_, "COMMIT") ||
      !prepare(&insert_,
               "INSERT INTO issuances (serial, spiffe_id, not_before, not_after, signer, caller, "
               "method, api, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
    return sqliteError(db_, "cannot prepare issuance statements");
  }
  auto run = [&](sqlite3_stmt* st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE;
  };
  if (!run(begin_))
    return sqliteError(db_, "cannot begin transaction");
  Result<void> result;
  for (const IssuanceRecord* r : batch) {
    auto text = [&](int i, const std::string& v) {
      sqlite3_bind_text(insert_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    };
    text(1, r->serial);
    text(2, r->spiffe_id);
    sqlite3_bind_int64(insert_, 3, unix(r->not_before));
    sqlite3_bind_int64(insert_, 4, unix(r->not_after));
    text(5, r->signer);
    text(6, r->caller);
    text(7, r->method);
    text(8, r->api);
    sqlite3_bind_int64(insert_, 9, unix(r->issued_at));
    bool ok = sqlite3_step(insert_) == SQLITE_DONE;
    if (!ok)
      result = sqliteError(db_, "cannot record issuance");
    sqlite3_reset(insert_);
    sqlite3_clear_bindings(insert_);
    if (!ok)
      break;
  }
  if (result.ok() && !run(commit_))
    result = sqliteError(db_, "cannot commit issuances");
  if (!result.ok() && !sqlite3_get_autocommit(db_)) {
    (void)exec(db_, "ROLLBACK", "rollback");
  }
  return result;
}

Result<std::optional<IssuanceRecord>> SqliteStore::findIssuance(const std::string& serial) {
  std::lock_guard lock(mu_);
  Statement s(db_, fmt::format("SELECT {} FROM issuances WHERE serial = ?", kIssuanceColumns));
  if (!s.ok()) {
    return sqliteError(db_, "cannot query issuance");
  }
  s.bind(1, serial);
  int rc = s.step();
  if (rc == SQLITE_DONE) {
    return std::optional<IssuanceRecord>();
  }
  if (rc != SQLITE_ROW) {
    return sqliteError(db_, "cannot query issuance");
  }
  return std::optional<IssuanceRecord>(issuanceAt(s));
}

// By identity the (spiffe_id, issued_at) index answers; across identities
// the rows are read newest first in recording order.
Result<std::vector<IssuanceRecord>> SqliteStore::listIssuances(const IssuanceQuery& q) {
  std::lock_guard lock(mu_);
  const bool by_id = !q.spiffe_id.empty();
  Statement s(db_, fmt::format("SELECT {} FROM issuances WHERE {} issued_at >= ? ORDER BY {} "
                               "LIMIT ?",
                               kIssuanceColumns, by_id ? "spiffe_id = ? AND" : "",
                               by_id ? "issued_at DESC, rowid DESC" : "rowid DESC"));
  if (!s.ok()) {
    return sqliteError(db_, "cannot list issuances");
  }
  int i = 1;
  if (by_id)
    s.bind(i++, q.spiffe_id);
  s.bind(i++, q.since ? unix(*q.since) : std::numeric_limits<int64_t>::min());
  s.bind(i, static_cast<int64_t>(std::min<size_t>(q.limit, std::numeric_limits<int64_t>::max())));
  std::vector<IssuanceRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back(issuanceAt(s));
  if (rc != SQLITE_DONE) {
    return sqliteError(db_, "cannot list issuances");
  }
  return out;
}

Result<uint64_t> SqliteStore::countIssuances() {
  std::lock_guard lock(mu_);
  Statement s(db_, "SELECT COUNT(*) FROM issuances");
  if (!s.ok() || s.step() != SQLITE_ROW) {
    return sqliteError(db_, "cannot count issuances");
  }
  return static_cast<uint64_t>(s.integer(0));
}

Result<void> SqliteStore::createJoinToken(const JoinTokenRecord& r) {
  std::lock_guard lock(mu_);
  Statement s(db_,
              "INSERT INTO join_tokens (token_hash, spiffe_id, created_at, expires_at, used_at) "
              "VALUES (?, ?, ?, ?, NULL)");
  if (!s.ok()) {
    return sqliteError(db_, "cannot create join token");
  }
  s.bind(1, r.token_hash)
      .bind(2, r.spiffe_id)
      .bind(3, unix(r.created_at))
      .bind(4, unix(r.expires_at));
  int rc = s.step();
  if (rc == SQLITE_CONSTRAINT) {
    return Error::alreadyExists("a join token with this hash already exists");
  }
  if (rc != SQLITE_DONE) {
    return sqliteError(db_, "cannot create join token");
  }
  return okResult();
}

Result<JoinTokenRecord> SqliteStore::consumeJoinToken(const std::string& token_hash,
                                                      SystemTime now) {
  std::lock_guard lock(mu_);
  MESHID_RETURN_IF_ERROR(exec(db_, "BEGIN IMMEDIATE", "cannot begin transaction"));
  auto body = [&]() -> Result<JoinTokenRecord> {
    Statement q(db_,
                "SELECT token_hash, spiffe_id, created_at, expires_at, used_at FROM join_tokens "
                "WHERE token_hash = ?");
    if (!q.ok()) {
      return sqliteError(db_, "cannot look up join token");
    }
    q.bind(1, token_hash);
    int rc = q.step();
    if (rc == SQLITE_DONE) {
      return Error::notFound("unknown join token");
    }
    if (rc != SQLITE_ROW) {
      return sqliteError(db_, "cannot look up join token");
    }
    JoinTokenRecord r{q.text(0), q.text(1), fromUnixSeconds(q.integer(2)),
                      fromUnixSeconds(q.integer(3)), std::nullopt};
    if (!q.isNull(4)) {
      return Error::failedPrecondition("join token was already used");
    }
    if (now >= r.expires_at) {
      return Error::failedPrecondition("join token expired");
    }
    Statement u(db_, "UPDATE join_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL");
    if (!u.ok()) {
      return sqliteError(db_, "cannot mark join token used");
    }
    u.bind(1, unix(now)).bind(2, token_hash);
    if (u.step() != SQLITE_DONE || sqlite3_changes(db_) != 1) {
      return sqliteError(db_, "cannot mark join token used");
    }
    r.used_at = now;
    return r;
  };
  Result<JoinTokenRecord> result = body();
  if (!result.ok()) {
    (void)exec(db_, "ROLLBACK", "rollback");
    return result;
  }
  MESHID_RETURN_IF_ERROR(commit(db_, "cannot commit join token use"));
  return result;
}

Result<std::optional<BundleVersion>> SqliteStore::latestBundleLocked() {
  Statement s(db_,
              "SELECT version, roots_pem, sha256, created_at FROM bundle_versions ORDER BY version "
              "DESC LIMIT 1");
  if (!s.ok()) {
    return sqliteError(db_, "cannot read trust bundle");
  }
  int rc = s.step();
  if (rc == SQLITE_DONE) {
    return std::optional<BundleVersion>();
  }
  if (rc != SQLITE_ROW) {
    return sqliteError(db_, "cannot read trust bundle");
  }
  return std::optional<BundleVersion>(BundleVersion{static_cast<uint64_t>(s.integer(0)), s.text(1),
                                                    s.text(2), fromUnixSeconds(s.integer(3))});
}

Result<std::optional<BundleVersion>> SqliteStore::latestBundle() {
  std::lock_guard lock(mu_);
  return latestBundleLocked();
}

Result<BundleVersion> SqliteStore::saveBundle(const std::string& roots_pem,
                                              const std::string& sha256, SystemTime now) {
  std::lock_guard lock(mu_);
  MESHID_ASSIGN_OR_RETURN(std::optional<BundleVersion> latest, latestBundleLocked());
  if (latest && latest->sha256 == sha256) {
    return *latest;
  }
  BundleVersion next{latest ? latest->version + 1 : 1, roots_pem, sha256, now};
  Statement s(
      db_,
      "INSERT INTO bundle_versions (version, roots_pem, sha256, created_at) VALUES (?, ?, ?, ?)");
  if (!s.ok()) {
    return sqliteError(db_, "cannot save trust bundle");
  }
  s.bind(1, static_cast<int64_t>(next.version))
      .bind(2, roots_pem)
      .bind(3, sha256)
      .bind(4, unix(now));
  if (s.step() != SQLITE_DONE) {
    return sqliteError(db_, "cannot save trust bundle");
  }
  return next;
}

// Issuance rows are swept in rowid order, which is the order they were
// recorded in, a window of rowids per statement (its own short transaction,
// so a batch of new records waits for one window at most), deleting the
// expired rows in it. A certificate recorded at or after the cutoff cannot
// have expired before it, so the sweep ends at the first window with nothing
// expired and nothing recorded before the cutoff; rows recorded out of order
// (a clock stepped back, rows copied in) are found as long as they sit in a
// window the sweep reaches. Rows of longer-lived certificates not yet due
// only cost later sweeps a look. No index beyond the table's own is needed:
// one on not_after cost every batch of new records a fifth more
// (bench/ca_store, 2026-12-07).
Result<PruneResult> SqliteStore::pruneExpired(SystemTime expired_before, uint64_t max_rows) {
  constexpr int64_t kWindow = 256;
  const int64_t cutoff = unix(expired_before);
  PruneResult out;
  std::unique_lock lock(mu_);  // held at every return: the statements finalize under it
  Statement tokens(db_, "DELETE FROM join_tokens WHERE expires_at < ?");
  if (!tokens.ok())
    return sqliteError(db_, "cannot prune join tokens");
  tokens.bind(1, cutoff);
  if (tokens.step() != SQLITE_DONE)
    return sqliteError(db_, "cannot prune join tokens");
  out.join_tokens = static_cast<uint64_t>(sqlite3_changes(db_));

  Statement next_row(db_, "SELECT rowid FROM issuances WHERE rowid > ? ORDER BY rowid LIMIT 1");
  Statement window(db_, "DELETE FROM issuances WHERE rowid >= ? AND rowid < ? AND not_after < ?");
  Statement older(db_,
                  "SELECT 1 FROM issuances WHERE rowid >= ? AND rowid < ? AND issued_at < ? "
                  "LIMIT 1");
  if (!next_row.ok() || !window.ok() || !older.ok())
    return sqliteError(db_, "cannot prune issuances");
  // The first row after `after` in recording order, or none at the end.
  // Statements are reset after each use: one left open would hold a read
  // snapshot that the next BEGIN IMMEDIATE on this connection cannot upgrade.
  auto rowAfter = [&](int64_t after) -> Result<std::optional<int64_t>> {
    next_row.bind(1, after);
    int rc = next_row.step();
    std::optional<int64_t> row;
    if (rc == SQLITE_ROW)
      row = next_row.integer(0);
    next_row.reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      return sqliteError(db_, "cannot prune issuances");
    return row;
  };
  MESHID_ASSIGN_OR_RETURN(std::optional<int64_t> from,
                          rowAfter(std::numeric_limits<int64_t>::min()));
  while (from) {  // a window starts at a row: gaps left by deletions are skipped
    if (out.issuances >= max_rows) {
      out.complete = false;
      break;
    }
    window.bind(1, *from).bind(2, *from + kWindow).bind(3, cutoff);
    int rc = window.step();
    window.reset();
    if (rc != SQLITE_DONE)
      return sqliteError(db_, "cannot prune issuances");
    const auto deleted = static_cast<uint64_t>(sqlite3_changes(db_));
    out.issuances += deleted;
    if (deleted == 0) {
      older.bind(1, *from).bind(2, *from + kWindow).bind(3, cutoff);
      rc = older.step();
      older.reset();
      if (rc == SQLITE_DONE)
        break;  // everything here was recorded at or after the cutoff
      if (rc != SQLITE_ROW)
        return sqliteError(db_, "cannot prune issuances");
    }
    MESHID_ASSIGN_OR_RETURN(from, rowAfter(*from + kWindow - 1));
    // Between windows the connection is free (the statements are reset),
    // and a batch of new records waiting for it gets it: an unlock followed
    // at once by a lock would usually win again.
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    lock.lock();
  }
  return out;
}

}  // namespace meshid::store
