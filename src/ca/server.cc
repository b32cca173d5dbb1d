#include "ca/server.h"

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "ca/admin_http.h"
#include "ca/authn/join_token_authenticator.h"
#include "ca/authn/jwks_provider.h"
#include "ca/authn/k8s_jwt_authenticator.h"
#include "ca/authn/mtls_authenticator.h"
#include "ca/ca_services.h"
#include "ca/issuer.h"
#include "ca/record_pruner.h"
#include "ca/serving_identity.h"
#include "ca/signers/files_source.h"
#include "ca/signers/selfsigned.h"
#include "common/duration.h"
#include "pki/certificate.h"
#include "store/sqlite_store.h"

namespace meshid::ca {
namespace {

namespace fs = std::filesystem;

// How often the gRPC server looks for a new serving identity or roots file.
constexpr std::chrono::milliseconds kServingRefresh{1000};

SystemTime earliestExpiry(const std::vector<pki::X509Ptr>& certs) {
  SystemTime t = SystemTime::max();
  for (const auto& c : certs)
    t = std::min(t, pki::notAfter(c.get()));
  return t;
}

class CaServerImpl final : public CaServer {
 public:
  CaServerImpl(const CaConfig& config, const Clock& clock) : config_(config), clock_(clock) {}

  Result<void> init();
  int grpcPort() const override { return grpc_port_; }
  int adminPort() const override { return admin_ ? admin_->port() : 0; }
  void shutdown(std::chrono::milliseconds grace) override;
  ~CaServerImpl() override { shutdown(std::chrono::milliseconds(0)); }

 private:
  Result<std::shared_ptr<const SigningMaterial>> loadSigner();
  std::vector<std::unique_ptr<Authenticator>> authenticators();
  void publishMaterial(const SigningMaterial& m);
  bool ready(std::string* why) const;
  std::string debugJson() const;

  const CaConfig config_;
  const Clock& clock_;
  std::unique_ptr<store::SqliteStore> store_;
  CaMetrics metrics_;
  std::unique_ptr<LocalAuthority> authority_;
  std::unique_ptr<TrustBundle> bundle_;
  std::unique_ptr<ServingIdentity> serving_;
  std::unique_ptr<FilesSource> files_;
  std::unique_ptr<Issuer> issuer_;
  std::unique_ptr<SigningQueue> signing_;
  std::unique_ptr<CaServices> services_;
  std::unique_ptr<rpc::GrpcServer> grpc_;
  std::unique_ptr<AdminHttp> admin_;
  std::unique_ptr<RecordPruner> pruner_;  // after store_ and metrics_: stops before them
  int grpc_port_ = 0;
  bool stopped_ = false;
};

Result<std::shared_ptr<const SigningMaterial>> CaServerImpl::loadSigner() {
  if (config_.signer.type == "files") {
    return FilesSource::loadNow(config_.signer.dir, clock_);
  }
  SelfSignedConfig sc{.dir = config_.state_dir / "ca",
                      .trust_domain = config_.trust_domain,
                      .key_type = config_.signer.key_type,
                      .root_ttl = config_.signer.root_ttl,
                      .intermediate_ttl = config_.signer.intermediate_ttl};
  return loadOrCreateSelfSigned(sc, clock_);
}

std::vector<std::unique_ptr<Authenticator>> CaServerImpl::authenticators() {
  std::vector<std::unique_ptr<Authenticator>> out;
  // Order matters only for who claims a credential: join tokens have a
  // prefix, every other bearer token is a JWT, mTLS applies without a token.
  if (config_.join_tokens) {
    out.push_back(std::make_unique<JoinTokenAuthenticator>(*store_, clock_));
  }
  if (config_.kubernetes.enabled) {
    const auto& k = config_.kubernetes;
    std::unique_ptr<JwksProvider> jwks;
    if (!k.jwks_file.empty()) {
      jwks = std::make_unique<FileJwksProvider>(k.jwks_file);
    } else {
      jwks = std::make_unique<UrlJwksProvider>(k.jwks_url, k.jwks_ca_file, k.refresh);
    }
    out.push_back(std::make_unique<KubernetesJwtAuthenticator>(
        config_.trust_domain, std::move(jwks), k.issuer, k.audiences, clock_));
  }
  if (config_.mtls) {
    out.push_back(std::make_unique<MtlsAuthenticator>(config_.trust_domain, clock_));
  }
  return out;
}

void CaServerImpl::publishMaterial(const SigningMaterial& m) {
  metrics_.setSigningExpiry(earliestExpiry(m.roots), earliestExpiry(m.chain));
  auto b = bundle_->update(m.roots);
  if (!b.ok()) {
    spdlog::error("trust bundle update failed error={}", b.error().message);
    return;
  }
  metrics_.setBundleVersion((*b)->version);
}

Result<void> CaServerImpl::init() {
  std::error_code ec;
  fs::create_directories(config_.state_dir, ec);
  if (ec) {
    return Error::unavailable(
        fmt::format("cannot create state_dir {}: {}", config_.state_dir.string(), ec.message()));
  }
  fs::permissions(config_.state_dir, fs::perms::owner_all, ec);
  MESHID_ASSIGN_OR_RETURN(store_, store::SqliteStore::open(config_.databasePath()));
  metrics_.setStoreSource([s = store_.get()] { return s->fileSizes(); });
  MESHID_ASSIGN_OR_RETURN(auto material, loadSigner());
  authority_ = std::make_unique<LocalAuthority>(config_.signer.type, material);
  bundle_ = std::make_unique<TrustBundle>(config_.trust_domain, *store_, clock_);
  publishMaterial(*material);
  if (!bundle_->current()) {
    return Error::unavailable("cannot record the trust bundle in the database");
  }

  MESHID_ASSIGN_OR_RETURN(
      serving_,
      ServingIdentity::start(config_.serving, config_.state_dir / "serving", *authority_, clock_));
  MESHID_RETURN_IF_ERROR(serving_->writeRoots(*bundle_->current()));
  bundle_->watch([s = serving_.get()](std::shared_ptr<const BundleSnapshot> b) {
    if (auto r = s->writeRoots(*b); !r.ok()) {
      spdlog::error("cannot write the CA's client roots error={}", r.error().message);
    }
  });
  if (config_.signer.type == "files") {
    files_ = std::make_unique<FilesSource>(
        config_.signer.dir, *authority_, metrics_, clock_, config_.signer.poll_interval,
        [this](std::shared_ptr<const SigningMaterial> m) { publishMaterial(*m); });
  }

  IssuerConfig ic{.policy = config_.policy,
                  .max_concurrent_signings = config_.max_concurrent_signings};
  issuer_ = std::make_unique<Issuer>(authenticators(), *authority_, *bundle_, *store_, metrics_,
                                     clock_, ic);
  signing_ = std::make_unique<SigningQueue>(*issuer_, config_.signing_workers);
  if (config_.records.retention > Seconds(0)) {
    pruner_ = std::make_unique<RecordPruner>(*store_, clock_, config_.records.retention,
                                             config_.records.prune_interval, metrics_);
    pruner_->start();
  }
  services_ = std::make_unique<CaServices>(*signing_, *bundle_, metrics_);

  rpc::GrpcServerOptions grpc{.listen = config_.listen,
                              .identity_file = serving_->identityFile(),
                              .roots_file = serving_->rootsFile(),
                              .reload_interval = kServingRefresh,
                              .max_message_bytes = config_.max_message_bytes,
                              .threads = config_.transport_threads,
                              .handlers = services_->handlers()};
  if (config_.signing_workers == 0)
    grpc.run_deferred = [q = signing_.get()] { return q->runQueued(); };
  auto server = rpc::GrpcServer::start(std::move(grpc));
  if (!server.ok()) {
    return Error{server.error().code, "gRPC: " + server.error().message};
  }
  grpc_ = std::move(*server);
  grpc_port_ = grpc_->port();
  metrics_.setTransportSource([g = grpc_.get()] { return g->stats(); });

  AdminHandlers handlers{.metrics = [this] { return metrics_.serialize(); },
                         .ready = [this](std::string* why) { return ready(why); },
                         .debug_json = [this] { return debugJson(); }};
  MESHID_ASSIGN_OR_RETURN(admin_, startAdminHttp(config_.admin_listen, handlers));
  metrics_.setReady(true);
  return okResult();
}

bool CaServerImpl::ready(std::string* why) const {
  auto m = authority_->material();
  SystemTime now = clock_.now();
  if (!m) {
    *why = "no signer";
  } else if (pki::notAfter(m->cert.get()) <= now) {
    *why = "signing certificate expired";
  } else if (!bundle_->current()) {
    *why = "no trust bundle";
  } else {
    return true;
  }
  return false;
}

std::string CaServerImpl::debugJson() const {
  SystemTime now = clock_.now();
  auto m = authority_->material();
  auto describe = [&](const X509* c) {
    auto info = pki::describeCertificate(c);
    return nlohmann::json{
        {"subject", info.subject},
        {"serial", info.serial_hex},
        {"not_after", formatRfc3339(info.not_after)},
        {"remaining_seconds", std::chrono::duration_cast<Seconds>(info.not_after - now).count()},
        {"sha256", info.sha256_fingerprint}};
  };
  nlohmann::json j;
  j["trust_domain"] = config_.trust_domain.name();
  j["signer"] = {{"type", authority_->name()}, {"key", m ? m->signer->describe() : ""}};
  j["chain"] = nlohmann::json::array();
  j["roots"] = nlohmann::json::array();
  if (m) {
    for (const auto& c : m->chain)
      j["chain"].push_back(describe(c.get()));
    for (const auto& r : m->roots)
      j["roots"].push_back(describe(r.get()));
  }
  auto b = bundle_->current();
  j["bundle"] = {{"version", b ? b->version : 0}, {"sha256", b ? b->sha256 : ""}};
  auto issued = store_->countIssuances();
  j["issuances_recorded"] = issued.ok() ? nlohmann::json(*issued) : nlohmann::json(nullptr);
  auto files = store_->fileSizes();
  j["database"] = {{"path", config_.databasePath().string()},
                   {"bytes", files.database},
                   {"wal_bytes", files.wal}};
  j["records_retention"] = config_.records.retention > Seconds(0)
                               ? nlohmann::json(formatDuration(config_.records.retention))
                               : nlohmann::json("forever");
  j["serving_certificate_not_after"] = formatRfc3339(serving_->notAfter());
  j["watchers"] = bundle_->watcherCount();
  return j.dump(2);
}

void CaServerImpl::shutdown(std::chrono::milliseconds grace) {
  if (stopped_)
    return;
  stopped_ = true;
  metrics_.setReady(false);
  pruner_.reset();
  if (services_)
    services_->closeWatches();
  if (grpc_) {
    // In-flight calls are answered; what is still open at the deadline is
    // closed.
    grpc_->shutdown(grace);
  }
  metrics_.setTransportSource(nullptr);  // the server's counts die with it
  metrics_.setStoreSource(nullptr);
  // After gRPC: calls still queued are signed, their answers go nowhere.
  if (signing_)
    signing_->stop();
  if (admin_)
    admin_->stop();
  files_.reset();
  serving_.reset();
}

}  // namespace

Result<std::unique_ptr<CaServer>> CaServer::start(const CaConfig& config, const Clock& clock) {
  auto server = std::make_unique<CaServerImpl>(config, clock);
  MESHID_RETURN_IF_ERROR(server->init());
  return std::unique_ptr<CaServer>(std::move(server));
}

}  // namespace meshid::ca
