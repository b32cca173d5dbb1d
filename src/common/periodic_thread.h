// A thread of its own that runs a task every `interval` until destroyed: the
// destructor wakes it, lets a run in progress finish and joins. A task that
// can take long checks stopping() to end early.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace meshid {

class PeriodicThread {
 public:
  enum class First { kNow, kAfterInterval };

  // The owner creates it last, once everything the task touches is ready,
  // and destroys it first.
  PeriodicThread(std::chrono::milliseconds interval, First first, std::function<void()> task);
  ~PeriodicThread();
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

  bool stopping() const;

 private:
  void run(First first);

  const std::chrono::milliseconds interval_;
  const std::function<void()> task_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;     // last: starts once the rest is set
};

}  // namespace meshid
