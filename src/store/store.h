// The CA's durable state, behind one interface: SQLite (embedded, the
// default) now, PostgreSQL (HA) beside it later. The store never holds a key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace meshid::store {

// What a store that keeps files takes on disk, in bytes (0 for a file that is
// not there): SqliteStore's database and its WAL.
struct FileSizes {
  uint64_t database = 0;
  uint64_t wal = 0;
};

struct IssuanceRecord {
  std::string serial;  // lowercase hex, unique
  std::string spiffe_id;
  SystemTime not_before;
  SystemTime not_after;
  std::string signer;  // which authority signed (e.g. "selfsigned", "files")
  std::string caller;  // the authenticated identity that asked
  std::string method;  // how it authenticated: "jwt", "mtls", "join_token"
  std::string api;     // "istio" or "meshid"
  SystemTime issued_at;
};

struct JoinTokenRecord {
  std::string token_hash;  // SHA-256 hex of the token; the token itself is never stored
  std::string spiffe_id;   // the identity the token lets its bearer claim
  SystemTime created_at;
  SystemTime expires_at;
  std::optional<SystemTime> used_at;
};

struct BundleVersion {
  uint64_t version = 0;
  std::string roots_pem;
  std::string sha256;
  SystemTime created_at;
};

// Which records listIssuances returns: newest first, at most `limit`.
struct IssuanceQuery {
  std::string spiffe_id;            // empty: every identity
  std::optional<SystemTime> since;  // recorded at or after
  size_t limit = 100;
};

// What one pruneExpired call deleted.
struct PruneResult {
  uint64_t issuances = 0;
  uint64_t join_tokens = 0;
  bool complete = true;  // false: it stopped at max_rows and more may be due; call again
};

// Implementations are thread-safe. Every method may block on I/O. A failed
// write returns UNAVAILABLE (busy, I/O error) or INTERNAL, and the caller
// must then refuse its request: nothing goes out unrecorded.
class Store {
 public:
  virtual ~Store() = default;

  virtual Result<void> recordIssuance(const IssuanceRecord& record) = 0;
  // Several at once, all or none (one transaction where the store has them).
  // The default records them one by one and stops at the first failure.
  virtual Result<void> recordIssuances(const std::vector<const IssuanceRecord*>& records) {
    for (const IssuanceRecord* r : records)
      MESHID_RETURN_IF_ERROR(recordIssuance(*r));
    return okResult();
  }
  virtual Result<std::optional<IssuanceRecord>> findIssuance(const std::string& serial) = 0;
  virtual Result<std::vector<IssuanceRecord>> listIssuances(const IssuanceQuery& query) = 0;
  virtual Result<uint64_t> countIssuances() = 0;

  // ALREADY_EXISTS if a token with this hash exists.
  virtual Result<void> createJoinToken(const JoinTokenRecord& record) = 0;
  // Marks the token used, atomically, and returns it. NOT_FOUND for an unknown
  // hash, FAILED_PRECONDITION if already used or expired at `now`.
  virtual Result<JoinTokenRecord> consumeJoinToken(const std::string& token_hash,
                                                   SystemTime now) = 0;

  // Stores roots as a new version unless they equal the latest (by sha256), in
  // which case the latest is returned unchanged.
  virtual Result<BundleVersion> saveBundle(const std::string& roots_pem, const std::string& sha256,
                                           SystemTime now) = 0;
  virtual Result<std::optional<BundleVersion>> latestBundle() = 0;

  // Retention: deletes the records of certificates that expired before
  // `expired_before` and the join tokens that did (used or not), in short
  // transactions so that recording never waits long behind it. Stops once it
  // has deleted about `max_rows` issuance records.
  virtual Result<PruneResult> pruneExpired(SystemTime expired_before, uint64_t max_rows) = 0;

  // The applied schema version (migrations are numbered from 1).
  virtual Result<int> schemaVersion() = 0;
};

}  // namespace meshid::store
