#include "agent/agent.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "agent/attestation.h"
#include "agent/ca_client.h"
#include "agent/file_sink.h"
#include "agent/metrics.h"
#include "agent/rotator.h"
#include "agent/secret_cache.h"
#include "agent/services.h"
#include "agent/uds_listener.h"
#include "common/admin_http.h"
#include "common/duration.h"
#include "common/file_util.h"
#include "pki/certificate.h"
#include "pki/envoy_cert_details.h"

namespace meshid::agent {
namespace {

using nlohmann::json;

// One certificate in the shape of Envoy's admin /certs.
json envoyCertDetails(std::string_view der, const std::string& path, SystemTime now) {
  auto cert = pki::parseCertificateDer({reinterpret_cast<const uint8_t*>(der.data()), der.size()});
  if (!cert.ok())
    return json{{"path", path}, {"error", cert.error().message}};
  return pki::envoyCertDetails(cert->get(), path, now);
}

class AgentImpl final : public Agent {
 public:
  AgentImpl(const AgentConfig& config, const Clock& clock, Random& random)
      : config_(config),
        clock_(clock),
        ca_(config_.ca, config_.trust_domain, metrics_),
        rotator_(config_, ca_, cache_, metrics_, clock_, random),
        sinks_(config_, cache_, metrics_),
        serving_{config_, cache_, peers_, metrics_} {}

  ~AgentImpl() override { shutdown(); }

  Result<void> init();
  int adminPort() const override { return admin_ ? admin_->port() : 0; }
  std::string statusJson() const override;
  std::string certsJson() const override;
  void shutdown() override;

 private:
  Result<std::shared_ptr<const Bundle>> bootstrapBundle();
  Result<void> serveSockets();
  HttpReply ready() const;

  const AgentConfig config_;
  const Clock& clock_;
  AgentMetrics metrics_;
  SecretCache cache_;
  PeerRegistry peers_;
  CaClient ca_;
  Rotator rotator_;
  FileSinks sinks_;
  ServingContext serving_;
  std::unique_ptr<grpc::Service> sds_;
  std::unique_ptr<grpc::Service> workload_api_;
  std::unique_ptr<grpc::Service> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::vector<std::unique_ptr<UdsListener>> listeners_;
  std::unique_ptr<AdminHttp> admin_;
  bool stopped_ = false;
};

Result<std::shared_ptr<const Bundle>> AgentImpl::bootstrapBundle() {
  if (!config_.ca.root_file.empty()) {
    MESHID_ASSIGN_OR_RETURN(std::string pem, readFile(config_.ca.root_file, 1 << 20));
    auto b = makeBundle(0, config_.trust_domain.name(), {pem}, config_.trust_domain);
    if (!b.ok())
      return b.error().wrap(config_.ca.root_file.string());
    return b;
  }
  // Pinned: ask until a CA answers (it may start after us), bounded by the
  // caller's patience (the service manager restarts us on failure).
  Error last = Error::unavailable("no attempt");
  for (int attempt = 1; attempt <= 30; ++attempt) {
    auto b = ca_.fetchPinnedBundle(config_.ca.pinned_sha256);
    if (b.ok()) {
      spdlog::info("trust bundle bootstrapped from the CA and matched the pinned root {}",
                   config_.ca.pinned_sha256);
      return b;
    }
    if (b.error().code == Code::kPermissionDenied || b.error().code == Code::kFailedPrecondition)
      return b.error();
    last = b.error();
    spdlog::warn("bootstrap: {} (attempt {})", last.message, attempt);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return last.wrap("cannot fetch the trust bundle to check against the pin");
}

Result<void> AgentImpl::serveSockets() {
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(64 * 1024);
  if (!config_.sds_socket.empty()) {
    sds_ = makeSdsService(serving_);
    builder.RegisterService(sds_.get());
  }
  if (!config_.workload_api_socket.empty()) {
    workload_api_ = makeWorkloadApiService(serving_);
    builder.RegisterService(workload_api_.get());
  }
  if (sds_ || workload_api_) {
    // No listening port: connections come only from our accept loops.
    server_ = builder.BuildAndStart();
    if (!server_)
      return Error::internal("cannot start the gRPC server for the agent sockets");
    // Both services share one server; each socket still only speaks gRPC,
    // and attestation, not the socket, decides what a caller gets.
    for (const auto& path : {config_.sds_socket, config_.workload_api_socket}) {
      if (path.empty())
        continue;
      MESHID_ASSIGN_OR_RETURN(auto l, UdsListener::bind(path, 0666));
      l->start(server_.get(), peers_);
      listeners_.push_back(std::move(l));
    }
  }
  if (!config_.admin_socket.empty()) {
    grpc::ServerBuilder ab;
    ab.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    admin_service_ = makeAdminService([this] { return statusJson(); });
    ab.RegisterService(admin_service_.get());
    admin_server_ = ab.BuildAndStart();
    if (!admin_server_)
      return Error::internal("cannot start the admin gRPC server");
    MESHID_ASSIGN_OR_RETURN(auto l, UdsListener::bind(config_.admin_socket, 0600));
    l->start(admin_server_.get(), peers_);
    listeners_.push_back(std::move(l));
  }
  return okResult();
}

Result<void> AgentImpl::init() {
  MESHID_ASSIGN_OR_RETURN(auto bundle, bootstrapBundle());
  rotator_.onSvid([this](std::shared_ptr<const IssuedSvid> s) { sinks_.svidChanged(*s); });
  rotator_.onBundle([this](std::shared_ptr<const Bundle> b) { sinks_.bundleChanged(*b); });
  MESHID_RETURN_IF_ERROR(rotator_.init(bundle));
  if (!config_.bundle_sinks.empty())
    sinks_.bundleChanged(*bundle);
  MESHID_RETURN_IF_ERROR(serveSockets());
  std::vector<HttpRoute> routes;
  routes.push_back({"/metrics", [this] {
                      return HttpReply{200, "text/plain; version=0.0.4; charset=utf-8",
                                       metrics_.serialize(clock_.now())};
                    }});
  routes.push_back({"/healthz", [] { return HttpReply{200, "text/plain", "ok\n"}; }});
  routes.push_back({"/readyz", [this] { return ready(); }});
  routes.push_back({"/certs", [this] { return HttpReply{200, "application/json", certsJson()}; }});
  routes.push_back({"/status", [this] {
                      return HttpReply{200, "application/json", statusJson()};
                    }});
  MESHID_ASSIGN_OR_RETURN(admin_, AdminHttp::start(config_.admin_listen, std::move(routes)));
  rotator_.start();
  return okResult();
}

HttpReply AgentImpl::ready() const {
  for (const auto& s : rotator_.status()) {
    if (s.state != "ok" && s.state != "renewing")
      return {503, "text/plain", fmt::format("not ready: {} is {}\n", s.spiffe_id, s.state)};
  }
  return {200, "text/plain", "ready\n"};
}

std::string AgentImpl::certsJson() const {
  SystemTime now = clock_.now();
  json certs = json::array();
  auto bundle = cache_.bundle();
  json ca = json::array();
  if (bundle) {
    for (const auto& der : bundle->roots_der)
      ca.push_back(envoyCertDetails(der, "ROOTCA", now));
  }
  for (const auto& svid : cache_.all()) {
    json chain = json::array();
    if (!svid->chain_der.empty())
      chain.push_back(envoyCertDetails(svid->chain_der.front(), svid->spiffe_id.str(), now));
    certs.push_back({{"ca_cert", ca}, {"cert_chain", chain}});
  }
  return json{{"certificates", certs}}.dump(2);
}

std::string AgentImpl::statusJson() const {
  SystemTime now = clock_.now();
  json ids = json::array();
  for (const auto& s : rotator_.status()) {
    json j{{"spiffe_id", s.spiffe_id}, {"agent_self", s.agent_self}, {"state", s.state},
           {"serial", s.serial},       {"failures", s.failures},     {"rotations", s.rotations}};
    if (s.not_after != SystemTime{}) {
      j["not_before"] = formatRfc3339(s.not_before);
      j["not_after"] = formatRfc3339(s.not_after);
      j["expires_in_seconds"] = toUnixSeconds(s.not_after) - toUnixSeconds(now);
    }
    if (s.renew_at != SystemTime{})
      j["next_attempt"] = formatRfc3339(s.renew_at);
    if (!s.last_error.empty())
      j["last_error"] = s.last_error;
    ids.push_back(std::move(j));
  }
  json out{{"trust_domain", config_.trust_domain.name()},
           {"ca", ca_.lastGoodAddress()},
           {"identities", ids},
           {"now", formatRfc3339(now)}};
  if (auto b = cache_.bundle()) {
    out["bundle"] = {
        {"version", b->version}, {"roots", b->roots_der.size()}, {"sha256", b->sha256}};
  }
  out["sockets"] = {{"sds", config_.sds_socket.string()},
                    {"workload_api", config_.workload_api_socket.string()},
                    {"admin", config_.admin_socket.string()}};
  out["streams"] = cache_.listenerCount();
  return out.dump(2);
}

void AgentImpl::shutdown() {
  if (stopped_)
    return;
  stopped_ = true;
  for (auto& l : listeners_)
    l->stop();
  // Streams end first so no reactor outlives the cache it listens to.
  auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
  if (server_)
    server_->Shutdown(deadline);
  if (admin_server_)
    admin_server_->Shutdown(deadline);
  rotator_.stop();
  if (admin_)
    admin_->stop();
  listeners_.clear();
}

}  // namespace

Result<std::unique_ptr<Agent>> startAgent(const AgentConfig& config, const Clock& clock,
                                          Random& random) {
  auto agent = std::make_unique<AgentImpl>(config, clock, random);
  MESHID_RETURN_IF_ERROR(agent->init());
  return std::unique_ptr<Agent>(std::move(agent));
}

}  // namespace meshid::agent
