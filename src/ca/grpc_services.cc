#include "ca/grpc_services.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <cctype>

namespace meshid::ca {
namespace {

void fillBundle(const BundleSnapshot& b, meshid::v1::TrustBundle* out) {
  out->set_version(b.version);
  out->set_trust_domain(b.trust_domain.name());
  for (const auto& pem : b.roots_pem)
    out->add_roots(pem);
  out->set_sha256(b.sha256);
  out->set_updated_unix(toUnixSeconds(b.updated));
}

std::string_view toView(grpc::string_ref s) {
  return {s.data(), s.size()};
}

}  // namespace

grpc::Status toGrpcStatus(const Error& error) {
  return grpc::Status(static_cast<grpc::StatusCode>(error.code), error.message);
}

CallerCredentials credentialsFrom(const grpc::CallbackServerContext& ctx) {
  CallerCredentials c;
  c.peer = ctx.peer();
  auto auth = ctx.client_metadata().find("authorization");
  if (auth != ctx.client_metadata().end()) {
    std::string_view v = toView(auth->second);
    // "Bearer" is case-insensitive (RFC 6750); anything else is no token.
    if (v.size() > 7 && std::tolower(v[0]) == 'b' && std::tolower(v[1]) == 'e' &&
        std::tolower(v[2]) == 'a' && std::tolower(v[3]) == 'r' && std::tolower(v[4]) == 'e' &&
        std::tolower(v[5]) == 'r' && v[6] == ' ') {
      std::string_view token = v.substr(7);
      while (!token.empty() && token.front() == ' ')
        token.remove_prefix(1);
      c.bearer_token = std::string(token);
    } else {
      c.bearer_token = std::string();  // present but unusable: refused, never ignored
    }
  }
  if (auto ac = ctx.auth_context(); ac && ac->IsPeerAuthenticated()) {
    auto pems = ac->FindPropertyValues("x509_pem_cert");
    if (!pems.empty())
      c.peer_certificate_pem = std::string(toView(pems.front()));
  }
  return c;
}

// The shape both sign handlers share: queue the call; the signing worker
// answers its error or lets `fill` write the response, and finishes.
template <class Response, class Fill>
grpc::ServerUnaryReactor* answerSign(SigningQueue& signing, grpc::CallbackServerContext* ctx,
                                     Api api, std::string_view csr, int64_t ttl_seconds,
                                     Response* response, Fill fill) {
  auto* reactor = ctx->DefaultReactor();
  SignCall call{.api = api,
                .credentials = credentialsFrom(*ctx),
                .csr = csr,                             // the request lives until Finish
                .requested_ttl_seconds = ttl_seconds};  // submit() stamps its arrival
  signing.submit(std::move(call), [reactor, response, fill](Result<SignResult> result) {
    if (!result.ok()) {
      reactor->Finish(toGrpcStatus(result.error()));
      return;
    }
    response->add_cert_chain(result->leaf.pem);
    for (const auto& pem : result->signer->chain_pem)
      response->add_cert_chain(pem);
    fill(*result, response);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* IstioCaService::CreateCertificate(
    grpc::CallbackServerContext* ctx, const istio::v1::auth::IstioCertificateRequest* request,
    istio::v1::auth::IstioCertificateResponse* response) {
  return answerSign(signing_, ctx, Api::kIstio, request->csr(), request->validity_duration(),
                    response, [](const SignResult& r, auto* out) {
                      // Leaf first, root last; the last element carries every root of
                      // the bundle as one PEM string (several during a rotation).
                      // Never fewer than two.
                      std::string roots;
                      for (const auto& pem : r.bundle->roots_pem)
                        roots += pem;
                      out->add_cert_chain(roots);
                    });
}

grpc::ServerUnaryReactor* MeshCaService::Sign(grpc::CallbackServerContext* ctx,
                                              const meshid::v1::SignRequest* request,
                                              meshid::v1::SignResponse* response) {
  return answerSign(signing_, ctx, Api::kMeshid, request->csr(), request->ttl_seconds(), response,
                    [](const SignResult& r, auto* out) {
                      fillBundle(*r.bundle, out->mutable_bundle());
                      out->set_spiffe_id(r.spiffe_id.str());
                      out->set_serial(r.leaf.serial_hex);
                      out->set_not_after_unix(toUnixSeconds(r.leaf.not_after));
                    });
}

grpc::ServerUnaryReactor* MeshCaService::GetTrustBundle(
    grpc::CallbackServerContext* ctx, const meshid::v1::GetTrustBundleRequest* /*request*/,
    meshid::v1::TrustBundle* response) {
  auto* reactor = ctx->DefaultReactor();
  auto current = bundle_.current();
  if (!current) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no trust bundle yet"));
    return reactor;
  }
  fillBundle(*current, response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

// Shared between a stream and the bundle watcher, which may run on another
// thread at any time until it is unregistered (and a moment after).
struct MeshCaService::WatchState {
  std::mutex mu;
  grpc::ServerWriteReactor<meshid::v1::TrustBundle>* reactor = nullptr;  // guarded by mu
  bool writing = false;                                                  // guarded by mu
  bool finished = false;                                                 // guarded by mu
  std::shared_ptr<const BundleSnapshot> pending;                         // guarded by mu
  uint64_t sent_version = 0;                                             // guarded by mu
  meshid::v1::TrustBundle message;  // guarded by mu while writing

  // Keeps the newest snapshot offered, whatever order offers arrive in.
  void offerLocked(std::shared_ptr<const BundleSnapshot> b) {
    if (b && (!pending || b->version > pending->version))
      pending = std::move(b);
  }
  // Starts writing `pending` if idle and it is newer than what was sent.
  void pumpLocked() {
    if (finished || writing || !pending || pending->version <= sent_version)
      return;
    message.Clear();
    fillBundle(*pending, &message);
    sent_version = pending->version;
    writing = true;
    reactor->StartWrite(&message);
  }
  void finishLocked(const grpc::Status& status) {
    if (finished)
      return;
    finished = true;
    reactor->Finish(status);
  }
};

class BundleWatchReactor final : public grpc::ServerWriteReactor<meshid::v1::TrustBundle> {
 public:
  BundleWatchReactor(MeshCaService& service, std::shared_ptr<MeshCaService::WatchState> state)
      : service_(service), state_(std::move(state)) {}

  // The current bundle always goes first, whatever version the caller holds
  // (documented in ca.proto); then every change. Watching starts before the
  // first read so no change in between is lost.
  void start() {
    {
      std::lock_guard lock(state_->mu);
      state_->reactor = this;
    }
    std::weak_ptr<MeshCaService::WatchState> weak = state_;
    watch_id_ = service_.bundle_.watch([weak](std::shared_ptr<const BundleSnapshot> b) {
      if (auto s = weak.lock()) {
        std::lock_guard lock(s->mu);
        s->offerLocked(std::move(b));
        s->pumpLocked();
      }
    });
    std::lock_guard lock(state_->mu);
    state_->offerLocked(service_.bundle_.current());
    state_->pumpLocked();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(state_->mu);
    state_->writing = false;
    if (!ok) {
      state_->finishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream broken"));
      return;
    }
    state_->pumpLocked();
  }

  void OnCancel() override {
    std::lock_guard lock(state_->mu);
    state_->finishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    service_.bundle_.unwatch(watch_id_);
    {
      std::lock_guard lock(state_->mu);
      state_->finished = true;
      state_->reactor = nullptr;
    }
    {
      std::lock_guard lock(service_.mu_);
      service_.watches_.erase(state_);
      service_.metrics_.setBundleWatchers(service_.watches_.size());
    }
    delete this;
  }

 private:
  MeshCaService& service_;
  std::shared_ptr<MeshCaService::WatchState> state_;
  uint64_t watch_id_ = 0;
};

grpc::ServerWriteReactor<meshid::v1::TrustBundle>* MeshCaService::WatchTrustBundle(
    grpc::CallbackServerContext* /*ctx*/, const meshid::v1::WatchTrustBundleRequest* /*request*/) {
  auto state = std::make_shared<WatchState>();
  auto* reactor = new BundleWatchReactor(*this, state);
  bool closing = false;
  {
    std::lock_guard lock(mu_);
    closing = closing_;
    if (!closing) {
      watches_.insert(state);
      metrics_.setBundleWatchers(watches_.size());
    }
  }
  if (closing) {
    std::lock_guard lock(state->mu);
    state->reactor = reactor;
    state->finishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "CA is shutting down"));
    return reactor;
  }
  reactor->start();
  return reactor;
}

void MeshCaService::closeWatches() {
  std::set<std::shared_ptr<WatchState>> open;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    open = watches_;
  }
  for (const auto& s : open) {
    std::lock_guard lock(s->mu);
    if (s->reactor)
      s->finishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "CA is shutting down"));
  }
}

MeshCaService::~MeshCaService() = default;

}  // namespace meshid::ca
