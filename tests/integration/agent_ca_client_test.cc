// The agent's CA client and rotator against a scripted CA that misbehaves
// (TESTING.md §1: our own clients are tested against servers that break the
// rules). A real gRPC server over TLS on 127.0.0.1:0 answers MeshCA/Sign as
// the test scripts it: a chain for another key, another SPIFFE ID, a foreign
// root, nothing, a bundle of another trust domain, garbage, UNAVAILABLE. The
// agent must refuse each answer, say why, never serve it, and keep serving
// what it had.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include "agent/ca_client.h"
#include "agent/config.h"
#include "agent/metrics.h"
#include "agent/rotator.h"
#include "agent/secret_cache.h"
#include "meshid/v1/ca.grpc.pb.h"
#include "pki/certificate.h"
#include "pki/csr.h"
#include "pki/issuance.h"
#include "pki/public_key.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::agent {
namespace {

using namespace std::chrono_literals;
using pki::testing::TestCa;

constexpr std::string_view kWorkload = "spiffe://example.org/ns/web/sa/web";

enum class Mode {
  kGood,
  kOtherKey,
  kOtherId,
  kForeignRoot,
  kEmptyChain,
  kOtherTrustDomain,
  kNonCaRoot,
  kGarbage,
  kUnavailable,
  kDenied,
};

class ScriptedCa final : public meshid::v1::MeshCA::Service {
 public:
  explicit ScriptedCa(SystemTime now)
      : ca_(TestCa::create({.now = now - 1h})),
        foreign_(TestCa::create({.now = now - 1h, .root_name = "foreign"})) {}

  std::atomic<Mode> mode{Mode::kGood};
  std::atomic<int> calls{0};
  const TestCa& ca() const { return ca_; }

  grpc::Status Sign(grpc::ServerContext*, const meshid::v1::SignRequest* req,
                    meshid::v1::SignResponse* resp) override {
    calls++;
    Mode m = mode.load();
    if (m == Mode::kUnavailable)
      return {grpc::StatusCode::UNAVAILABLE, "scripted outage"};
    if (m == Mode::kDenied)
      return {grpc::StatusCode::PERMISSION_DENIED, "scripted refusal"};
    auto csr = pki::parseCsr(req->csr());
    if (!csr.ok())
      return {grpc::StatusCode::INVALID_ARGUMENT, csr.error().message};
    auto key = pki::testing::newKey();
    auto csr_key = pki::publicKeyFromSpki(pki::der::asBytes(csr->spki_der));
    if (!csr_key.ok())
      return {grpc::StatusCode::INTERNAL, csr_key.error().message};
    const EVP_PKEY* leaf_key = m == Mode::kOtherKey ? key.get() : csr_key->get();
    std::string id =
        m == Mode::kOtherId ? "spiffe://example.org/ns/evil/sa/x" : pki::csrSpiffeId(*csr)->str();
    const TestCa& issuer = m == Mode::kForeignRoot ? foreign_ : ca_;
    Seconds ttl(req->ttl_seconds() > 0 ? req->ttl_seconds() : 3600);
    auto leaf = issuer.issueLeaf(leaf_key, id, ttl, std::chrono::system_clock::now());
    if (m == Mode::kGarbage) {
      resp->add_cert_chain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    } else if (m != Mode::kEmptyChain) {
      resp->add_cert_chain(pki::certificateToPem(leaf.get()));
      resp->add_cert_chain(pki::certificateToPem(issuer.intermediate.get()));
    }
    auto* b = resp->mutable_bundle();
    b->set_version(1);
    b->set_trust_domain(m == Mode::kOtherTrustDomain ? "other.org" : "example.org");
    b->add_roots(m == Mode::kNonCaRoot ? pki::certificateToPem(leaf.get())
                                       : pki::certificateToPem(ca_.root.get()));
    return grpc::Status::OK;
  }

  grpc::Status WatchTrustBundle(grpc::ServerContext* ctx,
                                const meshid::v1::WatchTrustBundleRequest*,
                                grpc::ServerWriter<meshid::v1::TrustBundle>*) override {
    while (!ctx->IsCancelled())
      std::this_thread::sleep_for(20ms);
    return grpc::Status::CANCELLED;
  }

 private:
  TestCa ca_;
  TestCa foreign_;
};

class AgentCaClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SystemTime now = clock_.now();
    service_ = std::make_unique<ScriptedCa>(now);
    auto key = pki::testing::newKey();
    pki::SvidRequest req{.public_key = key.get(),
                         .spiffe_id = pki::testing::spiffeId("spiffe://example.org/meshid/ca"),
                         .lifetime = 1h,
                         .now = now,
                         .ip_addresses = {"127.0.0.1"}};
    auto serving = meshid::testing::orThrow(pki::issueX509Svid(
        req, service_->ca().intermediate.get(), *service_->ca().intermediate_signer));
    grpc::SslServerCredentialsOptions tls(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    tls.pem_key_cert_pairs.push_back(
        {meshid::testing::orThrow(pki::privateKeyToPem(key.get())),
         pki::certificateToPem(serving.get()) +
             pki::certificateToPem(service_->ca().intermediate.get())});
    grpc::ServerBuilder b;
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    b.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(tls), &port_);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_TRUE(server_);

    std::ofstream(dir_ / "jwt") << "header.payload.signature\n";
    config_.ca.addresses = {"127.0.0.1:" + std::to_string(port_)};
    config_.ca.timeout = 2s;
    config_.credentials.jwt_token_file = dir_ / "jwt";
    config_.ttl = 4s;
    config_.rotation.initial_backoff = 100ms;
    config_.rotation.max_backoff = 200ms;
    config_.workers = 1;
    config_.entries.push_back({pki::testing::spiffeId(kWorkload), {.uid = 1}, std::nullopt});
  }

  void TearDown() override {
    if (rotator_)
      rotator_->stop();
    if (server_)
      server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }

  void startAgent() {
    ca_client_ = std::make_unique<CaClient>(config_.ca, config_.trust_domain, metrics_);
    rotator_ = std::make_unique<Rotator>(config_, *ca_client_, cache_, metrics_, clock_, random_);
    auto bundle = makeBundle(0, "example.org", {pki::certificateToPem(service_->ca().root.get())},
                             config_.trust_domain);
    ASSERT_TRUE(bundle.ok()) << bundle.error().message;
    MESHID_ASSERT_OK(rotator_->init(*bundle));
    rotator_->start();
  }

  IdentityStatus status() { return rotator_->status().front(); }

  template <class F>
  bool eventually(F f, std::chrono::milliseconds limit = 5s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (f())
        return true;
      std::this_thread::sleep_for(20ms);
    }
    return f();
  }

  // Starts in `mode` and waits for a few failed attempts.
  IdentityStatus failingWith(Mode mode) {
    service_->mode = mode;
    startAgent();
    EXPECT_TRUE(eventually([&] { return status().failures >= 2; })) << "no failed attempts";
    EXPECT_EQ(cache_.svid(std::string(kWorkload)), nullptr) << "a bad answer was served";
    return status();
  }

  meshid::testing::TempDir dir_;
  SystemClock clock_;
  SystemRandom random_;
  AgentConfig config_{pki::TrustDomain::parse("example.org").value()};
  AgentMetrics metrics_;
  SecretCache cache_;
  std::unique_ptr<ScriptedCa> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<CaClient> ca_client_;
  std::unique_ptr<Rotator> rotator_;
};

TEST_F(AgentCaClientTest, GoodAnswerIsServedAndRenewed) {
  startAgent();
  ASSERT_TRUE(eventually([&] { return cache_.svid(std::string(kWorkload)) != nullptr; }));
  std::string first = cache_.svid(std::string(kWorkload))->serial_hex;
  EXPECT_EQ(status().state, "ok");
  ASSERT_TRUE(eventually([&] { return cache_.svid(std::string(kWorkload))->serial_hex != first; }))
      << "renewed at half of a 4 s lifetime";
}

TEST_F(AgentCaClientTest, ChainForAnotherKeyIsRefused) {
  MESHID_EXPECT_CONTAINS(failingWith(Mode::kOtherKey).last_error, "key mismatch");
}

TEST_F(AgentCaClientTest, ChainForAnotherIdentityIsRefused) {
  MESHID_EXPECT_CONTAINS(failingWith(Mode::kOtherId).last_error, "does not verify");
}

TEST_F(AgentCaClientTest, ChainToAForeignRootIsRefused) {
  MESHID_EXPECT_CONTAINS(failingWith(Mode::kForeignRoot).last_error, "does not verify");
}

TEST_F(AgentCaClientTest, EmptyChainIsRefused) {
  MESHID_EXPECT_CONTAINS(failingWith(Mode::kEmptyChain).last_error, "empty chain");
}

TEST_F(AgentCaClientTest, BundleOfAnotherTrustDomainIsRefused) {
  MESHID_EXPECT_CONTAINS(failingWith(Mode::kOtherTrustDomain).last_error, "other.org");
  EXPECT_EQ(cache_.bundle()->version, 0u) << "the foreign bundle was not adopted";
}

TEST_F(AgentCaClientTest, BundleWithANonCaRootIsRefused) {
  MESHID_EXPECT_CONTAINS(failingWith(Mode::kNonCaRoot).last_error,
                         "leaf spiffe://example.org/ns/web/sa/web which is not a self-signed CA");
}

TEST_F(AgentCaClientTest, GarbageIsRefused) {
  EXPECT_FALSE(failingWith(Mode::kGarbage).last_error.empty());
}

TEST_F(AgentCaClientTest, RefusalIsReportedWithTheCasWords) {
  MESHID_EXPECT_CONTAINS(failingWith(Mode::kDenied).last_error, "scripted refusal");
}

TEST_F(AgentCaClientTest, BadAnswersAfterAGoodOneKeepTheGoodOneServedUntilExpiry) {
  startAgent();
  ASSERT_TRUE(eventually([&] { return cache_.svid(std::string(kWorkload)) != nullptr; }));
  auto held = cache_.svid(std::string(kWorkload));
  service_->mode = Mode::kOtherKey;
  ASSERT_TRUE(eventually([&] { return status().failures >= 2; }));
  EXPECT_EQ(cache_.svid(std::string(kWorkload))->serial_hex, held->serial_hex)
      << "the certificate in hand is still served";
  // Past its notAfter it is withdrawn, never served expired.
  ASSERT_TRUE(eventually([&] { return cache_.svid(std::string(kWorkload)) == nullptr; }, 6s));
  EXPECT_GE(clock_.now(), held->not_after);
  EXPECT_EQ(status().state, "expired");
  // The CA behaves again: the next attempt brings a certificate back.
  service_->mode = Mode::kGood;
  EXPECT_TRUE(eventually([&] { return cache_.svid(std::string(kWorkload)) != nullptr; }));
}

TEST_F(AgentCaClientTest, OutageIsRetriedWithBackoffNotHammered) {
  service_->mode = Mode::kUnavailable;
  startAgent();
  std::this_thread::sleep_for(1500ms);
  int calls = service_->calls.load();
  // 100 ms doubling to a 200 ms cap with equal jitter: at most ~15 attempts in 1.5 s.
  EXPECT_GE(calls, 3);
  EXPECT_LE(calls, 20);
  MESHID_EXPECT_CONTAINS(status().last_error, "scripted outage");
}

}  // namespace
}  // namespace meshid::agent
