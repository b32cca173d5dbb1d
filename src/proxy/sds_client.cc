#include "proxy/sds_client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "common/duration.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"

namespace meshid::proxy {
namespace {

namespace discovery = envoy::service::discovery::v3;
namespace tls = envoy::extensions::transport_sockets::tls::v3;

constexpr const char* kSecretType =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
constexpr size_t kMaxPemBytes = 1 << 20;

void wipe(std::optional<std::string>& s) {
  if (s)
    OPENSSL_cleanse(s->data(), s->size());
}

Result<std::string> inlinePem(const envoy::config::core::v3::DataSource& d, std::string_view what) {
  std::string pem;
  if (d.has_inline_bytes())
    pem = d.inline_bytes();
  else if (d.has_inline_string())
    pem = d.inline_string();
  else
    return Error::invalidArgument(fmt::format("{}: only inline data is taken", what));
  if (pem.empty() || pem.size() > kMaxPemBytes)
    return Error::invalidArgument(fmt::format("{}: empty or larger than 1 MiB", what));
  return pem;
}

}  // namespace

SdsMaterial::~SdsMaterial() {
  wipe(key_pem);
}

void SdsMaterial::merge(const SdsMaterial& update) {
  if (update.chain_pem)
    chain_pem = update.chain_pem;
  if (update.key_pem) {
    wipe(key_pem);
    key_pem = update.key_pem;
  }
  if (update.bundle_pem)
    bundle_pem = update.bundle_pem;
}

Result<SdsMaterial> readSdsResponse(const discovery::DiscoveryResponse& r,
                                    const std::string& certificate_name,
                                    const std::string& validation_name) {
  if (r.type_url() != kSecretType)
    return Error::invalidArgument(
        fmt::format("type_url \"{}\" is not {}", r.type_url(), kSecretType));
  if (r.resources_size() == 0 || r.resources_size() > 2)
    return Error::invalidArgument(
        fmt::format("{} resources: expected the 1 or 2 secrets asked for", r.resources_size()));
  SdsMaterial m;
  std::set<std::string> seen;
  for (const auto& any : r.resources()) {
    tls::Secret secret;
    if (any.type_url() != kSecretType || !any.UnpackTo(&secret))
      return Error::invalidArgument("a resource is not a Secret");
    if (!seen.insert(secret.name()).second)
      return Error::invalidArgument(fmt::format("secret \"{}\" sent twice", secret.name()));
    if (secret.name() == certificate_name) {
      if (!secret.has_tls_certificate())
        return Error::invalidArgument(
            fmt::format("secret \"{}\" has no tls_certificate", secret.name()));
      MESHID_ASSIGN_OR_RETURN(m.chain_pem, inlinePem(secret.tls_certificate().certificate_chain(),
                                                     "certificate_chain"));
      MESHID_ASSIGN_OR_RETURN(m.key_pem,
                              inlinePem(secret.tls_certificate().private_key(), "private_key"));
    } else if (secret.name() == validation_name) {
      if (!secret.has_validation_context())
        return Error::invalidArgument(
            fmt::format("secret \"{}\" has no validation_context", secret.name()));
      MESHID_ASSIGN_OR_RETURN(m.bundle_pem,
                              inlinePem(secret.validation_context().trusted_ca(), "trusted_ca"));
    } else {
      return Error::invalidArgument(
          fmt::format("secret \"{}\" was not asked for", secret.name().substr(0, 128)));
    }
  }
  return m;
}

Result<bool> applySdsResponse(const discovery::DiscoveryResponse& r, const ProxyConfig& config,
                              SdsMaterial& held, SnapshotStore& store) {
  MESHID_ASSIGN_OR_RETURN(SdsMaterial update,
                          readSdsResponse(r, config.sds.certificate, config.sds.validation));
  SdsMaterial next = held;
  next.merge(update);
  bool published = false;
  if (next.complete()) {
    MESHID_ASSIGN_OR_RETURN(published,
                            store.offer(*next.chain_pem, *next.key_pem, *next.bundle_pem));
  }
  held = next;
  return published;
}

namespace {

// Every request names both resources (Envoy sends them each time; a server
// may read a request without them as "none").
discovery::DiscoveryRequest request(const ProxyConfig& config) {
  discovery::DiscoveryRequest req;
  req.set_type_url(kSecretType);
  req.add_resource_names(config.sds.certificate);
  req.add_resource_names(config.sds.validation);
  return req;
}

}  // namespace

discovery::DiscoveryRequest sdsSubscribe(const ProxyConfig& config) {
  discovery::DiscoveryRequest req = request(config);
  req.mutable_node()->set_id(fmt::format("sidecar~meshid-proxy~{}", ::getpid()));
  req.mutable_node()->set_cluster("meshid-proxy");
  return req;
}

discovery::DiscoveryRequest sdsAck(const ProxyConfig& config,
                                   const discovery::DiscoveryResponse& r) {
  discovery::DiscoveryRequest req = request(config);
  req.set_version_info(r.version_info());
  req.set_response_nonce(r.nonce());
  return req;
}

discovery::DiscoveryRequest sdsNack(const ProxyConfig& config,
                                    const discovery::DiscoveryResponse& r,
                                    const std::string& accepted_version, const std::string& why) {
  discovery::DiscoveryRequest req = request(config);
  req.set_version_info(accepted_version);
  req.set_response_nonce(r.nonce());
  req.mutable_error_detail()->set_code(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  req.mutable_error_detail()->set_message(why);
  return req;
}

namespace {

class SdsCertSource final : public CertSource {
 public:
  SdsCertSource(const ProxyConfig& config, SnapshotStore& store) : config_(config), store_(store) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(4 << 20);
    channel_ = grpc::CreateCustomChannel("unix:" + config.sds.socket.string(),
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = envoy::service::secret::v3::SecretDiscoveryService::NewStub(channel_);
  }
  ~SdsCertSource() override { stop(); }

  Result<void> loadFirst() override {
    thread_ = std::thread([this] { loop(); });
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, config_.sds.initial_fetch_timeout,
                      [this] { return published_ || stopping_; })) {
      return Error::unavailable(fmt::format(
          "no certificate from the agent's SDS socket {} within {}: {}",
          config_.sds.socket.string(),
          formatDuration(
              std::chrono::duration_cast<std::chrono::seconds>(config_.sds.initial_fetch_timeout)),
          last_error_.empty() ? "the stream is open, nothing was sent yet" : last_error_));
    }
    return okResult();
  }

  // Updates before this (the NACKs while waiting for a first good
  // certificate) are told now, so the metrics count them too.
  void start(Listener on_update) override {
    std::vector<bool> early;
    {
      std::lock_guard lock(mu_);
      on_update_ = on_update;
      early.swap(early_updates_);
    }
    for (bool ok : early)
      on_update(ok);
  }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      if (call_)
        call_->TryCancel();
    }
    cv_.notify_all();
    if (thread_.joinable())
      thread_.join();
  }

 private:
  void loop() {
    auto backoff = std::chrono::milliseconds(100);
    for (;;) {
      grpc::ClientContext call;
      {
        std::lock_guard lock(mu_);
        if (stopping_)
          return;
        call_ = &call;
      }
      bool got_one = runStream(call);
      {
        std::unique_lock lock(mu_);
        call_ = nullptr;
        if (got_one)
          backoff = std::chrono::milliseconds(100);
        cv_.wait_for(lock, backoff, [this] { return stopping_; });
        if (stopping_)
          return;
      }
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }

  // One stream until it breaks; true if a response came.
  bool runStream(grpc::ClientContext& call) {
    auto stream = stub_->StreamSecrets(&call);
    bool got_one = false;
    // As Envoy does, a new stream says which version it holds; with the
    // empty nonce the server answers with the current state at once.
    auto first = sdsSubscribe(config_);
    first.set_version_info(accepted_version_);
    if (stream->Write(first)) {
      discovery::DiscoveryResponse r;
      while (stream->Read(&r)) {
        got_one = true;
        if (!stream->Write(apply(r, accepted_version_)))
          break;
      }
    }
    stream->WritesDone();
    grpc::Status s = stream->Finish();
    std::lock_guard lock(mu_);
    if (stopping_)
      return got_one;
    std::string why = fmt::format("SDS stream to {} ended: {} {}", config_.sds.socket.string(),
                                  static_cast<int>(s.error_code()), s.error_message());
    if (why != last_error_)
      spdlog::warn("{}; opening it again", why);
    last_error_ = why;
    return got_one;
  }

  // Applies one response; returns the ACK or NACK to send.
  discovery::DiscoveryRequest apply(const discovery::DiscoveryResponse& r,
                                    std::string& accepted_version) {
    Result<bool> applied = applySdsResponse(r, config_, held_, store_);
    Listener notify;
    bool ok = applied.ok();
    {
      std::lock_guard lock(mu_);
      notify = on_update_;
      if (!notify && (!ok || *applied))
        early_updates_.push_back(ok);
      if (ok && *applied)
        published_ = true;
      if (!ok)
        last_error_ = "NACKed: " + applied.error().message;
    }
    cv_.notify_all();
    if (!ok) {
      spdlog::warn("SDS update refused (NACK), keeping the current certificate version={}: {}",
                   r.version_info().substr(0, 64), applied.error().message);
      if (notify)
        notify(false);
      return sdsNack(config_, r, accepted_version, applied.error().message);
    }
    accepted_version = r.version_info();
    if (*applied && notify)
      notify(true);
    return sdsAck(config_, r);
  }

  const ProxyConfig& config_;
  SnapshotStore& store_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<envoy::service::secret::v3::SecretDiscoveryService::Stub> stub_;
  SdsMaterial held_;              // the last accepted material; the stream thread only
  std::string accepted_version_;  // the stream thread only
  std::mutex mu_;
  std::condition_variable cv_;
  grpc::ClientContext* call_ = nullptr;  // guarded by mu_
  bool stopping_ = false;                // guarded by mu_
  bool published_ = false;               // guarded by mu_
  std::string last_error_;               // guarded by mu_
  Listener on_update_;                   // guarded by mu_
  std::vector<bool> early_updates_;      // guarded by mu_: before start()
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<CertSource>> makeCertSource(const ProxyConfig& config,
                                                   SnapshotStore& store) {
  if (config.sds.socket.empty())
    return makeFileCertSource(config, store);
  return std::unique_ptr<CertSource>(new SdsCertSource(config, store));
}

}  // namespace meshid::proxy
