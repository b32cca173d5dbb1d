// The CA's own TLS identity: issued from its own authority, written where
// the gRPC server re-reads it when it changes, renewed at half-life.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "ca/authority.h"
#include "ca/config.h"
#include "ca/trust_bundle.h"
#include "common/clock.h"

namespace meshid::ca {

class ServingIdentity {
 public:
  // Issues the first certificate and writes the files before returning, so
  // the gRPC server can start on them.
  static Result<std::unique_ptr<ServingIdentity>> start(const CaConfig::Serving& config,
                                                        const std::filesystem::path& dir,
                                                        Authority& authority, const Clock& clock);
  ~ServingIdentity();

  // Key and chain in one file (0600) replaced by one atomic rename, so the
  // watcher can never read a key with another key's certificate.
  std::filesystem::path identityFile() const { return dir_ / "identity.pem"; }
  // The roots client certificates are verified against.
  std::filesystem::path rootsFile() const { return dir_ / "roots.pem"; }

  // Rewrites the roots file (called on every trust bundle change).
  Result<void> writeRoots(const BundleSnapshot& bundle);
  // Issues a new certificate now.
  Result<void> renew();
  SystemTime notAfter() const;

 private:
  ServingIdentity(const CaConfig::Serving& config, std::filesystem::path dir, Authority& authority,
                  const Clock& clock)
      : config_(config), dir_(std::move(dir)), authority_(authority), clock_(clock) {}
  void run();

  const CaConfig::Serving config_;
  const std::filesystem::path dir_;
  Authority& authority_;
  const Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  SystemTime not_before_;  // guarded by mu_
  SystemTime not_after_;   // guarded by mu_
  std::thread thread_;
};

}  // namespace meshid::ca
