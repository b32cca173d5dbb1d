// The adaptive busy poll's policy on its own: how many sleeps an empty poll
// makes the loop skip, that a caught event restores polling at once, and how
// long a poll lasts for the waits the worker has been seeing (virtual time:
// the waits are given, not measured).
#include "proxy/poll_backoff.h"

#include <gtest/gtest.h>

#include <vector>

namespace meshid::proxy {
namespace {

// Sleeps skipped before the next poll, after the poll just reported.
int skippedBeforeNextPoll(PollBackoff& b) {
  int skipped = 0;
  while (!b.shouldPoll())
    ++skipped;
  return skipped;
}

TEST(PollBackoff, PollsUntilAPollMisses) {
  PollBackoff b;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(b.shouldPoll());
    b.pollEnded(true);
  }
}

TEST(PollBackoff, EachMissInARowDoublesTheSleepsSkippedUpToAThousand) {
  PollBackoff b;
  std::vector<int> skipped;
  for (int i = 0; i < 13; ++i) {
    ASSERT_TRUE(b.shouldPoll());
    b.pollEnded(false);
    skipped.push_back(skippedBeforeNextPoll(b));
  }
  EXPECT_EQ(skipped,
            (std::vector<int>{1, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 1023, 1023, 1023}));
}

TEST(PollBackoff, ACaughtEventRestoresPollingAtOnce) {
  PollBackoff b;
  for (int i = 0; i < 12; ++i) {  // deep into the backoff
    b.pollEnded(false);
    skippedBeforeNextPoll(b);
  }
  b.pollEnded(true);
  EXPECT_TRUE(b.shouldPoll());
  b.pollEnded(false);  // a miss after a catch starts again from one skip
  EXPECT_EQ(skippedBeforeNextPoll(b), 1);
}

using std::chrono::microseconds;

PollBudget autoBudget() {
  return PollBudget(microseconds(5), microseconds(50));
}
void feed(PollBudget& b, microseconds wait, int times) {
  for (int i = 0; i < times; ++i)
    b.noteWait(wait);
}

TEST(PollBudget, StartsAtTheMinimumAndPolls) {
  PollBudget b = autoBudget();
  EXPECT_TRUE(b.worthPolling());
  EXPECT_EQ(b.budget(), microseconds(5));
}

TEST(PollBudget, UnderLoadStaysAtTheMinimum) {
  PollBudget b = autoBudget();
  // 32 keep-alive connections: the next event is caught 1-2 us into a poll,
  // and one wait in ten is slept through (a wake-up, 40-90 us). Those barely
  // move the estimate of the median wait.
  for (int i = 0; i < 5000; ++i) {
    b.noteWait(i % 10 == 0 ? microseconds(40 + i % 50) : microseconds(1 + i % 2));
    ASSERT_LE(b.budget(), microseconds(6)) << "wait " << i;
  }
  EXPECT_TRUE(b.worthPolling());
  EXPECT_LE(b.usual(), microseconds(4));
}

TEST(PollBudget, ABulkTransfersGapsKeepTheMinimum) {
  PollBudget b = autoBudget();
  // Records come every few microseconds; now and then a wait is slept.
  for (int i = 0; i < 5000; ++i) {
    b.noteWait(i % 8 == 0 ? microseconds(45) : microseconds(3 + i % 7));
    ASSERT_EQ(b.budget(), microseconds(5)) << "wait " << i;
  }
  EXPECT_GE(b.usual(), microseconds(4));
  // At a median of 10 us (twice the minimum) the budget grows: 15 us.
  feed(b, microseconds(10), 100);
  EXPECT_EQ(b.budget(), microseconds(15));
}

TEST(PollBudget, OneBusyConnectionGrowsItToTheAnswersGap) {
  PollBudget b = autoBudget();
  // Slept waits of a 35 us answer plus a ~30 us wake-up: the estimate climbs
  // 0.5 us a wait; past 34 us the budget is at its longest, 50 us.
  feed(b, microseconds(65), 68);
  EXPECT_EQ(b.budget(), microseconds(50));
  EXPECT_TRUE(b.worthPolling());
  // Then the polls catch the answer 35-45 us in, with a slept wait now and
  // then: the estimate settles inside that range and the budget stays at 50.
  for (int i = 0; i < 2000; ++i)
    b.noteWait(i % 20 == 0 ? microseconds(90) : microseconds(35 + i % 11));
  EXPECT_GE(b.usual(), microseconds(35));
  EXPECT_LE(b.usual(), microseconds(46));
  EXPECT_EQ(b.budget(), microseconds(50));
  // A faster peer, 20 us: the budget follows it down to 30 us.
  feed(b, microseconds(20), 200);
  EXPECT_EQ(b.budget(), microseconds(30));
}

TEST(PollBudget, LongWaitsStopPollingAndShortOnesResumeIt) {
  PollBudget b = autoBudget();
  feed(b, microseconds(300), 400);  // handshakes, light traffic
  EXPECT_FALSE(b.worthPolling());
  // The estimate stops at four times the maximum (200 us), however long the
  // waits: after an idle minute a burst brings polling back within 200 waits
  // (at 20,000 waits a second, 10 ms).
  b.noteWait(std::chrono::seconds(60));
  EXPECT_EQ(b.usual(), microseconds(200));
  int waits = 0;
  while (!b.worthPolling() && waits < 10000) {
    b.noteWait(microseconds(2));
    ++waits;
  }
  EXPECT_EQ(waits, 200);
  feed(b, microseconds(2), 400);
  EXPECT_EQ(b.budget(), microseconds(5));
}

TEST(PollBudget, AFixedBudgetIsItsOwnMinimumAndMaximum) {
  PollBudget b(microseconds(20), microseconds(20));
  feed(b, microseconds(1), 10);
  EXPECT_EQ(b.budget(), microseconds(20));
  feed(b, microseconds(39), 100);
  EXPECT_EQ(b.budget(), microseconds(20));
}

}  // namespace
}  // namespace meshid::proxy
