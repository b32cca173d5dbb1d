#include "ca/signing_queue.h"

#include <algorithm>

namespace meshid::ca {

SigningQueue::SigningQueue(Issuer& issuer, size_t workers, size_t max_batch)
    : issuer_(issuer),
      capacity_(std::max<size_t>(1, issuer.maxConcurrentSignings())),
      max_batch_(std::max<size_t>(1, max_batch)) {
  for (size_t i = 0; i < workers; ++i)
    threads_.emplace_back([this] { work(); });
}

SigningQueue::~SigningQueue() {
  stop();
}

void SigningQueue::submit(SignCall call, Done done) {
  if (call.received == std::chrono::steady_clock::time_point{})
    call.received = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  if (stopping_ || admitted_ >= capacity_) {
    bool stopping = stopping_;
    lock.unlock();
    done(stopping ? Result<SignResult>(Error::unavailable("the CA is shutting down; retry"))
                  : Result<SignResult>(issuer_.refuseOverloaded(call)));
    return;
  }
  ++admitted_;
  queue_.push_back(Job{std::move(call), std::move(done)});
  // Busy workers come back for the queue by themselves: waking is needed (and
  // costs a futex call) only when one sleeps.
  if (idle_workers_ > 0)
    cv_.notify_one();
}

void SigningQueue::signBatch(std::unique_lock<std::mutex>& lock, std::vector<Job>& batch,
                             std::vector<SignCall>& calls) {
  size_t n = std::min(queue_.size(), max_batch_);
  for (size_t i = 0; i < n; ++i) {
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  lock.unlock();
  calls.clear();
  for (Job& j : batch)
    calls.push_back(std::move(j.call));
  std::vector<Result<SignResult>> results = issuer_.signBatch(calls);
  for (size_t i = 0; i < batch.size(); ++i)
    batch[i].done(std::move(results[i]));
  lock.lock();
  admitted_ -= batch.size();
  batch.clear();
}

void SigningQueue::work() {
  std::vector<Job> batch;
  std::vector<SignCall> calls;
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_workers_;
    cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    --idle_workers_;
    if (queue_.empty())
      return;  // stopping, nothing left
    signBatch(lock, batch, calls);
  }
}

bool SigningQueue::runQueued() {
  std::unique_lock lock(mu_);
  if (queue_.empty())
    return false;
  std::vector<Job> batch;
  std::vector<SignCall> calls;
  signBatch(lock, batch, calls);
  return !queue_.empty();
}

void SigningQueue::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty())
      return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
  // Without workers of its own, what is still queued is signed here.
  while (runQueued()) {
  }
}

}  // namespace meshid::ca
