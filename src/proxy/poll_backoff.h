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

}  // namespace meshid::proxy
