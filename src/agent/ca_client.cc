#include "agent/ca_client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <map>

#include "meshid/v1/ca.grpc.pb.h"
#include "pki/certificate.h"
#include "pki/chain.h"

namespace meshid::agent {
namespace {

std::string sha256Hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  std::string out;
  for (unsigned char b : md)
    out += fmt::format("{:02x}", b);
  return out;
}

Error fromStatus(const grpc::Status& s, const std::string& address) {
  auto code = static_cast<Code>(s.error_code());
  return Error{code,
               fmt::format("CA {} answered {}: {}", address, codeName(code), s.error_message())};
}

// Worth trying another CA: the transport failed or the CA is overloaded.
bool failoverWorthy(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::DEADLINE_EXCEEDED ||
         c == grpc::StatusCode::RESOURCE_EXHAUSTED || c == grpc::StatusCode::CANCELLED;
}

grpc::ChannelArguments channelArguments(const std::string& server_name) {
  grpc::ChannelArguments args;
  // A CA that comes back is used within a second or two, not after gRPC's
  // default reconnect backoff (up to two minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(1 << 20);
  if (!server_name.empty())
    args.SetSslTargetNameOverride(server_name);
  return args;
}

}  // namespace

Result<std::shared_ptr<const Bundle>> makeBundle(uint64_t version, std::string_view trust_domain,
                                                 const std::vector<std::string>& roots_pem,
                                                 const pki::TrustDomain& expected) {
  if (trust_domain != expected.name()) {
    return Error::failedPrecondition(
        fmt::format("the CA serves trust domain \"{}\", this agent is configured for \"{}\"",
                    trust_domain, expected.name()));
  }
  if (roots_pem.empty())
    return Error::failedPrecondition("the CA sent a trust bundle with no roots");
  auto b = std::make_shared<Bundle>();
  b->version = version;
  b->trust_domain = std::string(trust_domain);
  for (const auto& pem : roots_pem) {
    MESHID_ASSIGN_OR_RETURN(auto certs, pki::parseCertificatesPem(pem));
    for (const auto& c : certs) {
      if (!pki::isCa(c.get()) || !pki::isSelfSigned(c.get())) {
        return Error::failedPrecondition(
            fmt::format("trust bundle holds {} which is not a self-signed CA certificate",
                        pki::certificateLabel(c.get())));
      }
      b->roots_pem.push_back(pki::certificateToPem(c.get()));
      b->roots_der.push_back(pki::certificateToDer(c.get()));
    }
  }
  b->sha256 = sha256Hex(b->der());
  return std::shared_ptr<const Bundle>(std::move(b));
}

struct CaClient::Impl {
  AgentConfig::Ca config;
  pki::TrustDomain trust_domain;
  AgentMetrics& metrics;

  std::mutex mu;
  std::string roots_pem;    // guarded by mu
  std::string chain_pem;    // guarded by mu
  std::string key_pem;      // guarded by mu
  uint64_t generation = 0;  // guarded by mu; bumps on every trust or identity change
  std::map<std::string, std::pair<uint64_t, std::shared_ptr<grpc::Channel>>>
      channels;                              // guarded by mu
  size_t preferred = 0;                      // guarded by mu: the address that answered last
  grpc::ClientContext* watch_ctx = nullptr;  // guarded by mu
  bool watch_cancelled = false;              // guarded by mu

  Impl(AgentConfig::Ca c, pki::TrustDomain td, AgentMetrics& m)
      : config(std::move(c)), trust_domain(std::move(td)), metrics(m) {}

  ~Impl() { OPENSSL_cleanse(key_pem.data(), key_pem.size()); }

  std::shared_ptr<grpc::Channel> channel(const std::string& address) {
    std::lock_guard lock(mu);
    auto it = channels.find(address);
    if (it != channels.end() && it->second.first == generation)
      return it->second.second;
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = roots_pem;
    tls.pem_cert_chain = chain_pem;
    tls.pem_private_key = key_pem;
    auto ch = grpc::CreateCustomChannel(address, grpc::SslCredentials(tls),
                                        channelArguments(config.server_name));
    OPENSSL_cleanse(tls.pem_private_key.data(), tls.pem_private_key.size());
    channels[address] = {generation, ch};
    return ch;
  }

  // Runs call(address, channel) against each address in turn from the last
  // good one, until one answers or the failure is not a transport one.
  template <class Fn>
  grpc::Status withFailover(Fn&& call, std::string* used) {
    size_t start;
    {
      std::lock_guard lock(mu);
      start = preferred;
    }
    grpc::Status last;
    size_t n = config.addresses.size();
    for (size_t i = 0; i < n; ++i) {
      size_t idx = (start + i) % n;
      const std::string& address = config.addresses[idx];
      last = call(address, channel(address));
      *used = address;
      if (last.ok() || !failoverWorthy(last.error_code())) {
        std::lock_guard lock(mu);
        preferred = idx;
        return last;
      }
      spdlog::warn("CA {} failed ({}: {}){}", address, static_cast<int>(last.error_code()),
                   last.error_message(), i + 1 < n ? ", trying the next CA address" : "");
    }
    return last;
  }
};

CaClient::CaClient(AgentConfig::Ca config, pki::TrustDomain trust_domain, AgentMetrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(trust_domain), metrics)) {}

CaClient::~CaClient() = default;

void CaClient::setTrust(std::string roots_pem) {
  std::lock_guard lock(impl_->mu);
  if (roots_pem == impl_->roots_pem)
    return;
  impl_->roots_pem = std::move(roots_pem);
  ++impl_->generation;
}

void CaClient::setClientIdentity(std::string chain_pem, std::string key_pem) {
  std::lock_guard lock(impl_->mu);
  if (chain_pem == impl_->chain_pem && key_pem == impl_->key_pem)
    return;
  OPENSSL_cleanse(impl_->key_pem.data(), impl_->key_pem.size());
  impl_->chain_pem = std::move(chain_pem);
  impl_->key_pem = std::move(key_pem);
  ++impl_->generation;
}

std::string CaClient::lastGoodAddress() const {
  std::lock_guard lock(impl_->mu);
  return impl_->config.addresses[impl_->preferred];
}

Result<SignedChain> CaClient::sign(const std::string& csr_pem, Seconds ttl,
                                   const std::optional<std::string>& bearer) {
  auto started = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  meshid::v1::SignRequest request;
  request.set_csr(csr_pem);
  request.set_ttl_seconds(ttl.count());
  meshid::v1::SignResponse response;
  std::string used;
  grpc::Status s = impl_->withFailover(
      [&](const std::string&, const std::shared_ptr<grpc::Channel>& ch) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + impl_->config.timeout);
        if (bearer)
          ctx.AddMetadata("authorization", "Bearer " + *bearer);
        response.Clear();
        return meshid::v1::MeshCA::NewStub(ch)->Sign(&ctx, request, &response);
      },
      &used);
  if (!s.ok()) {
    impl_->metrics.caRequest(failoverWorthy(s.error_code()) ? "unavailable" : "denied", seconds());
    return fromStatus(s, used);
  }
  SignedChain out;
  out.address = used;
  out.chain_pem.assign(response.cert_chain().begin(), response.cert_chain().end());
  std::vector<std::string> roots(response.bundle().roots().begin(),
                                 response.bundle().roots().end());
  auto bundle = makeBundle(response.bundle().version(), response.bundle().trust_domain(), roots,
                           impl_->trust_domain);
  if (!bundle.ok() || out.chain_pem.empty()) {
    impl_->metrics.caRequest("invalid", seconds());
    return bundle.ok() ? Error::internal(fmt::format("CA {} sent an empty chain", used))
                       : bundle.error().wrap(fmt::format("CA {}", used));
  }
  out.bundle = std::move(*bundle);
  impl_->metrics.caRequest("ok", seconds());
  return out;
}

Result<std::shared_ptr<const Bundle>> CaClient::fetchPinnedBundle(const std::string& pin_hex) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  // The server is not verified on this one call: what it sends is accepted
  // only if it contains the pinned root, and every later call verifies the
  // CA against that root.
  options.set_verify_server_certs(false);
  options.set_check_call_host(false);
  options.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  auto creds = grpc::experimental::TlsCredentials(options);
  Error last = Error::unavailable("no CA address");
  for (const auto& address : impl_->config.addresses) {
    auto ch = grpc::CreateCustomChannel(address, creds, channelArguments(""));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + impl_->config.timeout);
    meshid::v1::TrustBundle tb;
    grpc::Status s = meshid::v1::MeshCA::NewStub(ch)->GetTrustBundle(
        &ctx, meshid::v1::GetTrustBundleRequest(), &tb);
    if (!s.ok()) {
      last = fromStatus(s, address);
      continue;
    }
    std::vector<std::string> roots(tb.roots().begin(), tb.roots().end());
    MESHID_ASSIGN_OR_RETURN(
        auto bundle, makeBundle(tb.version(), tb.trust_domain(), roots, impl_->trust_domain));
    for (const auto& der : bundle->roots_der) {
      if (sha256Hex(der) == pin_hex)
        return bundle;
    }
    return Error::permissionDenied(fmt::format(
        "CA {} sent a trust bundle without the pinned root (sha256 {}); not trusting it", address,
        pin_hex));
  }
  return last;
}

Result<void> CaClient::watchBundle(
    uint64_t known_version, const std::function<void(std::shared_ptr<const Bundle>)>& on_bundle) {
  std::string address;
  std::shared_ptr<grpc::Channel> ch;
  {
    std::lock_guard lock(impl_->mu);
    address = impl_->config.addresses[impl_->preferred];
  }
  ch = impl_->channel(address);
  grpc::ClientContext ctx;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->watch_cancelled)
      return Error{Code::kCancelled, "stopping"};
    impl_->watch_ctx = &ctx;
  }
  meshid::v1::WatchTrustBundleRequest request;
  request.set_known_version(known_version);
  auto reader = meshid::v1::MeshCA::NewStub(ch)->WatchTrustBundle(&ctx, request);
  meshid::v1::TrustBundle tb;
  Result<void> result = okResult();
  while (reader->Read(&tb)) {
    std::vector<std::string> roots(tb.roots().begin(), tb.roots().end());
    auto bundle = makeBundle(tb.version(), tb.trust_domain(), roots, impl_->trust_domain);
    if (!bundle.ok()) {
      spdlog::error("ignoring a trust bundle from CA {}: {}", address, bundle.error().message);
      continue;
    }
    on_bundle(std::move(*bundle));
  }
  grpc::Status s = reader->Finish();
  {
    std::lock_guard lock(impl_->mu);
    impl_->watch_ctx = nullptr;
    if (failoverWorthy(s.error_code()) && !impl_->watch_cancelled) {
      impl_->preferred = (impl_->preferred + 1) % impl_->config.addresses.size();
    }
  }
  if (!s.ok())
    return fromStatus(s, address);
  return Error::unavailable(fmt::format("CA {} ended the trust bundle stream", address));
}

void CaClient::cancelWatch() {
  std::lock_guard lock(impl_->mu);
  impl_->watch_cancelled = true;
  if (impl_->watch_ctx)
    impl_->watch_ctx->TryCancel();
}

}  // namespace meshid::agent
