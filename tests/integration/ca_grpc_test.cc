// The CA server in-process, called through the generated gRPC stubs over real
// TLS on 127.0.0.1:0, each test in its own state dir. Every call opens a new
// channel with its own subchannel pool, so every call is a new TCP + TLS
// connection (TESTING.md §2: nothing rides a connection from before a swap).
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ca/config.h"
#include "ca/join_token.h"
#include "ca/server.h"
#include "common/file_util.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "meshid/v1/ca.grpc.pb.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/csr.h"
#include "pki/issuance.h"
#include "pki/jwt.h"
#include "pki/key.h"
#include "pki/tls_probe.h"
#include "store/sqlite_store.h"
#include "unit/ca/secret_volume.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using meshid::testing::cacertsFiles;
using meshid::testing::orThrow;
using meshid::testing::SecretVolume;
using meshid::testing::TempDir;
using Steady = std::chrono::steady_clock;

constexpr std::string_view kHost = "spiffe://example.org/host/node-1";

// ---- client side -----------------------------------------------------------

struct ClientIdentity {
  std::string key_pem;
  std::string chain_pem;  // leaf first, then intermediates
};

std::shared_ptr<grpc::Channel> channel(int port, const std::string& root_pem,
                                       const ClientIdentity* id = nullptr) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = root_pem;
  if (id != nullptr) {
    tls.pem_private_key = id->key_pem;
    tls.pem_cert_chain = id->chain_pem;
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::SslCredentials(tls),
                                   args);
}

std::unique_ptr<grpc::ClientContext> context(std::optional<std::string> bearer = std::nullopt,
                                             std::chrono::milliseconds timeout = 5s) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  if (bearer)
    ctx->AddMetadata("authorization", "Bearer " + *bearer);
  return ctx;
}

std::string csrPem(const EVP_PKEY* key, std::string_view id) {
  auto spiffe = orThrow(pki::SpiffeId::parse(id), "id");
  return pki::csrToPem(orThrow(pki::buildCsr(key, spiffe), "csr").get());
}

struct Signed {
  grpc::Status status;
  meshid::v1::SignResponse response;
};

Signed sign(int port, const std::string& root_pem, const std::string& csr,
            std::optional<std::string> bearer, const ClientIdentity* id = nullptr) {
  auto stub = meshid::v1::MeshCA::NewStub(channel(port, root_pem, id));
  meshid::v1::SignRequest req;
  req.set_csr(csr);
  Signed out;
  auto ctx = context(bearer);
  out.status = stub->Sign(ctx.get(), req, &out.response);
  return out;
}

std::string describe(const grpc::Status& s) {
  return std::to_string(s.error_code()) + " " + s.error_message();
}

std::vector<pki::X509Ptr> certs(const google::protobuf::RepeatedPtrField<std::string>& pems) {
  std::vector<pki::X509Ptr> out;
  for (const auto& p : pems) {
    for (auto& c : orThrow(pki::parseCertificatesPem(p), "response pem"))
      out.push_back(std::move(c));
  }
  return out;
}

std::string httpGet(int port, const std::string& path) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(2s);
  cli.set_read_timeout(5s);
  auto res = cli.Get(path.c_str());
  if (!res)
    return "<no response>";
  return std::to_string(res->status) + "\n" + res->body;
}

// The value of one sample line ("name{labels} value") of /metrics, or -1.
double metric(int admin_port, const std::string& series) {
  std::string text = httpGet(admin_port, "/metrics");
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos)
    return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

// Polls cond every 20 ms until it holds or timeout passes.
template <class F>
bool eventually(F cond, std::chrono::milliseconds timeout) {
  auto deadline = Steady::now() + timeout;
  while (Steady::now() < deadline) {
    if (cond())
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

// ---- server side -----------------------------------------------------------

class CaGrpcTest : public ::testing::Test {
 protected:
  CaConfig config(const std::string& extra_yaml = "") {
    std::string yaml =
        "trust_domain: example.org\n"
        "listen: 127.0.0.1:0\n"
        "admin_listen: 127.0.0.1:0\n"
        "state_dir: state\n" +
        extra_yaml;
    return orThrow(parseCaConfig(yaml, dir_.path()), "config");
  }

  void start(const CaConfig& c) {
    config_ = std::make_unique<CaConfig>(c);
    server_ = orThrow(CaServer::start(c, clock_), "start CA");
    ASSERT_GT(server_->grpcPort(), 0);
    ASSERT_GT(server_->adminPort(), 0);
  }

  int port() const { return server_->grpcPort(); }

  std::string selfSignedRootPem() const {
    return orThrow(readFile(config_->state_dir / "ca" / "root-cert.pem", 1 << 20), "root pem");
  }

  // A join token for id, straight into the server's database (WAL lets a
  // second connection write beside the server's).
  std::string joinToken(std::string_view id = kHost) {
    if (!db_)
      db_ = orThrow(store::SqliteStore::open(config_->databasePath()), "second db");
    std::string token = orThrow(generateJoinToken(), "token");
    orThrow(db_->createJoinToken({.token_hash = hashJoinToken(token),
                                  .spiffe_id = std::string(id),
                                  .created_at = clock_.now(),
                                  .expires_at = clock_.now() + 1h}),
            "create token");
    return token;
  }

  // kHost's first certificate, by join token, as an mTLS identity for
  // renewals (no chain when that failed).
  ClientIdentity bootIdentity(const std::string& root, const EVP_PKEY* key) {
    Signed boot = sign(port(), root, csrPem(key, kHost), joinToken());
    EXPECT_TRUE(boot.status.ok()) << describe(boot.status);
    ClientIdentity id{orThrow(pki::privateKeyToPem(key)), ""};
    for (const auto& pem : boot.response.cert_chain())
      id.chain_pem += pem;
    return id;
  }

  void TearDown() override {
    if (server_)
      server_->shutdown(0ms);
  }

  TempDir dir_;
  SystemClock clock_;
  std::unique_ptr<CaConfig> config_;
  std::unique_ptr<CaServer> server_;
  std::unique_ptr<store::SqliteStore> db_;
};

// (a) Bootstrap with a join token, then renew over mTLS with what it issued.
TEST_F(CaGrpcTest, JoinTokenThenMtlsRenewalKeepsTheIdentity) {
  start(config());
  std::string root = selfSignedRootPem();
  auto key = pki::testing::newKey();
  std::string token = joinToken();

  Signed first = sign(port(), root, csrPem(key.get(), kHost), token);
  ASSERT_TRUE(first.status.ok()) << describe(first.status);
  EXPECT_EQ(first.response.spiffe_id(), kHost);
  ASSERT_GE(first.response.cert_chain_size(), 2);
  auto chain = certs(first.response.cert_chain());
  std::vector<pki::X509Ptr> intermediates;
  for (size_t i = 1; i < chain.size(); ++i)
    intermediates.push_back(pki::shareX509(chain[i].get()));
  auto roots = certs(first.response.bundle().roots());
  ASSERT_EQ(roots.size(), 1u);
  pki::ChainVerifyOptions verify;
  verify.at = clock_.now();
  verify.expected_id = orThrow(pki::SpiffeId::parse(kHost));
  MESHID_ASSERT_OK(pki::verifyChain(chain[0].get(), intermediates, roots, verify));
  EXPECT_EQ(first.response.serial(), pki::serialHex(chain[0].get()));
  EXPECT_EQ(first.response.bundle().trust_domain(), "example.org");

  // The token is spent.
  Signed reuse = sign(port(), root, csrPem(key.get(), kHost), token);
  EXPECT_EQ(reuse.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // Renewal: a new key, no token, the issued certificate as client cert.
  ClientIdentity id{orThrow(pki::privateKeyToPem(key.get())), ""};
  for (const auto& pem : first.response.cert_chain())
    id.chain_pem += pem;
  auto next_key = pki::testing::newKey();
  Signed renewed = sign(port(), root, csrPem(next_key.get(), kHost), std::nullopt, &id);
  ASSERT_TRUE(renewed.status.ok()) << describe(renewed.status);
  EXPECT_EQ(renewed.response.spiffe_id(), kHost);
  EXPECT_NE(renewed.response.serial(), first.response.serial());
  auto renewed_leaf = certs(renewed.response.cert_chain());
  EXPECT_TRUE(pki::samePublicKey(X509_get0_pubkey(renewed_leaf[0].get()), next_key.get()));

  // The renewal was recorded as mTLS by the caller itself.
  auto rec = db_->findIssuance(renewed.response.serial());
  MESHID_ASSERT_OK(rec);
  ASSERT_TRUE(rec->has_value());
  EXPECT_EQ((*rec)->method, "mtls");
  EXPECT_EQ((*rec)->caller, kHost);
  EXPECT_EQ((*rec)->api, "meshid");

  // mTLS renews only the caller's own identity.
  Signed other = sign(port(), root, csrPem(next_key.get(), "spiffe://example.org/host/node-2"),
                      std::nullopt, &id);
  EXPECT_EQ(other.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // No credential at all.
  Signed anonymous = sign(port(), root, csrPem(next_key.get(), kHost), std::nullopt);
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// Istio's API over the same server: chain of at least leaf and root, leaf first.
TEST_F(CaGrpcTest, IstioCreateCertificateWithJoinToken) {
  start(config());
  std::string root = selfSignedRootPem();
  auto key = pki::testing::newKey(pki::KeyType::kRsa2048);
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel(port(), root));
  istio::v1::auth::IstioCertificateRequest req;
  req.set_csr(csrPem(key.get(), kHost));
  req.set_validity_duration(90LL * 24 * 3600);  // clamped, not refused
  (*req.mutable_metadata()->mutable_fields())["CertSigner"].set_string_value("");
  istio::v1::auth::IstioCertificateResponse resp;
  auto ctx = context(joinToken());
  ctx->AddMetadata("clusterid", "Kubernetes");
  grpc::Status s = stub->CreateCertificate(ctx.get(), req, &resp);
  ASSERT_TRUE(s.ok()) << describe(s);
  ASSERT_GE(resp.cert_chain_size(), 2);
  EXPECT_EQ(resp.cert_chain(resp.cert_chain_size() - 1), root);
  auto leaf = certs({resp.cert_chain().begin(), resp.cert_chain().begin() + 1});
  EXPECT_FALSE(pki::isCa(leaf[0].get()));
  EXPECT_LE(pki::notAfter(leaf[0].get()), clock_.now() + 24h + 5s);
}

// (b) The first message of a watch comes at once, with the current version.
TEST_F(CaGrpcTest, WatchTrustBundleSendsCurrentBundleAtOnce) {
  start(config());
  std::string root = selfSignedRootPem();
  auto stub = meshid::v1::MeshCA::NewStub(channel(port(), root));

  meshid::v1::TrustBundle current;
  auto get_ctx = context();
  ASSERT_TRUE(stub->GetTrustBundle(get_ctx.get(), {}, &current).ok());
  EXPECT_EQ(current.version(), 1u);
  ASSERT_EQ(current.roots_size(), 1);
  EXPECT_EQ(current.roots(0), root);

  auto watch_ctx = context(std::nullopt, 10s);
  meshid::v1::WatchTrustBundleRequest req;
  req.set_known_version(current.version());  // the current one is sent anyway
  auto started = Steady::now();
  auto reader = stub->WatchTrustBundle(watch_ctx.get(), req);
  meshid::v1::TrustBundle first;
  ASSERT_TRUE(reader->Read(&first));
  auto waited = Steady::now() - started;
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(first.version(), current.version());
  EXPECT_EQ(first.sha256(), current.sha256());
  EXPECT_EQ(first.trust_domain(), "example.org");
  ASSERT_EQ(first.roots_size(), 1);
  EXPECT_EQ(first.roots(0), root);
  watch_ctx->TryCancel();
  meshid::v1::TrustBundle more;
  while (reader->Read(&more)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// (c) A files signer whose Kubernetes-style secret is swapped under load:
// every request succeeds, new leaves chain to the new intermediate, and a
// broken set is refused while signing goes on with the previous one.
TEST_F(CaGrpcTest, FilesSignerReloadUnderLoad) {
  auto now = clock_.now();
  pki::testing::TestCa ca = pki::testing::TestCa::create({.now = now});
  auto issueIntermediate = [&](std::string name) {
    auto key = pki::testing::newKey();
    auto cert = orThrow(pki::issueIntermediateCertificate({.public_key = key.get(),
                                                           .trust_domain = ca.trust_domain,
                                                           .common_name = std::move(name),
                                                           .lifetime = 30 * 24h,
                                                           .now = now,
                                                           .path_length = 0},
                                                          ca.root.get(), *ca.root_signer));
    return std::make_pair(std::move(key), std::move(cert));
  };
  SecretVolume volume(dir_ / "cacerts");
  volume.publish(cacertsFiles(ca.intermediate.get(), ca.intermediate_key.get(),
                              {ca.intermediate.get()}, {ca.root.get()}));
  CaConfig c = config("signer:\n  type: files\n  dir: cacerts\n  poll_interval: 1s\n");
  ASSERT_EQ(c.signer.dir, dir_ / "cacerts");
  // YAML durations are whole seconds; poll faster to keep the test short.
  c.signer.poll_interval = 200ms;
  start(c);
  std::string root = pki::certificateToPem(ca.root.get());

  // One client identity for every renewal in the loop.
  auto key = pki::testing::newKey();
  ClientIdentity id = bootIdentity(root, key.get());
  ASSERT_FALSE(id.chain_pem.empty());
  const std::string csr = csrPem(key.get(), kHost);

  // Load: two clients renewing in a loop, each call a new connection. Each
  // success records the DER of the intermediate its leaf came with.
  std::mutex mu;
  std::vector<std::string> issuers;   // guarded by mu, in completion order
  std::vector<std::string> failures;  // guarded by mu
  std::set<std::string> serials;      // guarded by mu
  std::atomic<bool> stop{false};
  auto client = [&] {
    while (!stop.load()) {
      Signed s = sign(port(), root, csr, std::nullopt, &id);
      std::lock_guard lock(mu);
      if (!s.status.ok()) {
        failures.push_back(describe(s.status));
        continue;
      }
      auto chain = certs(s.response.cert_chain());
      std::vector<pki::X509Ptr> inter;
      for (size_t i = 1; i < chain.size(); ++i)
        inter.push_back(pki::shareX509(chain[i].get()));
      auto v =
          pki::verifyChain(chain[0].get(), inter, ca.roots(), pki::testing::verifyAt(clock_.now()));
      if (!v.ok() || chain.size() != 2) {
        failures.push_back("bad chain: " + meshid::testing::messageOf(v));
        continue;
      }
      issuers.push_back(pki::certificateToDer(chain[1].get()));
      serials.insert(s.response.serial());
    }
  };
  auto count = [&](const X509* inter) {
    std::lock_guard lock(mu);
    std::string der = pki::certificateToDer(inter);
    return std::count(issuers.begin(), issuers.end(), der);
  };
  auto total = [&] {
    std::lock_guard lock(mu);
    return issuers.size();
  };
  std::thread t1(client), t2(client);
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& a;
    std::thread& b;
    ~Joiner() {
      stop = true;
      a.join();
      b.join();
    }
  } joiner{stop, t1, t2};

  ASSERT_TRUE(eventually([&] { return count(ca.intermediate.get()) >= 5; }, 10s));

  // Rotate in a new intermediate under the same root.
  // Not a structured binding: clang 14 cannot capture those in lambdas.
  auto rotated = issueIntermediate("rotated intermediate");
  auto& key2 = rotated.first;
  auto& inter2 = rotated.second;
  volume.publish(cacertsFiles(inter2.get(), key2.get(), {inter2.get()}, {ca.root.get()}));
  auto swapped_at = Steady::now();
  ASSERT_TRUE(eventually([&] { return count(inter2.get()) >= 1; }, 10s))
      << "no leaf from the new intermediate";
  auto picked_up = Steady::now() - swapped_at;
  EXPECT_LT(picked_up, 2s) << "poll interval is 200 ms";
  size_t after_swap = total();
  ASSERT_TRUE(eventually([&] { return total() >= after_swap + 10; }, 10s));
  {
    // Once the new intermediate appeared, nothing came from the old one any
    // more (two clients: allow the one call in flight on the other thread).
    std::lock_guard lock(mu);
    std::string new_der = pki::certificateToDer(inter2.get());
    size_t first_new = std::find(issuers.begin(), issuers.end(), new_der) - issuers.begin();
    size_t old_after = 0;
    for (size_t i = first_new; i < issuers.size(); ++i)
      old_after += issuers[i] != new_der;
    EXPECT_LE(old_after, 1u);
  }
  EXPECT_EQ(metric(server_->adminPort(), "meshid_ca_signer_reloads_total{result=\"ok\"}"), 1);

  // A broken set: the certificate of a third intermediate with a key that is
  // not its own. Refused; signing goes on with the second.
  auto broken = issueIntermediate("broken intermediate");
  auto& inter3 = broken.second;
  auto stray = pki::testing::newKey();
  volume.publish(cacertsFiles(inter3.get(), stray.get(), {inter3.get()}, {ca.root.get()}));
  ASSERT_TRUE(eventually(
      [&] {
        return metric(server_->adminPort(), "meshid_ca_signer_reloads_total{result=\"failed\"}") >=
               1;
      },
      10s))
      << httpGet(server_->adminPort(), "/metrics");
  size_t at_refusal = total();
  size_t inter2_at_refusal = count(inter2.get());
  ASSERT_TRUE(eventually([&] { return total() >= at_refusal + 10; }, 10s));
  EXPECT_EQ(count(inter3.get()), 0);
  EXPECT_EQ(count(inter2.get()) - inter2_at_refusal, total() - at_refusal)
      << "every leaf after the refusal comes from the second intermediate";
  EXPECT_EQ(metric(server_->adminPort(), "meshid_ca_signer_reloads_total{result=\"ok\"}"), 1);
  MESHID_EXPECT_CONTAINS(httpGet(server_->adminPort(), "/readyz"), "200");

  stop = true;
  std::lock_guard lock(mu);
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << failures.front();
  EXPECT_GE(issuers.size(), 25u);
  EXPECT_EQ(serials.size(), issuers.size()) << "every call got a certificate of its own";
  RecordProperty("requests", static_cast<int>(issuers.size()));
  std::cout << "signed " << issuers.size() << " certificates, each over a new connection, "
            << "new intermediate picked up after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(picked_up).count() << " ms\n";
}

// A root rotation through the files signer: the new set's roots include the
// old one and a new one; every open watch stream is pushed the new bundle
// unasked, and new leaves chain to the new root.
TEST_F(CaGrpcTest, WatchTrustBundlePushesARootRotation) {
  auto now = clock_.now();
  pki::testing::TestCa old_ca = pki::testing::TestCa::create({.now = now});
  pki::testing::TestCa new_ca =
      pki::testing::TestCa::create({.now = now, .root_name = "next root"});
  SecretVolume volume(dir_ / "cacerts");
  volume.publish(cacertsFiles(old_ca.intermediate.get(), old_ca.intermediate_key.get(),
                              {old_ca.intermediate.get()}, {old_ca.root.get()}));
  CaConfig c = config("signer:\n  type: files\n  dir: cacerts\n");
  c.signer.poll_interval = 100ms;
  start(c);
  std::string old_root = pki::certificateToPem(old_ca.root.get());
  auto stub = meshid::v1::MeshCA::NewStub(channel(port(), old_root));
  auto ctx = context(std::nullopt, 20s);
  auto reader = stub->WatchTrustBundle(ctx.get(), {});
  meshid::v1::TrustBundle first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(first.version(), 1u);
  EXPECT_EQ(first.roots_size(), 1);

  volume.publish(cacertsFiles(new_ca.intermediate.get(), new_ca.intermediate_key.get(),
                              {new_ca.intermediate.get()}, {new_ca.root.get(), old_ca.root.get()}));
  auto published = Steady::now();
  meshid::v1::TrustBundle pushed;
  ASSERT_TRUE(reader->Read(&pushed)) << describe(reader->Finish());
  EXPECT_LT(Steady::now() - published, 2s);
  EXPECT_EQ(pushed.version(), 2u);
  ASSERT_EQ(pushed.roots_size(), 2);
  EXPECT_EQ(pushed.roots(0), pki::certificateToPem(new_ca.root.get()));
  EXPECT_EQ(pushed.roots(1), old_root);
  EXPECT_NE(pushed.sha256(), first.sha256());
  // The gauge is set just after the watchers are told: it may trail the push.
  EXPECT_TRUE(eventually(
      [&] { return metric(server_->adminPort(), "meshid_ca_trust_bundle_version") == 2; }, 2s));

  // The serving certificate still chains to the old root, which clients
  // trust; new leaves come from the new intermediate.
  auto key = pki::testing::newKey();
  Signed s = sign(port(), old_root, csrPem(key.get(), kHost), joinToken());
  ASSERT_TRUE(s.status.ok()) << describe(s.status);
  EXPECT_EQ(s.response.bundle().version(), 2u);
  auto chain = certs(s.response.cert_chain());
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(X509_cmp(chain[1].get(), new_ca.intermediate.get()), 0);
  std::vector<pki::X509Ptr> inter;
  inter.push_back(pki::shareX509(chain[1].get()));
  MESHID_EXPECT_OK(pki::verifyChain(chain[0].get(), inter, certs(s.response.bundle().roots()),
                                    pki::testing::verifyAt(clock_.now())));
  ctx->TryCancel();
}

// Hostile and malformed calls get the exact code, record nothing, and leave
// the server serving.
TEST_F(CaGrpcTest, MalformedCallsAreRefusedAndNothingIsRecorded) {
  start(config());
  std::string root = selfSignedRootPem();
  auto key = pki::testing::newKey();
  std::string token = joinToken();  // opens db_
  auto count = [&] { return orThrow(db_->countIssuances()); };
  uint64_t before = count();

  // A garbage CSR spends the token (documented) and is INVALID_ARGUMENT.
  Signed garbage = sign(port(), root, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", token);
  EXPECT_EQ(garbage.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << describe(garbage.status);
  Signed spent = sign(port(), root, csrPem(key.get(), kHost), token);
  EXPECT_EQ(spent.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // Over the message size limit: refused by gRPC before any work.
  Signed huge = sign(port(), root, std::string(256 * 1024, 'A'), joinToken());
  EXPECT_EQ(huge.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << describe(huge.status);

  // A malformed authorization header is refused even beside a valid client
  // certificate: a credential that is present is never silently ignored.
  Signed boot = sign(port(), root, csrPem(key.get(), kHost), joinToken());
  ASSERT_TRUE(boot.status.ok()) << describe(boot.status);
  uint64_t after_boot = count();
  ClientIdentity id{orThrow(pki::privateKeyToPem(key.get())), ""};
  for (const auto& pem : boot.response.cert_chain())
    id.chain_pem += pem;
  {
    auto stub = meshid::v1::MeshCA::NewStub(channel(port(), root, &id));
    meshid::v1::SignRequest req;
    req.set_csr(csrPem(key.get(), kHost));
    meshid::v1::SignResponse resp;
    for (std::string header : {"Basic dXNlcjpwYXNz", "Bearer", "bearer ", "Token abc"}) {
      auto ctx = context();
      ctx->AddMetadata("authorization", header);
      grpc::Status st = stub->Sign(ctx.get(), req, &resp);
      EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << header;
    }
  }
  // A bearer JWT when Kubernetes authentication is off: nobody claims it.
  Signed jwt =
      sign(port(), root, csrPem(key.get(), kHost), std::string("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"));
  EXPECT_EQ(jwt.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // A client certificate from a foreign CA fails the TLS handshake.
  pki::testing::TestCa foreign = pki::testing::TestCa::create({.now = clock_.now()});
  auto foreign_leaf = foreign.issueLeaf(key.get(), kHost, 1h, clock_.now());
  ClientIdentity stranger{orThrow(pki::privateKeyToPem(key.get())),
                          pki::certificateToPem(foreign_leaf.get()) +
                              pki::certificateToPem(foreign.intermediate.get())};
  Signed refused = sign(port(), root, csrPem(key.get(), kHost), std::nullopt, &stranger);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << describe(refused.status);

  EXPECT_EQ(count(), after_boot);
  EXPECT_EQ(after_boot, before + 1);
  // Still serving.
  Signed ok = sign(port(), root, csrPem(key.get(), kHost), std::nullopt, &id);
  EXPECT_TRUE(ok.status.ok()) << describe(ok.status);
}

// (d) A restart on the same state dir serves the same bundle.
TEST_F(CaGrpcTest, RestartKeepsTheTrustBundle) {
  start(config());
  std::string root = selfSignedRootPem();
  meshid::v1::TrustBundle before;
  {
    auto stub = meshid::v1::MeshCA::NewStub(channel(port(), root));
    auto ctx = context();
    ASSERT_TRUE(stub->GetTrustBundle(ctx.get(), {}, &before).ok());
  }
  auto key = pki::testing::newKey();
  Signed issued = sign(port(), root, csrPem(key.get(), kHost), joinToken());
  ASSERT_TRUE(issued.status.ok()) << describe(issued.status);
  db_.reset();

  server_->shutdown(1s);
  server_.reset();
  start(config());

  EXPECT_EQ(selfSignedRootPem(), root);
  meshid::v1::TrustBundle after;
  auto stub = meshid::v1::MeshCA::NewStub(channel(port(), root));
  auto ctx = context();
  grpc::Status s = stub->GetTrustBundle(ctx.get(), {}, &after);
  ASSERT_TRUE(s.ok()) << describe(s);
  EXPECT_EQ(after.sha256(), before.sha256());
  EXPECT_EQ(after.version(), before.version());
  ASSERT_EQ(after.roots_size(), before.roots_size());
  for (int i = 0; i < after.roots_size(); ++i)
    EXPECT_EQ(after.roots(i), before.roots(i));

  // The issuance made before the restart is still on record, and the
  // certificate it made still renews against the restarted CA.
  auto db = orThrow(store::SqliteStore::open(config_->databasePath()));
  EXPECT_TRUE(orThrow(db->findIssuance(issued.response.serial())).has_value());
  ClientIdentity id{orThrow(pki::privateKeyToPem(key.get())), ""};
  for (const auto& pem : issued.response.cert_chain())
    id.chain_pem += pem;
  Signed renewed = sign(port(), root, csrPem(key.get(), kHost), std::nullopt, &id);
  EXPECT_TRUE(renewed.status.ok()) << describe(renewed.status);
}

// Callers of Istio's CreateCertificate still signing when the server shuts
// down get an answer (the certificate, or UNAVAILABLE/CANCELLED), never a
// hang or a crash, and shutdown ends within its grace.
TEST_F(CaGrpcTest, IstioCallsInFlightAtShutdownAllGetAnAnswer) {
  start(config());
  std::string root = selfSignedRootPem();
  auto key = pki::testing::newKey();
  ClientIdentity id = bootIdentity(root, key.get());
  ASSERT_FALSE(id.chain_pem.empty());
  const std::string csr = csrPem(key.get(), kHost);

  std::atomic<int> ok{0};
  std::mutex mu;
  std::multiset<grpc::StatusCode> last;  // guarded by mu: how each caller's loop ended
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t) {
    callers.emplace_back([&] {
      auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel(port(), root, &id));
      for (;;) {
        istio::v1::auth::IstioCertificateRequest req;
        req.set_csr(csr);
        istio::v1::auth::IstioCertificateResponse resp;
        auto ctx = context(std::nullopt, 10s);
        grpc::Status s = stub->CreateCertificate(ctx.get(), req, &resp);
        if (!s.ok()) {
          std::lock_guard lock(mu);
          last.insert(s.error_code());
          return;
        }
        EXPECT_GE(resp.cert_chain_size(), 2);
        ok.fetch_add(1);
      }
    });
  }
  while (ok.load() < 40)
    std::this_thread::sleep_for(10ms);
  auto started = std::chrono::steady_clock::now();
  server_->shutdown(2s);
  auto took = std::chrono::steady_clock::now() - started;
  for (auto& c : callers)
    c.join();
  EXPECT_LT(took, 4s);
  ASSERT_EQ(last.size(), 8u);
  for (grpc::StatusCode code : last) {
    EXPECT_TRUE(code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::CANCELLED)
        << "a caller ended with code " << code;
  }
}

// Callers that give up mid-call (their deadline fires and gRPC resets the
// stream while the call waits to be signed or is being answered) cost the CA
// nothing but the work: every other caller is answered, and so is the next.
// Under ASan (.ci/run) this is the transport's cancellation path.
TEST_F(CaGrpcTest, CallsAbandonedMidFlightLeaveTheServerServing) {
  start(config());
  std::string root = selfSignedRootPem();
  auto key = pki::testing::newKey();
  ClientIdentity id = bootIdentity(root, key.get());
  ASSERT_FALSE(id.chain_pem.empty());
  const std::string csr = csrPem(key.get(), kHost);

  std::mutex mu;
  std::map<grpc::StatusCode, int> codes;  // guarded by mu
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel(port(), root, &id));
      for (int i = 0; i < 40; ++i) {
        istio::v1::auth::IstioCertificateRequest req;
        req.set_csr(csr);
        istio::v1::auth::IstioCertificateResponse resp;
        // 1-4 ms: some answered, some abandoned before, during or after signing.
        auto ctx = context(std::nullopt, std::chrono::milliseconds(1 + (i + t) % 4));
        grpc::Status s = stub->CreateCertificate(ctx.get(), req, &resp);
        std::lock_guard lock(mu);
        ++codes[s.error_code()];
      }
    });
  }
  for (auto& c : callers)
    c.join();
  int total = 0;
  for (auto [code, n] : codes) {
    // Never UNAVAILABLE: gRPC C++ resets streams it never opened when a call
    // is cancelled at once, which nghttp2 alone would answer by ending the
    // connection under every other call on it (rpc/idle_reset_filter.h).
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::DEADLINE_EXCEEDED)
        << n << " calls ended with code " << code;
    total += n;
  }
  EXPECT_EQ(total, 160);
  EXPECT_GT(codes[grpc::StatusCode::DEADLINE_EXCEEDED], 0) << "no call was abandoned";

  // An abandoned watch stream is let go: the watcher count goes back down.
  auto mesh = meshid::v1::MeshCA::NewStub(channel(port(), root));
  auto watchers = [&] { return metric(server_->adminPort(), "meshid_ca_trust_bundle_watchers"); };
  EXPECT_EQ(watchers(), 0);
  {
    auto watch_ctx = context(std::nullopt, 10s);
    auto reader = mesh->WatchTrustBundle(watch_ctx.get(), {});
    meshid::v1::TrustBundle first;
    ASSERT_TRUE(reader->Read(&first));
    EXPECT_EQ(watchers(), 1);
    watch_ctx->TryCancel();
    while (reader->Read(&first)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_TRUE(eventually([&] { return watchers() == 0; }, 5s))
      << "a cancelled watch stream is still registered";

  // And the next caller is answered as usual.
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel(port(), root, &id));
  istio::v1::auth::IstioCertificateRequest req;
  req.set_csr(csr);
  istio::v1::auth::IstioCertificateResponse resp;
  auto ctx = context();
  grpc::Status s = stub->CreateCertificate(ctx.get(), req, &resp);
  EXPECT_TRUE(s.ok()) << describe(s);
  EXPECT_GE(resp.cert_chain_size(), 2);
}

// (e) Shutdown ends open watch streams with UNAVAILABLE at once, rather than
// holding the process for the grace period.
TEST_F(CaGrpcTest, ShutdownEndsWatchStreamsWithUnavailable) {
  start(config());
  std::string root = selfSignedRootPem();
  auto stub = meshid::v1::MeshCA::NewStub(channel(port(), root));
  auto ctx = context(std::nullopt, 30s);
  auto reader = stub->WatchTrustBundle(ctx.get(), {});
  meshid::v1::TrustBundle first;
  ASSERT_TRUE(reader->Read(&first));

  auto started = Steady::now();
  std::atomic<bool> shut{false};
  Steady::duration shutdown_took{};
  std::thread stopper([&] {
    server_->shutdown(10s);
    shutdown_took = Steady::now() - started;
    shut = true;
  });
  meshid::v1::TrustBundle more;
  bool extra = reader->Read(&more);
  grpc::Status status = reader->Finish();
  auto ended = Steady::now() - started;
  stopper.join();

  EXPECT_FALSE(extra);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << describe(status);
  EXPECT_LT(ended, 2s);
  EXPECT_LT(shutdown_took, 2s) << "shutdown waited for the grace period";

  // Nothing listens any more.
  auto late = sign(port(), root, "csr", std::nullopt);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

// Startup problems are errors from start(), never a half-running server:
// a taken gRPC or admin port, or a broken plugged-in CA.
TEST_F(CaGrpcTest, StartFailsCleanlyWhenItCannotServe) {
  start(config());
  auto other = [&](const std::string& name) {
    CaConfig c = config();
    c.state_dir = dir_ / name;
    return c;
  };
  CaConfig grpc_taken = other("b");
  grpc_taken.listen = "127.0.0.1:" + std::to_string(port());
  auto b = CaServer::start(grpc_taken, clock_);
  EXPECT_EQ(meshid::testing::errorOf(b).code, Code::kUnavailable);

  CaConfig admin_taken = other("c");
  admin_taken.admin_listen = "127.0.0.1:" + std::to_string(server_->adminPort());
  auto c = CaServer::start(admin_taken, clock_);
  EXPECT_EQ(meshid::testing::errorOf(c).code, Code::kUnavailable);

  SecretVolume broken(dir_ / "broken-cacerts");
  pki::testing::TestCa ca = pki::testing::TestCa::create({.now = clock_.now()});
  auto stray = pki::testing::newKey();
  broken.publish(
      cacertsFiles(ca.intermediate.get(), stray.get(), {ca.intermediate.get()}, {ca.root.get()}));
  CaConfig files = other("d");
  files.signer.type = "files";
  files.signer.dir = broken.path();
  auto d = CaServer::start(files, clock_);
  EXPECT_FALSE(d.ok());

  // The first server is unaffected.
  auto key = pki::testing::newKey();
  Signed s = sign(port(), selfSignedRootPem(), csrPem(key.get(), kHost), joinToken());
  EXPECT_TRUE(s.status.ok()) << describe(s.status);
}

// The admin port: health, readiness and metrics in Prometheus text.
TEST_F(CaGrpcTest, AdminPortServesHealthReadinessAndMetrics) {
  start(config());
  int admin = server_->adminPort();
  EXPECT_EQ(httpGet(admin, "/healthz").substr(0, 3), "200");
  EXPECT_EQ(httpGet(admin, "/readyz").substr(0, 3), "200");
  EXPECT_EQ(metric(admin, "meshid_ca_ready"), 1);
  EXPECT_EQ(metric(admin, "meshid_ca_trust_bundle_version"), 1);
  std::string debug = httpGet(admin, "/debug/ca");
  MESHID_EXPECT_CONTAINS(debug, "\"trust_domain\": \"example.org\"");
  MESHID_EXPECT_NOT_CONTAINS(debug, "PRIVATE KEY");
}

// Retention: the running CA deletes the records of certificates expired
// longer than store.retention, counts them, and keeps everything else.
TEST_F(CaGrpcTest, ExpiredRecordsAreDeletedAfterTheRetention) {
  start(config("store:\n  retention: 1h\n  prune_interval: 1s\n"));
  std::string root = selfSignedRootPem();
  auto key = pki::testing::newKey();
  Signed fresh = sign(port(), root, csrPem(key.get(), kHost), joinToken());
  ASSERT_TRUE(fresh.status.ok()) << describe(fresh.status);
  const SystemTime now = clock_.now();
  auto row = [&](std::string serial, SystemTime not_after) {
    return store::IssuanceRecord{.serial = std::move(serial),
                                 .spiffe_id = std::string(kHost),
                                 .not_before = not_after - 24h,
                                 .not_after = not_after,
                                 .signer = "selfsigned",
                                 .caller = std::string(kHost),
                                 .method = "join_token",
                                 .api = "meshid",
                                 .issued_at = not_after - 24h};
  };
  // Written beside the server, as an older CA run would have left them.
  MESHID_ASSERT_OK(db_->recordIssuance(row("0bad", now - 2h)));     // due
  MESHID_ASSERT_OK(db_->recordIssuance(row("0bae", now - 30min)));  // expired, within retention
  int admin = server_->adminPort();
  ASSERT_TRUE(eventually(
      [&] { return metric(admin, "meshid_ca_records_pruned_total{table=\"issuances\"}") >= 1; },
      10s));
  EXPECT_FALSE(orThrow(db_->findIssuance("0bad"), "find").has_value());
  EXPECT_TRUE(orThrow(db_->findIssuance("0bae"), "find").has_value());
  EXPECT_TRUE(orThrow(db_->findIssuance(fresh.response.serial()), "find").has_value());
  EXPECT_EQ(metric(admin, "meshid_ca_records_pruned_total{table=\"issuances\"}"), 1);
  EXPECT_GE(metric(admin, "meshid_ca_record_prune_runs_total{result=\"ok\"}"), 1);
  MESHID_EXPECT_CONTAINS(httpGet(admin, "/debug/ca"), "\"records_retention\": \"1h\"");
}

// The CA's own serving certificate is renewed at half-life and new
// connections get the new one without a restart; calls keep working.
TEST_F(CaGrpcTest, ServingCertificateIsRenewedWithoutRestart) {
  start(config("serving:\n  lifetime: 4s\n"));
  std::string root = selfSignedRootPem();
  auto servedSerial = [&]() -> std::string {
    pki::TlsProbeOptions probe;
    probe.host = "127.0.0.1";
    probe.port = static_cast<uint16_t>(port());
    auto r = pki::probeTls(probe);
    return r.ok() ? pki::serialHex(r->presented.front().get()) : std::string();
  };
  std::string first = servedSerial();
  ASSERT_FALSE(first.empty());
  // Renewal at 2 s, re-read by gRPC within 1 s after that.
  EXPECT_TRUE(eventually(
      [&] {
        auto s = servedSerial();
        return !s.empty() && s != first;
      },
      8s))
      << "still serving " << first;
  auto stub = meshid::v1::MeshCA::NewStub(channel(port(), root));
  meshid::v1::TrustBundle bundle;
  auto ctx = context();
  grpc::Status s = stub->GetTrustBundle(ctx.get(), {}, &bundle);
  EXPECT_TRUE(s.ok()) << describe(s);
}

// The Kubernetes JWKS fetched over HTTPS (jwks_url + jwks_ca_file): a token
// signed by the served key is accepted, one from another key is refused.
TEST_F(CaGrpcTest, JwksFetchedOverHttpsAuthenticatesServiceAccountTokens) {
  // An HTTPS server for the JWKS, with a certificate from a test CA.
  auto web_ca = pki::testing::TestCa::create({.now = clock_.now() - 1h});
  auto web_key = pki::testing::newKey(pki::KeyType::kEcP256);
  pki::SvidRequest web_req{.public_key = web_key.get(),
                           .spiffe_id = orThrow(pki::SpiffeId::parse("spiffe://example.org/jwks")),
                           .lifetime = std::chrono::seconds(3600),
                           .now = clock_.now(),
                           .ip_addresses = {"127.0.0.1"}};
  auto web_cert =
      orThrow(pki::issueX509Svid(web_req, web_ca.intermediate.get(), *web_ca.intermediate_signer),
              "web cert");
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "web.pem",
                              pki::certificateToPem(web_cert.get()) +
                                  pki::certificateToPem(web_ca.intermediate.get()),
                              0644)
                  .ok());
  ASSERT_TRUE(
      writeFileAtomic(dir_.path() / "web.key", orThrow(pki::privateKeyToPem(web_key.get())), 0600)
          .ok());
  ASSERT_TRUE(
      writeFileAtomic(dir_.path() / "web-ca.pem", pki::certificateToPem(web_ca.root.get()), 0644)
          .ok());
  auto signing_key = pki::testing::newKey(pki::KeyType::kRsa2048);
  std::string jwks = "{\"keys\":[" + orThrow(pki::jwkFromPublicKey(signing_key.get(), "k1")) + "]}";
  httplib::SSLServer https((dir_.path() / "web.pem").c_str(), (dir_.path() / "web.key").c_str());
  ASSERT_TRUE(https.is_valid());
  std::atomic<int> fetches{0};
  https.Get("/openid/v1/jwks", [&](const httplib::Request&, httplib::Response& res) {
    ++fetches;
    res.set_content(jwks, "application/json");
  });
  int web_port = https.bind_to_any_port("127.0.0.1");
  std::thread web([&] { https.listen_after_bind(); });

  start(config("authentication:\n  kubernetes:\n    jwks_url: https://127.0.0.1:" +
               std::to_string(web_port) +
               "/openid/v1/jwks\n    jwks_ca_file: web-ca.pem\n"
               "    issuer: https://kubernetes.default.svc\n"));
  EXPECT_GE(fetches.load(), 1);
  std::string root = selfSignedRootPem();
  auto token = [&](const EVP_PKEY* key) {
    auto now = toUnixSeconds(clock_.now());
    nlohmann::json claims = {
        {"iss", "https://kubernetes.default.svc"},
        {"aud", {"istio-ca"}},
        {"sub", "system:serviceaccount:default:sleep"},
        {"iat", now},
        {"exp", now + 600},
        {"kubernetes.io",
         {{"namespace", "default"}, {"serviceaccount", {{"name", "sleep"}, {"uid", "u1"}}}}}};
    return orThrow(pki::signJwt({{"alg", "RS256"}, {"kid", "k1"}}, claims, key), "jwt");
  };
  const std::string id = "spiffe://example.org/ns/default/sa/sleep";
  auto key = pki::testing::newKey(pki::KeyType::kEcP256);
  Signed ok = sign(port(), root, csrPem(key.get(), id), token(signing_key.get()));
  EXPECT_TRUE(ok.status.ok()) << describe(ok.status);
  EXPECT_EQ(ok.response.spiffe_id(), id);
  auto stranger = pki::testing::newKey(pki::KeyType::kRsa2048);
  Signed refused = sign(port(), root, csrPem(key.get(), id), token(stranger.get()));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << describe(refused.status);
  server_->shutdown(0ms);
  https.stop();
  web.join();
}

}  // namespace
}  // namespace meshid::ca
