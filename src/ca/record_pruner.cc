#include "ca/record_pruner.h"

#include <spdlog/spdlog.h>

#include "common/duration.h"

namespace meshid::ca {

RecordPruner::RecordPruner(store::Store& store, const Clock& clock, Seconds retention,
                           std::chrono::milliseconds interval, CaMetrics& metrics)
    : store_(store), clock_(clock), retention_(retention), interval_(interval), metrics_(metrics) {}

void RecordPruner::start() {
  thread_ = std::make_unique<PeriodicThread>(interval_, PeriodicThread::First::kNow,
                                             [this] { (void)pruneNow(); });
}

Result<store::PruneResult> RecordPruner::pruneNow() {
  const SystemTime cutoff = clock_.now() - retention_;
  store::PruneResult total;
  for (;;) {
    auto r = store_.pruneExpired(cutoff, kRowsPerCall);
    if (!r.ok()) {
      metrics_.recordPruneFailed();
      spdlog::error("cannot delete expired CA records error={}", r.error().message);
      return r.error();
    }
    total.issuances += r->issuances;
    total.join_tokens += r->join_tokens;
    if (r->complete || (thread_ && thread_->stopping())) {
      total.complete = r->complete;
      break;
    }
  }
  metrics_.recordsPruned(total.issuances, total.join_tokens);
  if (total.issuances + total.join_tokens > 0) {
    spdlog::info("expired CA records deleted issuances={} join_tokens={} expired_before={}",
                 total.issuances, total.join_tokens, formatRfc3339(cutoff));
  }
  return total;
}

}  // namespace meshid::ca
