#include "ca/trust_bundle.h"

#include <fmt/format.h>
#include <openssl/sha.h>

#include "pki/certificate.h"

namespace meshid::ca {

std::string rootsDigest(const std::vector<pki::X509Ptr>& roots) {
  std::string der;
  for (const auto& r : roots)
    der += pki::certificateToDer(r.get());
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(der.data()), der.size(), md);
  std::string out;
  for (unsigned char b : md)
    out += fmt::format("{:02x}", b);
  return out;
}

Result<std::shared_ptr<const BundleSnapshot>> TrustBundle::update(
    const std::vector<pki::X509Ptr>& roots) {
  if (roots.empty()) {
    return Error::invalidArgument("a trust bundle needs at least one root");
  }
  std::lock_guard update_lock(update_mu_);
  std::string digest = rootsDigest(roots);
  {
    std::lock_guard lock(mu_);
    if (current_ && current_->sha256 == digest) {
      return current_;
    }
  }
  std::vector<pki::X509Ptr> owned;
  std::vector<std::string> pems;
  std::string all_pem;
  for (const auto& r : roots) {
    owned.push_back(pki::shareX509(r.get()));
    pems.push_back(pki::certificateToPem(r.get()));
    all_pem += pems.back();
  }
  MESHID_ASSIGN_OR_RETURN(store::BundleVersion saved,
                          store_.saveBundle(all_pem, digest, clock_.now()));
  auto snap = std::make_shared<const BundleSnapshot>(BundleSnapshot{.version = saved.version,
                                                                    .trust_domain = trust_domain_,
                                                                    .roots = std::move(owned),
                                                                    .roots_pem = std::move(pems),
                                                                    .sha256 = digest,
                                                                    .updated = saved.created_at});
  std::vector<Watcher> to_call;
  {
    std::lock_guard lock(mu_);
    current_ = snap;
    for (const auto& [id, w] : watchers_)
      to_call.push_back(w);
  }
  for (const auto& w : to_call)
    w(snap);
  return snap;
}

std::shared_ptr<const BundleSnapshot> TrustBundle::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

uint64_t TrustBundle::watch(Watcher watcher) {
  std::lock_guard lock(mu_);
  uint64_t id = next_watcher_++;
  watchers_.emplace(id, std::move(watcher));
  return id;
}

void TrustBundle::unwatch(uint64_t id) {
  std::lock_guard lock(mu_);
  watchers_.erase(id);
}

size_t TrustBundle::watcherCount() const {
  std::lock_guard lock(mu_);
  return watchers_.size();
}

}  // namespace meshid::ca
