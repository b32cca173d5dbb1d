// SDS over the agent's Unix socket: one reactor per stream drives an
// SdsStreamState and turns its decisions into DiscoveryResponses built from
// one snapshot of the secret cache.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <map>

#include "agent/coalescing_writer.h"
#include "agent/sds_protocol.h"
#include "agent/services.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"

namespace meshid::agent {
namespace {

namespace discovery = envoy::service::discovery::v3;
namespace tls = envoy::extensions::transport_sockets::tls::v3;

constexpr const char* kSecretType =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
constexpr const char* kDefault = "default";
constexpr const char* kRootCa = "ROOTCA";
constexpr size_t kMaxNames = 64;

struct Resource {
  std::string version;
  std::shared_ptr<const IssuedSvid> svid;  // tls_certificate
  std::shared_ptr<const Bundle> bundle;    // validation_context
};

class SdsReactor final
    : public grpc::ServerBidiReactor<discovery::DiscoveryRequest, discovery::DiscoveryResponse> {
 public:
  SdsReactor(ServingContext& ctx, grpc::CallbackServerContext* call) : ctx_(ctx) {
    auto caller = attestCaller(ctx_, call->peer(), "sds");
    if (!caller.ok()) {
      finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, caller.error().message));
      return;
    }
    peer_ = caller->peer;
    entries_ = std::move(caller->entries);
    ctx_.metrics.streamOpened("sds");
    counted_ = true;
    listener_ = ctx_.cache.subscribe([this] { onChange(); });
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side (or the stream broke): we are done too.
      finish(grpc::Status::OK);
      return;
    }
    std::lock_guard lock(mu_);
    if (finished_)
      return;
    if (!request_.type_url().empty() && request_.type_url() != kSecretType) {
      finishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                fmt::format("type_url must be {}", kSecretType)));
      return;
    }
    if (request_.resource_names_size() > static_cast<int>(kMaxNames)) {
      finishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                fmt::format("at most {} resource names per stream", kMaxNames)));
      return;
    }
    SdsRequest r{request_.version_info(),
                 {request_.resource_names().begin(), request_.resource_names().end()},
                 request_.response_nonce(),
                 request_.has_error_detail()};
    for (const auto& name : r.resource_names) {
      if (!permitted(name)) {
        ctx_.metrics.denied("sds");
        finishLocked(grpc::Status(
            grpc::StatusCode::PERMISSION_DENIED,
            fmt::format("resource \"{}\" is not default, ROOTCA or an identity registered for "
                        "this caller",
                        name.substr(0, 256))));
        return;
      }
    }
    if (r.nack && r.response_nonce == last_nonce_) {
      ctx_.metrics.sdsNack();
      spdlog::warn("SDS: {} rejected version {} of {}: {}", peer_.describe(), last_version_,
                   fmt::join(state_.names(), ","),
                   request_.error_detail().message().substr(0, 512));
    }
    auto snapshot = resolve(r.resource_names);
    auto send = state_.onRequest(r, lookupIn(snapshot));
    if (send)
      queue(*send, snapshot);
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    const auto* next = writer_.done();
    if (ok && !finished_ && next)
      StartWrite(next);
  }

  void OnDone() override {
    if (listener_)
      ctx_.cache.unsubscribe(listener_);
    if (counted_)
      ctx_.metrics.streamClosed("sds");
    delete this;
  }

  void OnCancel() override { finish(grpc::Status::CANCELLED); }

 private:
  bool permitted(const std::string& name) const {
    if (name == kDefault || name == kRootCa)
      return true;
    for (const auto* e : entries_) {
      if (e->spiffe_id.str() == name)
        return true;
    }
    return false;
  }

  std::map<std::string, Resource> resolve(const std::vector<std::string>& names) const {
    std::map<std::string, Resource> out;
    for (const auto& name : names) {
      if (name == kRootCa) {
        if (auto b = ctx_.cache.bundle()) {
          out[name] = {fmt::format("bundle-{}-{}", b->version, b->sha256.substr(0, 12)), nullptr,
                       b};
        }
        continue;
      }
      const std::string& id = name == kDefault ? entries_.front()->spiffe_id.str() : name;
      if (auto s = ctx_.cache.svid(id))
        out[name] = {s->serial_hex, s, nullptr};
    }
    return out;
  }

  static SdsStreamState::Lookup lookupIn(const std::map<std::string, Resource>& snapshot) {
    return [&snapshot](const std::string& name) -> std::optional<std::string> {
      auto it = snapshot.find(name);
      if (it == snapshot.end())
        return std::nullopt;
      return it->second.version;
    };
  }

  void onChange() {
    std::lock_guard lock(mu_);
    if (finished_)
      return;
    auto snapshot = resolve(state_.names());
    auto send = state_.onChange(lookupIn(snapshot));
    if (send)
      queue(*send, snapshot);
  }

  // Builds the response; writes it now or after the write in flight (a newer
  // one replaces an unsent older one: each carries the full state).
  void queue(const SdsSend& send, const std::map<std::string, Resource>& snapshot) {
    discovery::DiscoveryResponse response;
    response.set_version_info(send.version_info);
    response.set_type_url(kSecretType);
    response.set_nonce(send.nonce);
    for (const auto& name : send.names) {
      const Resource& r = snapshot.at(name);
      tls::Secret secret;
      secret.set_name(name);
      if (r.svid) {
        auto* cert = secret.mutable_tls_certificate();
        cert->mutable_certificate_chain()->set_inline_bytes(r.svid->chain_pem);
        cert->mutable_private_key()->set_inline_bytes(r.svid->key_pem);
      } else {
        secret.mutable_validation_context()->mutable_trusted_ca()->set_inline_bytes(
            r.bundle->pem());
      }
      response.add_resources()->PackFrom(secret);
    }
    last_nonce_ = send.nonce;
    last_version_ = send.version_info;
    if (const auto* now = writer_.push(std::move(response)))
      StartWrite(now);
  }

  void finish(grpc::Status status) {
    std::lock_guard lock(mu_);
    finishLocked(std::move(status));
  }

  void finishLocked(grpc::Status status) {
    if (finished_)
      return;
    finished_ = true;
    Finish(std::move(status));
  }

  ServingContext& ctx_;
  PeerInfo peer_;
  std::vector<const Entry*> entries_;
  uint64_t listener_ = 0;
  bool counted_ = false;
  discovery::DiscoveryRequest request_;

  std::mutex mu_;
  SdsStreamState state_;                                   // guarded by mu_
  bool finished_ = false;                                  // guarded by mu_
  CoalescingWriter<discovery::DiscoveryResponse> writer_;  // guarded by mu_
  std::string last_nonce_;                                 // guarded by mu_
  std::string last_version_;                               // guarded by mu_
};

class SdsService final
    : public envoy::service::secret::v3::SecretDiscoveryService::CallbackService {
 public:
  explicit SdsService(ServingContext& ctx) : ctx_(ctx) {}

  grpc::ServerBidiReactor<discovery::DiscoveryRequest, discovery::DiscoveryResponse>* StreamSecrets(
      grpc::CallbackServerContext* call) override {
    return new SdsReactor(ctx_, call);
  }

  grpc::ServerBidiReactor<discovery::DeltaDiscoveryRequest, discovery::DeltaDiscoveryResponse>*
  DeltaSecrets(grpc::CallbackServerContext*) override {
    class Unimplemented final : public grpc::ServerBidiReactor<discovery::DeltaDiscoveryRequest,
                                                               discovery::DeltaDiscoveryResponse> {
     public:
      Unimplemented() {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            "delta SDS is not served; use StreamSecrets"));
      }
      void OnDone() override { delete this; }
    };
    return new Unimplemented();
  }

  grpc::ServerUnaryReactor* FetchSecrets(grpc::CallbackServerContext* call,
                                         const discovery::DiscoveryRequest*,
                                         discovery::DiscoveryResponse*) override {
    auto* reactor = call->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                 "FetchSecrets is not served; use StreamSecrets"));
    return reactor;
  }

 private:
  ServingContext& ctx_;
};

}  // namespace

std::unique_ptr<grpc::Service> makeSdsService(ServingContext& ctx) {
  return std::make_unique<SdsService>(ctx);
}

}  // namespace meshid::agent
