// Keeps a certificate in hand for every identity the agent holds: schedules
// each renewal with the pure rotation functions (rotation.h), runs the CA
// requests on a few worker threads, checks every answer before serving it,
// and withdraws a certificate that expired with no replacement. With a join
// token it first obtains the agent's own SVID and renews everything over
// mTLS with it; with a JWT file it sends the token (re-read every time).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/ca_client.h"
#include "agent/config.h"
#include "agent/metrics.h"
#include "agent/rotation.h"
#include "agent/secret_cache.h"
#include "common/clock.h"
#include "common/random.h"

namespace meshid::agent {

struct IdentityStatus {
  std::string spiffe_id;
  bool agent_self = false;
  std::string state;  // pending, ok, renewing, retrying, expired
  std::string serial;
  SystemTime not_before{};
  SystemTime not_after{};
  SystemTime renew_at{};
  int failures = 0;
  std::string last_error;
  uint64_t rotations = 0;
};

class Rotator {
 public:
  // Called after a new SVID is published (file sinks), and after the bundle
  // changes; on a worker or the watch thread.
  using SvidListener = std::function<void(std::shared_ptr<const IssuedSvid>)>;
  using BundleListener = std::function<void(std::shared_ptr<const Bundle>)>;

  Rotator(const AgentConfig& config, CaClient& ca, SecretCache& cache, AgentMetrics& metrics,
          const Clock& clock, Random& random);
  ~Rotator();

  // The bootstrap bundle; loads a persisted agent SVID when there is one.
  Result<void> init(std::shared_ptr<const Bundle> bundle);
  void onSvid(SvidListener l) { svid_listener_ = std::move(l); }
  void onBundle(BundleListener l) { bundle_listener_ = std::move(l); }

  void start();
  void stop();

  // A bundle from WatchTrustBundle or a Sign answer: adopted when newer.
  void offerBundle(std::shared_ptr<const Bundle> bundle);

  std::vector<IdentityStatus> status() const;

 private:
  struct Managed {
    pki::SpiffeId id;
    bool self = false;
    RotationState state;
    bool in_flight = false;
    bool published = false;
    std::string serial;
    SystemTime not_before{};
    std::string last_error;
    uint64_t rotations = 0;
  };

  void schedulerLoop();
  void workerLoop();
  void watchLoop();
  // One attempt: new key, CSR, CA call, checks. Returns the SVID to serve.
  Result<std::shared_ptr<const IssuedSvid>> obtain(const Managed& m);
  Result<void> persistSelf(const IssuedSvid& svid);
  void adoptSelf(const IssuedSvid& svid);

  const AgentConfig& config_;
  CaClient& ca_;
  SecretCache& cache_;
  AgentMetrics& metrics_;
  const Clock& clock_;
  Random& random_;
  SvidListener svid_listener_;
  BundleListener bundle_listener_;
  const bool join_mode_;

  mutable std::mutex mu_;
  std::condition_variable scheduler_cv_;
  std::condition_variable workers_cv_;
  std::vector<std::unique_ptr<Managed>> identities_;  // fixed after construction
  std::deque<Managed*> queue_;                        // guarded by mu_
  bool stopping_ = false;                             // guarded by mu_
  bool self_ready_ = false;                           // guarded by mu_

  std::mutex watch_mu_;
  std::condition_variable watch_cv_;

  std::thread scheduler_;
  std::thread watcher_;
  std::vector<std::thread> workers_;
};

}  // namespace meshid::agent
