#include "ca/ca_services.h"

#include <spdlog/spdlog.h>

#include <cctype>

#include "istio/v1/auth/ca.pb.h"
#include "meshid/v1/ca.pb.h"

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

template <class Message>
std::shared_ptr<Message> parseRequest(const rpc::Call& call) {
  auto m = std::make_shared<Message>();
  std::string_view bytes = call.request();
  if (!m->ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return nullptr;
  return m;
}

constexpr std::string_view kUnparsable = "the request message does not parse";

// The shape both sign handlers share: queue the call; the signing worker
// answers its error or lets `fill` write the response, and finishes.
template <class Response, class Fill>
void answerSign(SigningQueue& signing, rpc::CallPtr call, Api api,
                std::shared_ptr<const void> request, std::string_view csr, int64_t ttl_seconds,
                Fill fill) {
  SignCall sign_call{.api = api,
                     .credentials = credentialsFrom(*call),
                     .csr = csr,  // `request` is kept until the answer
                     .requested_ttl_seconds = ttl_seconds};
  signing.submit(std::move(sign_call),
                 [call, request = std::move(request), fill](Result<SignResult> result) {
                   if (!result.ok()) {
                     call->finish(result.error().code, result.error().message);
                     return;
                   }
                   Response response;
                   response.add_cert_chain(std::move(result->leaf.pem));
                   for (const auto& pem : result->signer->chain_pem)
                     response.add_cert_chain(pem);
                   fill(*result, &response);
                   call->finishWith(response.SerializeAsString());
                 });
}

}  // namespace

CallerCredentials credentialsFrom(const rpc::Call& call) {
  CallerCredentials c;
  c.peer = std::string(call.peer());
  if (auto auth = call.header("authorization")) {
    std::string_view v = *auth;
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
  if (!call.peerCertificatePem().empty())
    c.peer_certificate_pem = call.peerCertificatePem();
  return c;
}

std::map<std::string, rpc::Handler, std::less<>> CaServices::handlers() {
  return {
      {std::string(kIstioCreateCertificate), [this](rpc::CallPtr c) { createCertificate(c); }},
      {std::string(kMeshSign), [this](rpc::CallPtr c) { sign(c); }},
      {std::string(kMeshGetTrustBundle), [this](rpc::CallPtr c) { getTrustBundle(c); }},
      {std::string(kMeshWatchTrustBundle), [this](rpc::CallPtr c) { watchTrustBundle(c); }},
  };
}

void CaServices::createCertificate(rpc::CallPtr call) {
  auto request = parseRequest<istio::v1::auth::IstioCertificateRequest>(*call);
  if (!request) {
    call->finish(Code::kInternal, std::string(kUnparsable));
    return;
  }
  std::string_view csr = request->csr();
  int64_t ttl = request->validity_duration();
  answerSign<istio::v1::auth::IstioCertificateResponse>(
      signing_, std::move(call), Api::kIstio, std::move(request), csr, ttl,
      [](const SignResult& r, auto* out) {
        // Leaf first, root last; the last element carries every root of the
        // bundle as one PEM string (several during a rotation). Never fewer
        // than two.
        std::string roots;
        for (const auto& pem : r.bundle->roots_pem)
          roots += pem;
        out->add_cert_chain(roots);
      });
}

void CaServices::sign(rpc::CallPtr call) {
  auto request = parseRequest<meshid::v1::SignRequest>(*call);
  if (!request) {
    call->finish(Code::kInternal, std::string(kUnparsable));
    return;
  }
  std::string_view csr = request->csr();
  int64_t ttl = request->ttl_seconds();
  answerSign<meshid::v1::SignResponse>(signing_, std::move(call), Api::kMeshid, std::move(request),
                                       csr, ttl, [](const SignResult& r, auto* out) {
                                         fillBundle(*r.bundle, out->mutable_bundle());
                                         out->set_spiffe_id(r.spiffe_id.str());
                                         out->set_serial(r.leaf.serial_hex);
                                         out->set_not_after_unix(toUnixSeconds(r.leaf.not_after));
                                       });
}

void CaServices::getTrustBundle(rpc::CallPtr call) {
  if (!parseRequest<meshid::v1::GetTrustBundleRequest>(*call)) {
    call->finish(Code::kInternal, std::string(kUnparsable));
    return;
  }
  auto current = bundle_.current();
  if (!current) {
    call->finish(Code::kUnavailable, "no trust bundle yet");
    return;
  }
  meshid::v1::TrustBundle response;
  fillBundle(*current, &response);
  call->finishWith(response.SerializeAsString());
}

// Shared between a stream and the bundle watcher, which may run on another
// thread at any time until it is unregistered (and a moment after).
struct CaServices::WatchState {
  std::mutex mu;
  rpc::CallPtr call;
  bool ended = false;         // guarded by mu
  uint64_t sent_version = 0;  // guarded by mu
  uint64_t watch_id = 0;      // set once before the first offer

  // Sends `b` if it is newer than what was sent. Writes are queued in the
  // order they are made here, under mu, so a client sees versions rise.
  void offer(const std::shared_ptr<const BundleSnapshot>& b) {
    std::lock_guard lock(mu);
    if (ended || !b || b->version <= sent_version)
      return;
    sent_version = b->version;
    meshid::v1::TrustBundle message;
    fillBundle(*b, &message);
    call->write(message.SerializeAsString());
  }
};

// The current bundle always goes first, whatever version the caller holds
// (documented in ca.proto); then every change. Watching starts before the
// first offer so no change in between is lost.
void CaServices::watchTrustBundle(rpc::CallPtr call) {
  if (!parseRequest<meshid::v1::WatchTrustBundleRequest>(*call)) {
    call->finish(Code::kInternal, std::string(kUnparsable));
    return;
  }
  auto state = std::make_shared<WatchState>();
  state->call = call;
  {
    std::lock_guard lock(mu_);
    if (closing_) {
      call->finish(Code::kUnavailable, "CA is shutting down");
      return;
    }
    watches_.insert(state);
    metrics_.setBundleWatchers(watches_.size());
  }
  std::weak_ptr<WatchState> weak = state;
  state->watch_id = bundle_.watch([weak](std::shared_ptr<const BundleSnapshot> b) {
    if (auto s = weak.lock())
      s->offer(b);
  });
  call->onCancel([this, weak] {
    if (auto s = weak.lock())
      endWatch(s);
  });
  state->offer(bundle_.current());
}

void CaServices::endWatch(const std::shared_ptr<WatchState>& state) {
  {
    std::lock_guard lock(state->mu);
    if (state->ended)
      return;
    state->ended = true;
  }
  bundle_.unwatch(state->watch_id);
  std::lock_guard lock(mu_);
  watches_.erase(state);
  metrics_.setBundleWatchers(watches_.size());
}

void CaServices::closeWatches() {
  std::set<std::shared_ptr<WatchState>> open;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    open = watches_;
  }
  for (const auto& s : open) {
    endWatch(s);
    s->call->finish(Code::kUnavailable, "CA is shutting down");
  }
}

CaServices::~CaServices() = default;

}  // namespace meshid::ca
