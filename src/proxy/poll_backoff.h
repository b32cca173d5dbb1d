// When a worker with nothing to do polls epoll before it sleeps, and when
// it goes straight to sleep ("busy_poll: auto", ReadinessLoop).
//
// A poll pays when an event comes within its budget: the worker then skips
// the sleep and the cross-core wake-up after it, which on this VM cost the
// sender's core as much as ours (docs/PERFORMANCE.md). Under load that is
// nearly every poll (96 % caught at 32 keep-alive connections, 5 us); with
// light traffic nearly none is, and each is the budget spent for nothing.
// So every empty poll doubles how many sleeps come before the next poll (1,
// 3, 7 ... up to 1023 skipped), and a poll that catches an event resets it:
// a loaded worker keeps polling, a lightly loaded one polls about once in a
// thousand sleeps.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace meshid::proxy {

class PollBackoff {
 public:
  static constexpr unsigned kMaxMisses = 10;  // then 2^10 - 1 sleeps skipped

  // Before a wait: poll first? Counts the skipped sleeps down.
  bool shouldPoll() {
    if (skip_ == 0)
      return true;
    --skip_;
    return false;
  }
  // After a poll: did an event come within the budget?
  void pollEnded(bool caught) {
    if (caught) {
      misses_ = 0;
      return;
    }
    misses_ = std::min(misses_ + 1, kMaxMisses);
    skip_ = (1u << misses_) - 1;
  }

 private:
  unsigned misses_ = 0;  // empty polls in a row, capped
  unsigned skip_ = 0;    // sleeps left before the next poll
};

// How long an "auto" poll lasts: `min`, or 1.5 times the worker's usual wait
// for its next event once that is twice `min` or more, up to `max`. "Usual"
// is the median wait (a running estimate that moves 0.5 us towards each new
// wait), over every wait that ended with events, polled or slept.
//
// Under load the next event is already on its way (32 keep-alive
// connections: caught 1-3 us into a poll), and the budget stays at `min`; a
// median, unlike an average, is not pulled up by the few waits that were
// slept through. The threshold of twice `min` keeps a bulk transfer's waits
// (median 3-6 us) at `min` as well: without it, 1.5 times that median
// lengthened bulk's polls (0.97x bulk MB per CPU-second in paired rounds;
// with it still 0.96x, a cost whose cause was not found, docs/PERFORMANCE.md).
// With one busy connection the next event is the peer's answer, 35-45 us
// away on this VM: a 5 us poll never reaches it, and the sleep after it
// costs a cross-core wake-up per hop. A slept wait also counts that wake-up,
// so the estimate may reach twice `max` before polling stops paying; beyond
// that the worker does not poll at all (its waits are long: handshakes,
// light traffic).
class PollBudget {
 public:
  using Duration = std::chrono::nanoseconds;
  static constexpr int64_t kStep = 500;  // ns, towards each wait
  PollBudget(Duration min, Duration max) : min_(min.count()), max_(max.count()) {}

  // After a wait that ended with events: how long it lasted.
  void noteWait(Duration waited) {
    if (waited.count() > usual_)
      usual_ = std::min(usual_ + kStep, 4 * max_);
    else if (waited.count() < usual_)
      usual_ = std::max<int64_t>(usual_ - kStep, 0);
  }
  bool worthPolling() const { return usual_ <= 2 * max_; }
  Duration budget() const {
    if (usual_ < 2 * min_)
      return Duration(min_);
    return Duration(std::clamp<int64_t>(usual_ * 3 / 2, min_, max_));
  }
  Duration usual() const { return Duration(usual_); }

 private:
  int64_t min_;
  int64_t max_;
  int64_t usual_ = 0;  // ns
};

}  // namespace meshid::proxy
