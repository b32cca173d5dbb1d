// The `files` signer: a plugged-in intermediate in Istio's cacerts layout or
// cert-manager's, watched and reloaded when it changes.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "ca/authority.h"
#include "ca/metrics.h"
#include "common/clock.h"
#include "common/periodic_thread.h"

namespace meshid::ca {

class FilesSource {
 public:
  static constexpr Seconds kRetryRefused{30};

  using OnReload = std::function<void(std::shared_ptr<const SigningMaterial>)>;

  // Loads the directory now (a broken set at startup is an error: there is
  // nothing to keep signing with).
  static Result<std::shared_ptr<const SigningMaterial>> loadNow(const std::filesystem::path& dir,
                                                                const Clock& clock);

  // Watches dir by content (so in-place edits and Kubernetes' `..data` symlink
  // swaps are both seen) every poll_interval. A new set that loads is
  // published to the authority and passed to on_reload; a broken one is
  // refused with a log line and a metric, and the authority keeps signing with
  // what it had. A zero poll_interval starts no thread (the caller drives
  // checkOnce). A refused set is tried again every kRetryRefused even if
  // unchanged (a certificate "not yet valid" through clock skew becomes
  // valid). Stops and joins in the destructor.
  FilesSource(std::filesystem::path dir, LocalAuthority& authority, CaMetrics& metrics,
              const Clock& clock, std::chrono::milliseconds poll_interval, OnReload on_reload);
  ~FilesSource();
  FilesSource(const FilesSource&) = delete;
  FilesSource& operator=(const FilesSource&) = delete;

  // One check; returns true if it reloaded. Not to be called concurrently
  // with the poll thread.
  bool checkOnce();

 private:
  std::string fingerprint() const;

  const std::filesystem::path dir_;
  LocalAuthority& authority_;
  CaMetrics& metrics_;
  const Clock& clock_;
  const std::chrono::milliseconds poll_interval_;
  const OnReload on_reload_;

  // Only touched by checkOnce's caller (one thread at a time):
  std::string last_fingerprint_;
  bool last_refused_ = false;
  SystemTime retry_at_{};
  std::unique_ptr<PeriodicThread> poller_;  // last: stops first
};

}  // namespace meshid::ca
