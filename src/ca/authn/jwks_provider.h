// Where the Kubernetes JWKS comes from: a file (re-read when it changes) or an
// HTTPS URL (fetched, cached, refreshed in the background). Either way no call
// leaves the CA per request.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/result.h"
#include "pki/jwt.h"

namespace meshid::ca {

class JwksProvider {
 public:
  virtual ~JwksProvider() = default;
  // The keys now; UNAVAILABLE when none could ever be loaded. Thread-safe.
  virtual Result<std::shared_ptr<const pki::Jwks>> current() = 0;
  // Asks for an early refresh (a token named a kid we do not know: the
  // cluster may have rotated its keys). Rate-limited by the implementation.
  virtual void refreshSoon() = 0;
};

class FileJwksProvider final : public JwksProvider {
 public:
  explicit FileJwksProvider(std::filesystem::path path) : path_(std::move(path)) {}
  Result<std::shared_ptr<const pki::Jwks>> current() override;
  void refreshSoon() override {}  // every call already checks the file

 private:
  const std::filesystem::path path_;
  std::mutex mu_;
  std::filesystem::file_time_type loaded_mtime_{};   // guarded by mu_
  std::shared_ptr<const pki::Jwks> jwks_;            // guarded by mu_
  std::chrono::steady_clock::time_point checked_{};  // guarded by mu_
};

class UrlJwksProvider final : public JwksProvider {
 public:
  // Fetches once before returning (a failure is logged, not fatal: the CA
  // starts and answers UNAVAILABLE for tokens until a fetch succeeds).
  UrlJwksProvider(std::string url, std::filesystem::path ca_file, Seconds refresh);
  ~UrlJwksProvider() override;
  Result<std::shared_ptr<const pki::Jwks>> current() override;
  void refreshSoon() override;

 private:
  Result<void> fetch();
  void run();

  const std::string url_;
  const std::filesystem::path ca_file_;
  const Seconds refresh_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const pki::Jwks> jwks_;               // guarded by mu_
  std::string last_error_;                              // guarded by mu_
  bool stopping_ = false;                               // guarded by mu_
  bool wake_ = false;                                   // guarded by mu_
  std::chrono::steady_clock::time_point last_fetch_{};  // guarded by mu_
  std::thread thread_;
};

}  // namespace meshid::ca
