// The one source of time. Code that decides anything by time takes a Clock&
// so tests can move a FakeClock instead of sleeping.
#pragma once

#include <chrono>
#include <mutex>

namespace meshid {

using SystemTime = std::chrono::system_clock::time_point;
using Seconds = std::chrono::seconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time; thread-safe.
  virtual SystemTime now() const = 0;
};

class SystemClock final : public Clock {
 public:
  SystemTime now() const override { return std::chrono::system_clock::now(); }
};

// Virtual time for tests; thread-safe so a test thread can advance it while
// the code under test reads it.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(SystemTime start) : now_(start) {}
  SystemTime now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void advance(std::chrono::nanoseconds d) {
    std::lock_guard lock(mu_);
    now_ += std::chrono::duration_cast<SystemTime::duration>(d);
  }
  void set(SystemTime t) {
    std::lock_guard lock(mu_);
    now_ = t;
  }

 private:
  mutable std::mutex mu_;
  SystemTime now_;  // guarded by mu_
};

inline SystemTime fromUnixSeconds(int64_t s) {
  return SystemTime(std::chrono::seconds(s));
}
inline int64_t toUnixSeconds(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace meshid
