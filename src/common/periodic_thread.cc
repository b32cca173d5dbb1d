#include "common/periodic_thread.h"

namespace meshid {

PeriodicThread::PeriodicThread(std::chrono::milliseconds interval, First first,
                               std::function<void()> task)
    : interval_(interval), task_(std::move(task)), thread_([this, first] { run(first); }) {}

PeriodicThread::~PeriodicThread() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool PeriodicThread::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

void PeriodicThread::run(First first) {
  std::unique_lock lock(mu_);
  if (first == First::kAfterInterval &&
      cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
    return;
  }
  while (!stopping_) {
    lock.unlock();
    task_();
    lock.lock();
    cv_.wait_for(lock, interval_, [this] { return stopping_; });
  }
}

}  // namespace meshid
