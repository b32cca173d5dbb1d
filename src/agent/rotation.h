// When to renew a workload certificate, as a pure function of state and now
// (PROTOCOLS.md §4, Istio's agent): the lifetime is measured from the moment
// the certificate was received, L = notAfter − received; renewal is due at
// received + (1 − grace_ratio) × L − jitter, jitter uniform in
// [0, grace_ratio_jitter × L). Failed attempts back off exponentially with
// jitter up to a cap; the certificate in hand is served until it expires,
// never after. Everything is decided from absolute times, so a clock that
// jumps is handled by the next decision.
#pragma once

#include <optional>

#include "common/clock.h"
#include "common/random.h"
#include "common/result.h"

namespace meshid::agent {

struct RotationPolicy {
  double grace_ratio = 0.5;          // SECRET_GRACE_PERIOD_RATIO
  double grace_ratio_jitter = 0.01;  // SECRET_GRACE_PERIOD_RATIO_JITTER
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{60'000};
};

// Refuses ratios outside (0, 1), a jitter of grace_ratio or more, and
// backoffs that are not positive or whose cap is below the start.
Result<void> validate(const RotationPolicy& policy);

struct HeldCertificate {
  SystemTime received;
  SystemTime not_after;
};

// Per identity. Plain data; the functions below are the only writers.
struct RotationState {
  std::optional<HeldCertificate> current;
  SystemTime renew_at{};  // meaningful when current is set
  int failures = 0;       // consecutive failed attempts since the last success
  SystemTime retry_at{};  // meaningful when failures > 0
};

// received + (1 − grace) × L − U[0, jitter × L), L = not_after − received.
// A certificate received already expired (L <= 0) is due at once.
SystemTime renewAt(const HeldCertificate& cert, const RotationPolicy& policy, Random& rng);

// The wait before retry number `failures` (1 = first retry): min(cap,
// initial × 2^(failures−1)), of which a random half is kept ("equal
// jitter": in [d/2, d)), so a fleet that failed together spreads out.
std::chrono::milliseconds backoff(int failures, const RotationPolicy& policy, Random& rng);

// A new certificate arrived at `now`: hold it, schedule its renewal, forget failures.
void onIssued(RotationState& state, SystemTime not_after, SystemTime now,
              const RotationPolicy& policy, Random& rng);

// An attempt failed at `now`: schedule the next one.
void onFailure(RotationState& state, SystemTime now, const RotationPolicy& policy, Random& rng);

struct Decision {
  bool renew_now = false;  // start an attempt now
  bool servable = false;   // the held certificate may be served (not expired)
  bool expired = false;    // a certificate is held but expired: report, do not serve
  SystemTime wake_at{};    // when to decide again if nothing else happens
};

Decision decide(const RotationState& state, SystemTime now);

}  // namespace meshid::agent
