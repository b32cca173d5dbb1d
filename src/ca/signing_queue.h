// Signing off the transport's threads, in batches. A call is queued and its
// handler returns; a worker takes every call waiting (up to a batch), signs
// them, records them in one transaction, writes their log lines at once and
// answers each. Under load this shares one commit, one log write and one
// wake-up among many calls instead of paying each per call (bench/ca_issuance.sh).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "ca/issuer.h"

namespace meshid::ca {

class SigningQueue {
 public:
  using Done = std::function<void(Result<SignResult>)>;

  // `workers` threads of its own, or none: then whoever submits calls runs
  // runQueued() (the CA's gRPC event loops do, after each read). At most
  // issuer.maxConcurrentSignings() calls wait or are being signed at once;
  // beyond that a call is refused at once with RESOURCE_EXHAUSTED. A batch
  // holds at most `max_batch` calls.
  SigningQueue(Issuer& issuer, size_t workers, size_t max_batch = 32);
  ~SigningQueue();
  SigningQueue(const SigningQueue&) = delete;
  SigningQueue& operator=(const SigningQueue&) = delete;

  // Calls `done` exactly once: from a worker once signed (or refused by the
  // pipeline), or before returning when the CA is at its limit or stopping.
  // The call's csr must stay valid until then.
  void submit(SignCall call, Done done);

  // Signs and answers one batch of what is queued on the calling thread;
  // returns whether calls are still waiting. Signing where the calls were
  // read spares each call two thread hand-offs (docs/PERFORMANCE.md).
  bool runQueued();

  // Signs what is already queued, refuses what comes later (UNAVAILABLE), and
  // joins the workers. Idempotent.
  void stop();

 private:
  struct Job {
    SignCall call;
    Done done;
  };
  void work();
  // Takes up to a batch from the queue (mu_ held), signs and answers it.
  void signBatch(std::unique_lock<std::mutex>& lock, std::vector<Job>& batch,
                 std::vector<SignCall>& calls);

  Issuer& issuer_;
  const size_t capacity_;
  const size_t max_batch_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;    // guarded by mu_
  size_t admitted_ = 0;      // queued + being signed; guarded by mu_
  size_t idle_workers_ = 0;  // guarded by mu_
  bool stopping_ = false;    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace meshid::ca
