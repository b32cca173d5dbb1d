#include "common/periodic_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace meshid {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// Polls every 5 ms, for at most 5 s.
template <class F>
bool eventually(F cond) {
  for (int i = 0; i < 1000 && !cond(); ++i)
    std::this_thread::sleep_for(5ms);
  return cond();
}

TEST(PeriodicThread, FirstNowRunsAtOnceThenEveryInterval) {
  std::atomic<int> runs{0};
  PeriodicThread t(20ms, PeriodicThread::First::kNow, [&] { ++runs; });
  EXPECT_TRUE(eventually([&] { return runs >= 1; }));
  EXPECT_TRUE(eventually([&] { return runs >= 3; }));
}

TEST(PeriodicThread, FirstAfterIntervalWaitsOneInterval) {
  std::atomic<int> runs{0};
  auto started = Steady::now();
  std::atomic<Steady::duration> first_at{};
  PeriodicThread t(200ms, PeriodicThread::First::kAfterInterval, [&] {
    if (runs++ == 0)
      first_at = Steady::now() - started;
  });
  EXPECT_TRUE(eventually([&] { return runs >= 1; }));
  EXPECT_GE(first_at.load(), 200ms);
}

// The destructor wakes a thread waiting out a long interval at once, and a
// run in progress sees stopping() and finishes before the destructor returns.
TEST(PeriodicThread, DestructionStopsPromptlyAndWaitsForTheRun) {
  std::atomic<bool> in_run{false}, saw_stopping{false}, run_done{false};
  std::atomic<PeriodicThread*> self{nullptr};  // reset() clears the unique_ptr first
  auto t = std::make_unique<PeriodicThread>(1h, PeriodicThread::First::kNow, [&] {
    in_run = true;
    while (self == nullptr || !self.load()->stopping())
      std::this_thread::sleep_for(1ms);
    saw_stopping = true;
    std::this_thread::sleep_for(20ms);
    run_done = true;
  });
  self = t.get();
  ASSERT_TRUE(eventually([&] { return in_run.load(); }));
  auto before = Steady::now();
  t.reset();
  EXPECT_TRUE(saw_stopping);
  EXPECT_TRUE(run_done);
  EXPECT_LT(Steady::now() - before, 2s);

  // Waiting out an hour-long interval, it still stops at once.
  std::atomic<int> runs{0};
  auto idle =
      std::make_unique<PeriodicThread>(1h, PeriodicThread::First::kAfterInterval, [&] { ++runs; });
  before = Steady::now();
  idle.reset();
  EXPECT_LT(Steady::now() - before, 2s);
  EXPECT_EQ(runs, 0);
}

}  // namespace
}  // namespace meshid
