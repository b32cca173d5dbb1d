// The trust bundle: the set of roots, versioned and persisted, pushed to every
// watcher when it changes.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "pki/ossl.h"
#include "pki/spiffe_id.h"
#include "store/store.h"

namespace meshid::ca {

struct BundleSnapshot {
  uint64_t version = 0;
  pki::TrustDomain trust_domain;
  std::vector<pki::X509Ptr> roots;
  std::vector<std::string> roots_pem;  // one PEM per root
  std::string sha256;                  // over the concatenated DER roots, hex
  SystemTime updated;
};

class TrustBundle {
 public:
  using Watcher = std::function<void(std::shared_ptr<const BundleSnapshot>)>;

  TrustBundle(pki::TrustDomain trust_domain, store::Store& store, const Clock& clock)
      : trust_domain_(std::move(trust_domain)), store_(store), clock_(clock) {}

  // Publishes roots. Persists a new version when the set differs from the
  // current one (same set: nothing changes) and calls every watcher. Fails
  // (and changes nothing) when the store cannot record it.
  Result<std::shared_ptr<const BundleSnapshot>> update(const std::vector<pki::X509Ptr>& roots);

  std::shared_ptr<const BundleSnapshot> current() const;

  // Watchers are called (outside the lock) with each new snapshot, on the
  // thread that called update(). Returns an id for unwatch().
  uint64_t watch(Watcher watcher);
  void unwatch(uint64_t id);
  size_t watcherCount() const;

 private:
  const pki::TrustDomain trust_domain_;
  store::Store& store_;
  const Clock& clock_;
  mutable std::mutex mu_;
  std::shared_ptr<const BundleSnapshot> current_;  // guarded by mu_
  std::map<uint64_t, Watcher> watchers_;           // guarded by mu_
  uint64_t next_watcher_ = 1;                      // guarded by mu_
  std::mutex update_mu_;  // serialises update(): versions are assigned in order
};

// SHA-256 over the concatenated DER encodings, lowercase hex.
std::string rootsDigest(const std::vector<pki::X509Ptr>& roots);

}  // namespace meshid::ca
