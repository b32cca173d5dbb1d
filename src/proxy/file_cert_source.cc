// Certificates from files (the agent's file sink, or any tool that writes
// PEM), polled and content-checked.
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/file_util.h"
#include "proxy/cert_source.h"

namespace meshid::proxy {
namespace {

class FileCertSource final : public CertSource {
 public:
  FileCertSource(const ProxyConfig& config, SnapshotStore& store)
      : config_(config), store_(store) {}
  ~FileCertSource() override { stop(); }

  Result<void> loadFirst() override {
    auto r = reload();
    if (!r.ok())
      return r.error();
    return okResult();
  }

  void start(Listener on_update) override {
    on_update_ = std::move(on_update);
    thread_ = std::thread([this] { loop(); });
  }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
      thread_.join();
  }

 private:
  Result<bool> reload() {
    const auto& c = config_.certificates;
    MESHID_ASSIGN_OR_RETURN(std::string chain, readFile(c.cert_file, 1 << 20));
    MESHID_ASSIGN_OR_RETURN(std::string key, readFile(c.key_file, 64 * 1024));
    MESHID_ASSIGN_OR_RETURN(std::string bundle, readFile(c.bundle_file, 1 << 20));
    auto r = store_.offer(chain, key, bundle);
    OPENSSL_cleanse(key.data(), key.size());
    return r;
  }

  void loop() {
    std::string last_error;
    std::unique_lock lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, config_.certificates.poll_interval);
      if (stopping_)
        return;
      lock.unlock();
      auto r = reload();
      if (!r.ok()) {
        // Most often a writer is between two files (the agent writes bundle,
        // key, then chain): look again shortly before calling it a refusal.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        r = reload();
      }
      if (!r.ok()) {
        // Say it once per distinct error, keep the old snapshot, try again
        // at the next poll.
        if (r.error().message != last_error)
          spdlog::warn("new certificate files refused, keeping the current ones: {}",
                       r.error().message);
        last_error = r.error().message;
        if (on_update_)
          on_update_(false);
      } else if (*r) {
        last_error.clear();
        if (on_update_)
          on_update_(true);
      }
      lock.lock();
    }
  }

  const ProxyConfig& config_;
  SnapshotStore& store_;
  Listener on_update_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<CertSource>> makeFileCertSource(const ProxyConfig& config,
                                                       SnapshotStore& store) {
  if (!config.sds.socket.empty()) {
    return Error::failedPrecondition(
        "certificates.sds needs the SDS client, which this binary does not have: run `meshid "
        "proxy`, or give cert_file, key_file and bundle_file");
  }
  return std::unique_ptr<CertSource>(new FileCertSource(config, store));
}

}  // namespace meshid::proxy
