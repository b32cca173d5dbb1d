// Retention for the CA's records: a thread of its own deletes the issuance
// records of certificates that expired more than `retention` ago, and join
// tokens likewise, every `interval` (the first pass right after start).
#pragma once

#include <chrono>
#include <memory>

#include "ca/metrics.h"
#include "common/clock.h"
#include "common/periodic_thread.h"
#include "common/result.h"
#include "store/store.h"

namespace meshid::ca {

class RecordPruner {
 public:
  // Rows deleted per store call; the pass goes on until nothing is due.
  static constexpr uint64_t kRowsPerCall = 10'000;

  RecordPruner(store::Store& store, const Clock& clock, Seconds retention,
               std::chrono::milliseconds interval, CaMetrics& metrics);
  // Destroying it stops the thread; a pass in progress ends after its
  // current store call.
  RecordPruner(const RecordPruner&) = delete;
  RecordPruner& operator=(const RecordPruner&) = delete;

  void start();
  // One pass, now, on the caller's thread: everything due at clock.now().
  Result<store::PruneResult> pruneNow();

 private:
  store::Store& store_;
  const Clock& clock_;
  const Seconds retention_;
  const std::chrono::milliseconds interval_;
  CaMetrics& metrics_;
  std::unique_ptr<PeriodicThread> thread_;  // last: stops first
};

}  // namespace meshid::ca
