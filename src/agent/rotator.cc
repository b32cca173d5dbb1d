#include "agent/rotator.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/duration.h"
#include "common/file_util.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/csr.h"
#include "pki/key.h"

namespace meshid::agent {
namespace {

constexpr const char* kSelfChainFile = "agent-svid.pem";
constexpr const char* kSelfKeyFile = "agent-key.pem";

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
    s.pop_back();
  return s;
}

std::string rfc3339(SystemTime t) {
  return formatRfc3339(t);
}

// Checks an answer against the key we made and the bundle, and packs it.
Result<std::shared_ptr<IssuedSvid>> makeSvid(const pki::SpiffeId& id,
                                             const std::vector<std::string>& chain_pem,
                                             const EVP_PKEY* key, const Bundle& bundle,
                                             SystemTime now) {
  std::string joined;
  for (const auto& c : chain_pem)
    joined += c;
  MESHID_ASSIGN_OR_RETURN(auto certs, pki::parseCertificatesPem(joined));
  if (certs.empty())
    return Error::internal("the CA answered with no certificate");
  MESHID_RETURN_IF_ERROR(pki::checkKeyMatchesCertificate(certs.front().get(), key));
  std::vector<pki::X509Ptr> intermediates;
  for (size_t i = 1; i < certs.size(); ++i)
    intermediates.push_back(pki::shareX509(certs[i].get()));
  std::vector<pki::X509Ptr> roots;
  for (const auto& pem : bundle.roots_pem) {
    MESHID_ASSIGN_OR_RETURN(auto r, pki::parseCertificatesPem(pem));
    for (auto& c : r)
      roots.push_back(std::move(c));
  }
  auto verified = pki::verifyChain(certs.front().get(), intermediates, roots,
                                   {.at = now, .expected_id = id, .svid_leaf_checks = true});
  if (!verified.ok())
    return verified.error().wrap("the CA's answer does not verify");

  auto svid = std::make_shared<IssuedSvid>(id);
  // Serve leaf + intermediates only: a root in the chain adds nothing the peer may use.
  for (const auto& c : certs) {
    if (pki::isSelfSigned(c.get()) && c.get() != certs.front().get())
      continue;
    svid->chain_pem += pki::certificateToPem(c.get());
    svid->chain_der.push_back(pki::certificateToDer(c.get()));
  }
  MESHID_ASSIGN_OR_RETURN(svid->key_pem, pki::privateKeyToPem(key));
  MESHID_ASSIGN_OR_RETURN(svid->key_der, pki::privateKeyToDer(key));
  svid->serial_hex = pki::serialHex(certs.front().get());
  svid->not_before = pki::notBefore(certs.front().get());
  svid->not_after = pki::notAfter(certs.front().get());
  svid->received = now;
  svid->bundle_version = bundle.version;
  return svid;
}

}  // namespace

Rotator::Rotator(const AgentConfig& config, CaClient& ca, SecretCache& cache, AgentMetrics& metrics,
                 const Clock& clock, Random& random)
    : config_(config),
      ca_(ca),
      cache_(cache),
      metrics_(metrics),
      clock_(clock),
      random_(random),
      join_mode_(!config.credentials.join_token_file.empty()) {
  if (join_mode_) {
    auto self = std::make_unique<Managed>(
        Managed{.id = pki::SpiffeId::parse(config.credentials.agent_id).value(), .self = true});
    identities_.push_back(std::move(self));
  }
  for (const auto& e : config.entries)
    identities_.push_back(std::make_unique<Managed>(Managed{.id = e.spiffe_id}));
}

Rotator::~Rotator() {
  stop();
}

Result<void> Rotator::init(std::shared_ptr<const Bundle> bundle) {
  cache_.setBundle(bundle);
  ca_.setTrust(bundle->pem());
  metrics_.setBundleVersion(bundle->version);
  if (!join_mode_)
    return okResult();
  // A persisted agent SVID lets a restarted agent renew over mTLS instead of
  // needing a new join token.
  auto chain = readFile(config_.state_dir / kSelfChainFile, 1 << 20);
  auto key_pem = readFile(config_.state_dir / kSelfKeyFile, 64 * 1024);
  if (!chain.ok() || !key_pem.ok())
    return okResult();
  auto key = pki::parsePrivateKeyPem(*key_pem);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!key.ok()) {
    spdlog::warn("ignoring the stored agent SVID: {}", key.error().message);
    return okResult();
  }
  auto& self = *identities_.front();
  SystemTime now = clock_.now();
  auto svid = makeSvid(self.id, {*chain}, key->get(), *bundle, now);
  if (!svid.ok()) {
    spdlog::warn("ignoring the stored agent SVID ({}); the join token will be used",
                 svid.error().message);
    return okResult();
  }
  adoptSelf(**svid);
  std::lock_guard lock(mu_);
  onIssued(self.state, (*svid)->not_after, now, config_.rotation, random_);
  self.serial = (*svid)->serial_hex;
  self.not_before = (*svid)->not_before;
  self_ready_ = true;
  spdlog::info("agent SVID {} serial {} loaded from {}, renews at {}", self.id.str(), self.serial,
               config_.state_dir.string(), rfc3339(self.state.renew_at));
  return okResult();
}

void Rotator::adoptSelf(const IssuedSvid& svid) {
  ca_.setClientIdentity(svid.chain_pem, svid.key_pem);
}

Result<void> Rotator::persistSelf(const IssuedSvid& svid) {
  std::error_code ec;
  std::filesystem::create_directories(config_.state_dir, ec);
  MESHID_RETURN_IF_ERROR(
      writeFileAtomic(config_.state_dir / kSelfKeyFile, svid.key_pem, kSecretFileMode));
  return writeFileAtomic(config_.state_dir / kSelfChainFile, svid.chain_pem, kPublicFileMode);
}

void Rotator::start() {
  scheduler_ = std::thread([this] { schedulerLoop(); });
  for (size_t i = 0; i < config_.workers; ++i)
    workers_.emplace_back([this] { workerLoop(); });
  watcher_ = std::thread([this] { watchLoop(); });
}

void Rotator::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !scheduler_.joinable())
      return;
    stopping_ = true;
  }
  scheduler_cv_.notify_all();
  workers_cv_.notify_all();
  {
    std::lock_guard lock(watch_mu_);
    watch_cv_.notify_all();
  }
  ca_.cancelWatch();
  if (scheduler_.joinable())
    scheduler_.join();
  for (auto& w : workers_)
    w.join();
  workers_.clear();
  if (watcher_.joinable())
    watcher_.join();
}

void Rotator::offerBundle(std::shared_ptr<const Bundle> bundle) {
  {
    std::lock_guard lock(mu_);
    auto current = cache_.bundle();
    if (current && (bundle->version < current->version ||
                    (bundle->version == current->version && bundle->sha256 == current->sha256))) {
      return;
    }
    cache_.setBundle(bundle);
    ca_.setTrust(bundle->pem());
  }
  metrics_.setBundleVersion(bundle->version);
  spdlog::info("trust bundle version {} with {} root(s), sha256 {}", bundle->version,
               bundle->roots_pem.size(), bundle->sha256);
  if (bundle_listener_)
    bundle_listener_(bundle);
}

void Rotator::schedulerLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    SystemTime now = clock_.now();
    SystemTime wake = now + std::chrono::seconds(1);
    bool queued = false;
    for (auto& m : identities_) {
      Decision d = decide(m->state, now);
      // Expiry is checked first, whatever else is going on: an expired
      // certificate is never served, even while a renewal is in flight.
      if (d.expired && m->published) {
        m->published = false;
        if (m->self) {
          self_ready_ = false;
          ca_.setClientIdentity("", "");
        } else {
          cache_.withdraw(m->id);
        }
        metrics_.expired(m->id.str());
        spdlog::error("certificate for {} expired at {} with no renewal; it is no longer served",
                      m->id.str(), rfc3339(m->state.current->not_after));
      }
      if (m->in_flight)
        continue;
      if (join_mode_ && !m->self && !self_ready_)
        continue;  // workloads wait for the agent's own SVID
      if (d.renew_now) {
        m->in_flight = true;
        queue_.push_back(m.get());
        queued = true;
      } else {
        wake = std::min(wake, d.wake_at);
      }
    }
    if (queued)
      workers_cv_.notify_all();
    // At most a second: a wall clock that jumps is noticed within it.
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(wake - now);
    scheduler_cv_.wait_for(lock, std::max(wait, std::chrono::nanoseconds(0)));
  }
}

void Rotator::workerLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    workers_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_)
      return;
    Managed* m = queue_.front();
    queue_.pop_front();
    lock.unlock();
    auto result = obtain(*m);
    SystemTime now = clock_.now();
    if (result.ok()) {
      auto& svid = *result;
      if (m->self) {
        adoptSelf(*svid);
        if (auto p = persistSelf(*svid); !p.ok())
          spdlog::error("cannot store the agent SVID: {}", p.error().message);
      } else {
        cache_.publish(svid);
      }
      metrics_.rotated(m->id.str(), svid->not_after);
      lock.lock();
      onIssued(m->state, svid->not_after, now, config_.rotation, random_);
      m->in_flight = false;
      m->published = true;
      m->serial = svid->serial_hex;
      m->not_before = svid->not_before;
      m->last_error.clear();
      ++m->rotations;
      if (m->self)
        self_ready_ = true;
      SystemTime renew_at = m->state.renew_at;
      lock.unlock();
      spdlog::info("certificate for {} serial {} valid until {}, renews at {}", m->id.str(),
                   svid->serial_hex, rfc3339(svid->not_after), rfc3339(renew_at));
      if (!m->self && svid_listener_)
        svid_listener_(svid);
      lock.lock();
    } else {
      metrics_.rotationFailed(m->id.str());
      lock.lock();
      onFailure(m->state, now, config_.rotation, random_);
      m->in_flight = false;
      m->last_error = result.error().message;
      int failures = m->state.failures;
      SystemTime retry = m->state.retry_at;
      bool held = m->state.current && now < m->state.current->not_after;
      lock.unlock();
      spdlog::warn("cannot get a certificate for {} (attempt {}): {}; retrying at {}{}",
                   m->id.str(), failures, result.error().message, rfc3339(retry),
                   held ? "; the current certificate is still served" : "");
      lock.lock();
    }
    scheduler_cv_.notify_all();
  }
}

Result<std::shared_ptr<const IssuedSvid>> Rotator::obtain(const Managed& m) {
  std::optional<std::string> bearer;
  if (!join_mode_) {
    MESHID_ASSIGN_OR_RETURN(std::string jwt,
                            readFile(config_.credentials.jwt_token_file, 64 * 1024));
    bearer = trimmed(std::move(jwt));
  } else if (m.self) {
    bool ready;
    {
      std::lock_guard lock(mu_);
      ready = self_ready_;
    }
    if (!ready) {
      auto token = readFile(config_.credentials.join_token_file, 16 * 1024);
      if (!token.ok())
        return token.error().wrap("the agent has no SVID and no join token");
      bearer = trimmed(std::move(*token));
    }
  }
  MESHID_ASSIGN_OR_RETURN(pki::EvpPkeyPtr key, pki::generateKey(config_.key_type));
  MESHID_ASSIGN_OR_RETURN(pki::X509ReqPtr req, pki::buildCsr(key.get(), m.id));
  MESHID_ASSIGN_OR_RETURN(
      SignedChain answer,
      ca_.sign(pki::csrToPem(req.get()), m.self ? config_.agent_ttl : config_.ttl, bearer));
  offerBundle(answer.bundle);
  auto svid = makeSvid(m.id, answer.chain_pem, key.get(), *answer.bundle, clock_.now());
  if (!svid.ok()) {
    metrics_.caRequest("invalid", 0);
    return svid.error().wrap(fmt::format("answer from CA {}", answer.address));
  }
  return std::shared_ptr<const IssuedSvid>(std::move(*svid));
}

void Rotator::watchLoop() {
  auto backoff = std::chrono::milliseconds(500);
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_)
        return;
    }
    auto known = cache_.bundle();
    bool got = false;
    auto r = ca_.watchBundle(known ? known->version : 0, [&](std::shared_ptr<const Bundle> b) {
      got = true;
      offerBundle(std::move(b));
    });
    if (got)
      backoff = std::chrono::milliseconds(500);
    std::unique_lock lock(watch_mu_);
    {
      std::lock_guard state(mu_);
      if (stopping_)
        return;
    }
    spdlog::warn("trust bundle watch ended: {}; reconnecting in {} ms", r.error().message,
                 backoff.count());
    watch_cv_.wait_for(lock, backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(15'000));
  }
}

std::vector<IdentityStatus> Rotator::status() const {
  std::lock_guard lock(mu_);
  SystemTime now = clock_.now();
  std::vector<IdentityStatus> out;
  for (const auto& m : identities_) {
    IdentityStatus s{.spiffe_id = m->id.str(), .agent_self = m->self};
    Decision d = decide(m->state, now);
    if (!m->state.current)
      s.state = m->state.failures > 0 ? "retrying" : "pending";
    else if (d.expired)
      s.state = "expired";
    else if (m->state.failures > 0)
      s.state = "retrying";
    else if (m->in_flight)
      s.state = "renewing";
    else
      s.state = "ok";
    s.serial = m->serial;
    s.not_before = m->not_before;
    if (m->state.current)
      s.not_after = m->state.current->not_after;
    s.renew_at = m->state.failures > 0 ? m->state.retry_at : m->state.renew_at;
    s.failures = m->state.failures;
    s.last_error = m->last_error;
    s.rotations = m->rotations;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace meshid::agent
