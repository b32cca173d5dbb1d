#include "agent/secret_cache.h"

#include <openssl/crypto.h>

namespace meshid::agent {

IssuedSvid::~IssuedSvid() {
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  OPENSSL_cleanse(key_der.data(), key_der.size());
}

std::string Bundle::pem() const {
  std::string out;
  for (const auto& r : roots_pem)
    out += r;
  return out;
}

std::string Bundle::der() const {
  std::string out;
  for (const auto& r : roots_der)
    out += r;
  return out;
}

void SecretCache::publish(std::shared_ptr<const IssuedSvid> svid) {
  {
    std::lock_guard lock(mu_);
    svids_[svid->spiffe_id.str()] = std::move(svid);
  }
  notify();
}

void SecretCache::withdraw(const pki::SpiffeId& id) {
  {
    std::lock_guard lock(mu_);
    if (svids_.erase(id.str()) == 0)
      return;
  }
  notify();
}

void SecretCache::setBundle(std::shared_ptr<const Bundle> bundle) {
  {
    std::lock_guard lock(mu_);
    if (bundle_ && bundle_->sha256 == bundle->sha256 && bundle_->version == bundle->version)
      return;
    bundle_ = std::move(bundle);
  }
  notify();
}

std::shared_ptr<const IssuedSvid> SecretCache::svid(const std::string& spiffe_id) const {
  std::lock_guard lock(mu_);
  auto it = svids_.find(spiffe_id);
  return it == svids_.end() ? nullptr : it->second;
}

std::shared_ptr<const Bundle> SecretCache::bundle() const {
  std::lock_guard lock(mu_);
  return bundle_;
}

std::vector<std::shared_ptr<const IssuedSvid>> SecretCache::all() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<const IssuedSvid>> out;
  for (const auto& [_, s] : svids_)
    out.push_back(s);
  return out;
}

uint64_t SecretCache::subscribe(Listener listener) {
  std::lock_guard lock(listeners_mu_);
  uint64_t id = next_listener_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void SecretCache::unsubscribe(uint64_t id) {
  std::lock_guard lock(listeners_mu_);
  listeners_.erase(id);
}

size_t SecretCache::listenerCount() const {
  std::lock_guard lock(listeners_mu_);
  return listeners_.size();
}

void SecretCache::notify() {
  std::lock_guard lock(listeners_mu_);
  for (auto& [_, l] : listeners_)
    l();
}

}  // namespace meshid::agent
