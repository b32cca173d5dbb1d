#include "agent/rotation.h"

#include <algorithm>
#include <cmath>

namespace meshid::agent {

Result<void> validate(const RotationPolicy& p) {
  if (!(p.grace_ratio > 0 && p.grace_ratio < 1)) {
    return Error::invalidArgument("grace ratio must be between 0 and 1 (exclusive)");
  }
  if (!(p.grace_ratio_jitter >= 0 && p.grace_ratio_jitter < p.grace_ratio)) {
    return Error::invalidArgument(
        "grace ratio jitter must be at least 0 and below the grace ratio");
  }
  if (p.initial_backoff.count() <= 0 || p.max_backoff < p.initial_backoff) {
    return Error::invalidArgument("backoff must be positive and its cap at least its start");
  }
  return okResult();
}

SystemTime renewAt(const HeldCertificate& cert, const RotationPolicy& policy, Random& rng) {
  auto lifetime = cert.not_after - cert.received;
  if (lifetime <= SystemTime::duration::zero()) {
    return cert.received;
  }
  double l = static_cast<double>(lifetime.count());
  double jitter = rng.uniform() * policy.grace_ratio_jitter * l;
  auto offset =
      SystemTime::duration(static_cast<SystemTime::rep>((1.0 - policy.grace_ratio) * l - jitter));
  return cert.received + offset;
}

std::chrono::milliseconds backoff(int failures, const RotationPolicy& policy, Random& rng) {
  int n = std::max(failures, 1) - 1;
  // Doubling stops at the cap; 2^n is computed only while it can still matter.
  double d = static_cast<double>(policy.initial_backoff.count());
  double cap = static_cast<double>(policy.max_backoff.count());
  for (int i = 0; i < n && d < cap; ++i)
    d *= 2;
  d = std::min(d, cap);
  double kept = d / 2 + rng.uniform() * d / 2;
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(1.0, kept)));
}

void onIssued(RotationState& state, SystemTime not_after, SystemTime now,
              const RotationPolicy& policy, Random& rng) {
  state.current = HeldCertificate{now, not_after};
  state.renew_at = renewAt(*state.current, policy, rng);
  state.failures = 0;
  state.retry_at = SystemTime{};
}

void onFailure(RotationState& state, SystemTime now, const RotationPolicy& policy, Random& rng) {
  ++state.failures;
  state.retry_at = now + backoff(state.failures, policy, rng);
}

Decision decide(const RotationState& state, SystemTime now) {
  Decision d;
  if (state.current) {
    d.servable = now < state.current->not_after;
    d.expired = !d.servable;
  }
  // Due: nothing held yet, or the renewal point passed (a clock that jumped
  // forward lands here too).
  bool due = !state.current || now >= state.renew_at;
  SystemTime due_at = state.current ? state.renew_at : now;
  if (state.failures > 0) {
    // After a failure the retry schedule decides, whatever the renewal point.
    due = now >= state.retry_at;
    due_at = state.retry_at;
  }
  d.renew_now = due;
  d.wake_at = due ? now : due_at;
  // Wake at expiry too, to stop serving the moment it passes.
  if (d.servable && !due)
    d.wake_at = std::min(d.wake_at, state.current->not_after);
  return d;
}

}  // namespace meshid::agent
