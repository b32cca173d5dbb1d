// Rotation in virtual time: a FakeClock-free pure function, driven with
// explicit times and a FakeRandom.
#include "agent/rotation.h"

#include <gtest/gtest.h>

namespace meshid::agent {
namespace {

using namespace std::chrono_literals;

const SystemTime kT0 = fromUnixSeconds(1'800'000'000);

RotationPolicy istioDefaults() {
  return RotationPolicy{};
}

TEST(RenewAt, HalfLifeWithoutJitter) {
  FakeRandom none({0.0});
  HeldCertificate cert{kT0, kT0 + 24h};
  EXPECT_EQ(renewAt(cert, istioDefaults(), none), kT0 + 12h);
}

TEST(RenewAt, LifetimeIsMeasuredFromReceiptNotFromNotBefore) {
  FakeRandom none({0.0});
  // Received 4 h into its life: L = 20 h, renew 10 h after receipt.
  HeldCertificate cert{kT0 + 4h, kT0 + 24h};
  EXPECT_EQ(renewAt(cert, istioDefaults(), none), kT0 + 14h);
}

TEST(RenewAt, GraceRatioMovesTheRenewalPoint) {
  FakeRandom none({0.0});
  RotationPolicy p;
  p.grace_ratio = 0.2;  // renew at 80 % of the lifetime
  p.grace_ratio_jitter = 0;
  EXPECT_EQ(renewAt({kT0, kT0 + 10s}, p, none), kT0 + 8s);
}

TEST(RenewAt, JitterStaysWithinItsBound) {
  RotationPolicy p;
  p.grace_ratio = 0.5;
  p.grace_ratio_jitter = 0.1;
  HeldCertificate cert{kT0, kT0 + 100s};
  for (double u : {0.0, 0.25, 0.5, 0.999999}) {
    FakeRandom r({u});
    SystemTime at = renewAt(cert, p, r);
    EXPECT_LE(at, kT0 + 50s) << u;
    EXPECT_GT(at, kT0 + 40s) << u;  // 50 s minus at most 10 % of 100 s
    EXPECT_EQ(at, kT0 + 50s -
                      std::chrono::duration_cast<SystemTime::duration>(
                          std::chrono::duration<double>(u * 10.0)))
        << u;
  }
}

TEST(RenewAt, ExpiredOnArrivalIsDueAtOnce) {
  FakeRandom none({0.0});
  EXPECT_EQ(renewAt({kT0, kT0 - 1s}, istioDefaults(), none), kT0);
}

TEST(Backoff, DoublesUpToTheCapWithEqualJitter) {
  RotationPolicy p;
  p.initial_backoff = 1s;
  p.max_backoff = 16s;
  FakeRandom top({0.999999});
  FakeRandom bottom({0.0});
  const std::chrono::milliseconds full[] = {1s, 2s, 4s, 8s, 16s, 16s, 16s};
  for (int n = 1; n <= 7; ++n) {
    auto hi = backoff(n, p, top);
    auto lo = backoff(n, p, bottom);
    EXPECT_EQ(lo, full[n - 1] / 2) << n;
    EXPECT_LT(hi, full[n - 1]) << n;
    EXPECT_GE(hi, full[n - 1] - 1ms) << n;
  }
}

TEST(Backoff, HugeFailureCountsStayAtTheCap) {
  RotationPolicy p;
  FakeRandom bottom({0.0});
  EXPECT_EQ(backoff(1'000'000, p, bottom), p.max_backoff / 2);
}

TEST(Decide, NothingHeldMeansRenewNowAndServeNothing) {
  RotationState s;
  Decision d = decide(s, kT0);
  EXPECT_TRUE(d.renew_now);
  EXPECT_FALSE(d.servable);
  EXPECT_FALSE(d.expired);
}

TEST(Decide, WaitsUntilTheRenewalPointThenRenews) {
  FakeRandom none({0.0});
  RotationState s;
  onIssued(s, kT0 + 10s, kT0, istioDefaults(), none);
  Decision before = decide(s, kT0 + 4s);
  EXPECT_FALSE(before.renew_now);
  EXPECT_TRUE(before.servable);
  EXPECT_EQ(before.wake_at, kT0 + 5s);
  Decision at = decide(s, kT0 + 5s);
  EXPECT_TRUE(at.renew_now);
  EXPECT_TRUE(at.servable);
}

// The CA is down for longer than the grace period: the old certificate is
// served until its last moment, never after, and retries keep backing off.
TEST(Decide, CaOutageLongerThanGraceServesUntilExpiryThenReports) {
  RotationPolicy p;
  p.initial_backoff = 1s;
  p.max_backoff = 4s;
  FakeRandom half({0.5});
  RotationState s;
  onIssued(s, kT0 + 10s, kT0, p, half);  // renew at ~5 s
  SystemTime now = kT0;
  int attempts = 0;
  std::vector<std::chrono::milliseconds> waits;
  while (now < kT0 + 20s) {
    Decision d = decide(s, now);
    EXPECT_EQ(d.servable, now < kT0 + 10s) << "at +" << (now - kT0).count();
    EXPECT_EQ(d.expired, now >= kT0 + 10s);
    if (d.renew_now) {
      ++attempts;
      onFailure(s, now, p, half);  // the CA does not answer
      waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(s.retry_at - now));
      continue;
    }
    ASSERT_GT(d.wake_at, now);
    now = d.wake_at;
  }
  EXPECT_GE(attempts, 5);
  // 1 s, 2 s, 4 s, then capped at 4 s (each kept at 3/4 with u = 0.5).
  ASSERT_GE(waits.size(), 4u);
  EXPECT_EQ(waits[0], 750ms);
  EXPECT_EQ(waits[1], 1500ms);
  EXPECT_EQ(waits[2], 3000ms);
  EXPECT_EQ(waits[3], 3000ms);
  // The CA is back: the next attempt succeeds and the schedule starts over.
  onIssued(s, now + 10s, now, p, half);
  EXPECT_EQ(s.failures, 0);
  EXPECT_TRUE(decide(s, now).servable);
  EXPECT_FALSE(decide(s, now).renew_now);
}

TEST(Decide, ClockJumpForwardPastExpiryStopsServingAndRenews) {
  FakeRandom none({0.0});
  RotationState s;
  onIssued(s, kT0 + 1h, kT0, istioDefaults(), none);
  Decision d = decide(s, kT0 + 3h);
  EXPECT_TRUE(d.renew_now);
  EXPECT_FALSE(d.servable);
  EXPECT_TRUE(d.expired);
}

TEST(Decide, ClockJumpBackwardKeepsServingAndWaitsForTheSamePoint) {
  FakeRandom none({0.0});
  RotationState s;
  onIssued(s, kT0 + 1h, kT0, istioDefaults(), none);
  Decision d = decide(s, kT0 - 10min);
  EXPECT_FALSE(d.renew_now);
  EXPECT_TRUE(d.servable);
  EXPECT_EQ(d.wake_at, kT0 + 30min);
}

TEST(Validate, RefusesNonsense) {
  RotationPolicy p;
  EXPECT_TRUE(validate(p).ok());
  p.grace_ratio = 1.0;
  EXPECT_FALSE(validate(p).ok());
  p = RotationPolicy{};
  p.grace_ratio_jitter = p.grace_ratio;
  EXPECT_FALSE(validate(p).ok());
  p = RotationPolicy{};
  p.max_backoff = p.initial_backoff / 2;
  EXPECT_FALSE(validate(p).ok());
}

}  // namespace
}  // namespace meshid::agent
