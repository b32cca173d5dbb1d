#include "ca/serving_identity.h"

#include <spdlog/spdlog.h>

#include "common/duration.h"
#include "common/file_util.h"
#include "pki/certificate.h"
#include "pki/key.h"

namespace meshid::ca {

Result<std::unique_ptr<ServingIdentity>> ServingIdentity::start(const CaConfig::Serving& config,
                                                                const std::filesystem::path& dir,
                                                                Authority& authority,
                                                                const Clock& clock) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  std::unique_ptr<ServingIdentity> s(new ServingIdentity(config, dir, authority, clock));
  MESHID_RETURN_IF_ERROR(s->renew());
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

ServingIdentity::~ServingIdentity() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

SystemTime ServingIdentity::notAfter() const {
  std::lock_guard lock(mu_);
  return not_after_;
}

Result<void> ServingIdentity::renew() {
  MESHID_ASSIGN_OR_RETURN(pki::SpiffeId id, pki::SpiffeId::parse(config_.spiffe_id));
  MESHID_ASSIGN_OR_RETURN(pki::EvpPkeyPtr key, pki::generateKey(pki::KeyType::kEcP256));
  pki::SvidRequest req{.public_key = key.get(),
                       .spiffe_id = id,
                       .lifetime = config_.lifetime,
                       .now = clock_.now(),
                       .dns_names = config_.dns_names,
                       .ip_addresses = config_.ip_addresses};
  MESHID_ASSIGN_OR_RETURN(IssuedChain issued, authority_.sign(req));
  MESHID_ASSIGN_OR_RETURN(std::string key_pem, pki::privateKeyToPem(key.get()));
  std::string content = key_pem + issued.leaf.pem;
  for (const auto& pem : issued.material->chain_pem)
    content += pem;
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  auto wrote = writeFileAtomic(identityFile(), content, kSecretFileMode);
  OPENSSL_cleanse(content.data(), content.size());
  MESHID_RETURN_IF_ERROR(wrote);
  {
    std::lock_guard lock(mu_);
    not_before_ = clock_.now();
    not_after_ = issued.leaf.not_after;
  }
  cv_.notify_all();
  spdlog::info("CA serving certificate issued spiffe_id={} serial={} not_after={}", id.str(),
               issued.leaf.serial_hex, formatRfc3339(issued.leaf.not_after));
  return okResult();
}

Result<void> ServingIdentity::writeRoots(const BundleSnapshot& bundle) {
  std::string pem;
  for (const auto& r : bundle.roots_pem)
    pem += r;
  return writeFileAtomic(rootsFile(), pem, kPublicFileMode);
}

void ServingIdentity::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // Renew at half-life; after a failure, try again in a tenth of that.
    SystemTime renew_at = not_before_ + (not_after_ - not_before_) / 2;
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(renew_at - clock_.now());
    if (wait.count() > 0) {
      cv_.wait_for(lock, std::min(wait, std::chrono::milliseconds(60'000)));
      continue;
    }
    lock.unlock();
    auto r = renew();
    lock.lock();
    if (!r.ok()) {
      spdlog::error("CA serving certificate renewal failed error={}", r.error().message);
      auto backoff = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::max<SystemTime::duration>((not_after_ - not_before_) / 10, std::chrono::seconds(1)));
      cv_.wait_for(lock, std::min(backoff, std::chrono::milliseconds(60'000)),
                   [this] { return stopping_; });
    }
  }
}

}  // namespace meshid::ca
