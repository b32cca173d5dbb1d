#include "proxy/cert_source.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include "common/duration.h"
#include "common/file_util.h"

namespace meshid::proxy {
namespace {

std::string digest(std::string_view a, std::string_view b, std::string_view c) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  for (auto part : {a, b, c}) {
    uint64_t n = part.size();
    EVP_DigestUpdate(ctx.get(), &n, sizeof n);
    EVP_DigestUpdate(ctx.get(), part.data(), part.size());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

}  // namespace

CertSource::~CertSource() {
  stop();
}

Result<bool> CertSource::reloadIfChanged() {
  const auto& c = config_.certificates;
  MESHID_ASSIGN_OR_RETURN(std::string chain, readFile(c.cert_file, 1 << 20));
  MESHID_ASSIGN_OR_RETURN(std::string key, readFile(c.key_file, 64 * 1024));
  MESHID_ASSIGN_OR_RETURN(std::string bundle, readFile(c.bundle_file, 1 << 20));
  std::string fp = digest(chain, key, bundle);
  if (fp == fingerprint_) {
    OPENSSL_cleanse(key.data(), key.size());
    return false;
  }
  auto snap =
      buildSnapshot(config_, chain, key, bundle, clock_.now(), generation_ + 1, new_session_);
  OPENSSL_cleanse(key.data(), key.size());
  if (!snap.ok())
    return snap.error();
  fingerprint_ = fp;
  ++generation_;
  current_.store(*snap);
  spdlog::info("certificate loaded serial={} not_after={} generation={}", (*snap)->serial_hex,
               formatRfc3339((*snap)->not_after), generation_);
  return true;
}

Result<void> CertSource::loadNow() {
  auto r = reloadIfChanged();
  if (!r.ok())
    return r.error();
  return okResult();
}

void CertSource::start(Listener on_reload) {
  on_reload_ = std::move(on_reload);
  thread_ = std::thread([this] { loop(); });
}

void CertSource::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void CertSource::loop() {
  std::string last_error;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, config_.certificates.poll_interval);
    if (stopping_)
      return;
    lock.unlock();
    auto r = reloadIfChanged();
    if (!r.ok()) {
      // Most often a writer is between two files (the agent writes bundle,
      // key, then chain): look again shortly before calling it a refusal.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      r = reloadIfChanged();
    }
    if (!r.ok()) {
      // A writer between two files is the usual cause: say it once per
      // distinct error, keep the old snapshot, try again at the next poll.
      if (r.error().message != last_error)
        spdlog::warn("new certificate files refused, keeping the current ones: {}",
                     r.error().message);
      last_error = r.error().message;
      if (on_reload_)
        on_reload_(false);
    } else if (*r) {
      last_error.clear();
      if (on_reload_)
        on_reload_(true);
    }
    lock.lock();
  }
}

}  // namespace meshid::proxy
