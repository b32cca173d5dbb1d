// The SPIFFE Workload API (PROTOCOLS.md §3) over the agent's Unix socket.
// Unlike SDS, the first response goes out at once and every message is the
// caller's full state; an error ends the stream instead of holding it.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "agent/coalescing_writer.h"
#include "agent/services.h"
#include "spiffe/workload.grpc.pb.h"

namespace meshid::agent {
namespace {

constexpr const char* kHeader = "workload.spiffe.io";

std::optional<grpc::Status> checkHeader(grpc::CallbackServerContext* call) {
  const auto& md = call->client_metadata();
  auto it = md.find(kHeader);
  if (it == md.end() || std::string_view(it->second.data(), it->second.size()) != "true") {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "security header missing from request: send metadata "
                        "\"workload.spiffe.io: true\"");
  }
  return std::nullopt;
}

// Shared by both streams: attestation, the write queue, the cache listener.
template <class Response>
class StreamReactor : public grpc::ServerWriteReactor<Response> {
 public:
  StreamReactor(ServingContext& ctx, grpc::CallbackServerContext* call) : ctx_(ctx) {
    if (auto bad = checkHeader(call)) {
      finish(*bad);
      return;
    }
    auto caller = attestCaller(ctx_, call->peer(), "workload_api");
    if (!caller.ok()) {
      finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, caller.error().message));
      return;
    }
    peer_ = caller->peer;
    entries_ = std::move(caller->entries);
    ctx_.metrics.streamOpened("workload_api");
    counted_ = true;
  }

  // Called by the subclass once its constructor has finished.
  void begin() {
    {
      std::lock_guard lock(mu_);
      if (finished_)
        return;
    }
    listener_ = ctx_.cache.subscribe([this] { onChange(); });
    onChange();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    const auto* next = writer_.done();
    if (ok && !finished_ && next)
      this->StartWrite(next);
  }

  void OnCancel() override { finish(grpc::Status::CANCELLED); }

  void OnDone() override {
    if (listener_)
      ctx_.cache.unsubscribe(listener_);
    if (counted_)
      ctx_.metrics.streamClosed("workload_api");
    delete this;
  }

 protected:
  // The full state to send now with a fingerprint of its content, or an
  // error status that ends the stream.
  struct Next {
    std::optional<Response> response;
    std::string fingerprint;
    std::optional<grpc::Status> end;
  };
  virtual Next build() = 0;

  ServingContext& ctx_;
  PeerInfo peer_;
  std::vector<const Entry*> entries_;

 private:
  void onChange() {
    std::lock_guard lock(mu_);
    if (finished_)
      return;
    Next next = build();
    if (next.end) {
      finishLocked(*next.end);
      return;
    }
    if (!next.response || next.fingerprint == last_fingerprint_)
      return;
    last_fingerprint_ = next.fingerprint;
    if (const auto* now = writer_.push(std::move(*next.response)))
      this->StartWrite(now);
  }

  void finish(grpc::Status status) {
    std::lock_guard lock(mu_);
    finishLocked(std::move(status));
  }
  void finishLocked(grpc::Status status) {
    if (finished_)
      return;
    finished_ = true;
    this->Finish(std::move(status));
  }

  uint64_t listener_ = 0;
  bool counted_ = false;
  std::mutex mu_;
  bool finished_ = false;              // guarded by mu_
  CoalescingWriter<Response> writer_;  // guarded by mu_
  std::string last_fingerprint_;       // guarded by mu_
};

class X509SvidReactor final : public StreamReactor<X509SVIDResponse> {
 public:
  using StreamReactor::StreamReactor;

 protected:
  Next build() override {
    auto bundle = ctx_.cache.bundle();
    X509SVIDResponse response;
    std::string fingerprint;
    for (const auto* e : entries_) {
      auto s = ctx_.cache.svid(e->spiffe_id.str());
      if (!s || !bundle)
        continue;  // not issued yet, or expired and withdrawn: left out
      X509SVID* out = response.add_svids();
      out->set_spiffe_id(s->spiffe_id.str());
      std::string chain;
      for (const auto& der : s->chain_der)
        chain += der;
      out->set_x509_svid(std::move(chain));
      out->set_x509_svid_key(s->key_der);
      out->set_bundle(bundle->der());
      fingerprint += s->serial_hex + ",";
    }
    if (response.svids_size() == 0) {
      // Never a response with zero svids.
      return {std::nullopt,
              {},
              grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           fmt::format("no X.509-SVID is available yet for {}; retry",
                                       entries_.front()->spiffe_id.str()))};
    }
    fingerprint += fmt::format("b{}", bundle->sha256);
    return {std::move(response), std::move(fingerprint), std::nullopt};
  }
};

class X509BundlesReactor final : public StreamReactor<X509BundlesResponse> {
 public:
  using StreamReactor::StreamReactor;

 protected:
  Next build() override {
    auto bundle = ctx_.cache.bundle();
    if (!bundle) {
      return {std::nullopt,
              {},
              grpc::Status(grpc::StatusCode::UNAVAILABLE, "no trust bundle yet; retry")};
    }
    X509BundlesResponse response;
    (*response.mutable_bundles())["spiffe://" + bundle->trust_domain] = bundle->der();
    return {std::move(response), bundle->sha256, std::nullopt};
  }
};

class WorkloadApiService final : public SpiffeWorkloadAPI::CallbackService {
 public:
  explicit WorkloadApiService(ServingContext& ctx) : ctx_(ctx) {}

  grpc::ServerWriteReactor<X509SVIDResponse>* FetchX509SVID(grpc::CallbackServerContext* call,
                                                            const X509SVIDRequest*) override {
    auto* r = new X509SvidReactor(ctx_, call);
    r->begin();
    return r;
  }

  grpc::ServerWriteReactor<X509BundlesResponse>* FetchX509Bundles(
      grpc::CallbackServerContext* call, const X509BundlesRequest*) override {
    auto* r = new X509BundlesReactor(ctx_, call);
    r->begin();
    return r;
  }

  grpc::ServerUnaryReactor* FetchJWTSVID(grpc::CallbackServerContext* call, const JWTSVIDRequest*,
                                         JWTSVIDResponse*) override {
    return unimplementedUnary(call);
  }

  grpc::ServerUnaryReactor* ValidateJWTSVID(grpc::CallbackServerContext* call,
                                            const ValidateJWTSVIDRequest*,
                                            ValidateJWTSVIDResponse*) override {
    return unimplementedUnary(call);
  }

  grpc::ServerWriteReactor<JWTBundlesResponse>* FetchJWTBundles(grpc::CallbackServerContext* call,
                                                                const JWTBundlesRequest*) override {
    class Unimplemented final : public grpc::ServerWriteReactor<JWTBundlesResponse> {
     public:
      explicit Unimplemented(grpc::Status s) { Finish(std::move(s)); }
      void OnDone() override { delete this; }
    };
    return new Unimplemented(jwtStatus(call));
  }

 private:
  static grpc::Status jwtStatus(grpc::CallbackServerContext* call) {
    if (auto bad = checkHeader(call))
      return *bad;
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "JWT-SVIDs are not issued by this agent (X.509-SVIDs only)");
  }
  grpc::ServerUnaryReactor* unimplementedUnary(grpc::CallbackServerContext* call) {
    auto* reactor = call->DefaultReactor();
    reactor->Finish(jwtStatus(call));
    return reactor;
  }

  ServingContext& ctx_;
};

}  // namespace

std::unique_ptr<grpc::Service> makeWorkloadApiService(ServingContext& ctx) {
  return std::make_unique<WorkloadApiService>(ctx);
}

}  // namespace meshid::agent
