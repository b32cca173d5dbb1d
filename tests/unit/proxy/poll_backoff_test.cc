// The adaptive busy poll's policy on its own: how many sleeps an empty poll
// makes the loop skip, and that a caught event restores polling at once.
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

}  // namespace
}  // namespace meshid::proxy
