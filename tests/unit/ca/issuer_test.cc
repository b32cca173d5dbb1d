#include "ca/issuer.h"

#include "ca/signing_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/csr.h"
#include "store/sqlite_store.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using meshid::testing::TempDir;
using pki::testing::newKey;
using pki::testing::signerFor;
using pki::testing::spiffeId;
using pki::testing::t0;
using pki::testing::TestCa;
using pki::testing::TestCaOptions;

constexpr std::string_view kSelf = "spiffe://example.org/ns/app/sa/web";
constexpr std::string_view kTokenPrefix = "tok:";

// Claims bearer tokens "tok:<spiffe id>"; "tok:bad" is refused. Everything
// else is not its kind.
class TokenAuthenticator final : public Authenticator {
 public:
  std::string_view name() const override { return "token"; }
  Result<std::optional<Identity>> authenticate(const CallerCredentials& c) override {
    ++calls;
    if (!c.bearer_token || !c.bearer_token->starts_with(kTokenPrefix)) {
      return std::optional<Identity>();
    }
    std::string_view rest = std::string_view(*c.bearer_token).substr(kTokenPrefix.size());
    if (rest == "bad")
      return Error::unauthenticated("bad test token");
    if (rest == "down")
      return Error::unavailable("token checker down");
    auto id = pki::SpiffeId::parse(rest);
    if (!id.ok())
      return Error::unauthenticated("test token names no identity");
    return std::optional<Identity>(Identity{std::move(id).value(), "test", ""});
  }
  std::atomic<int> calls{0};
};

// Authenticates kSelf, but only after the test releases it: holds a signing
// slot for as long as the test wants.
class BlockingAuthenticator final : public Authenticator {
 public:
  std::string_view name() const override { return "blocking"; }
  Result<std::optional<Identity>> authenticate(const CallerCredentials&) override {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return released_; });
    return std::optional<Identity>(Identity{spiffeId(kSelf), "test", ""});
  }
  bool waitEntered(int n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return entered_ >= n; });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;        // guarded by mu_
  bool released_ = false;  // guarded by mu_
};

// A real store whose issuance log is broken (disk full, database locked).
class UnrecordingStore final : public store::Store {
 public:
  explicit UnrecordingStore(store::Store& real) : real_(real) {}
  Result<void> recordIssuance(const store::IssuanceRecord&) override {
    ++record_attempts;
    return Error::unavailable("disk I/O error");
  }
  Result<std::optional<store::IssuanceRecord>> findIssuance(const std::string& s) override {
    return real_.findIssuance(s);
  }
  Result<uint64_t> countIssuances() override { return real_.countIssuances(); }
  Result<void> createJoinToken(const store::JoinTokenRecord& r) override {
    return real_.createJoinToken(r);
  }
  Result<store::JoinTokenRecord> consumeJoinToken(const std::string& h, SystemTime now) override {
    return real_.consumeJoinToken(h, now);
  }
  Result<store::BundleVersion> saveBundle(const std::string& pem, const std::string& sha,
                                          SystemTime now) override {
    return real_.saveBundle(pem, sha, now);
  }
  Result<std::optional<store::BundleVersion>> latestBundle() override {
    return real_.latestBundle();
  }
  Result<store::PruneResult> pruneExpired(SystemTime before, uint64_t max_rows) override {
    return real_.pruneExpired(before, max_rows);
  }
  Result<std::vector<store::IssuanceRecord>> listIssuances(const store::IssuanceQuery& q) override {
    return real_.listIssuances(q);
  }
  Result<int> schemaVersion() override { return real_.schemaVersion(); }
  int record_attempts = 0;

 private:
  store::Store& real_;
};

std::shared_ptr<const SigningMaterial> materialOf(const TestCa& ca) {
  return orThrow(
      makeSigningMaterial(pki::shareX509(ca.intermediate.get()), signerFor(ca.intermediate_key),
                          ca.intermediates(), ca.roots()),
      "material");
}

// The issued leaf as a certificate object, parsed back from its DER.
pki::X509Ptr leafOf(const SignResult& r) {
  auto certs = orThrow(pki::parseCertificates(r.leaf.der), "leaf der");
  if (certs.size() != 1)
    throw std::runtime_error("leaf der holds more than one certificate");
  return std::move(certs.front());
}

// The intermediates sent after the leaf.
const std::vector<pki::X509Ptr>& chainOf(const SignResult& r) {
  return r.signer->chain;
}

std::string csrPem(const EVP_PKEY* key, std::string_view id) {
  return pki::csrToPem(orThrow(pki::buildCsr(key, spiffeId(id)), "csr").get());
}

CallerCredentials bearer(std::string token) {
  CallerCredentials c;
  c.bearer_token = std::move(token);
  c.peer = "ipv4:127.0.0.1:1234";
  return c;
}

class IssuerTest : public ::testing::Test {
 protected:
  void SetUp() override { build(TestCaOptions{}); }

  void build(const TestCaOptions& options) {
    issuer_.reset();
    ca_ = std::make_unique<TestCa>(TestCa::create(options));
    authority_ = std::make_unique<LocalAuthority>("selfsigned", materialOf(*ca_));
    bundle_ = std::make_unique<TrustBundle>(ca_->trust_domain, *store_, clock_);
    orThrow(bundle_->update(ca_->roots()), "bundle");
  }

  Issuer& issuer(IssuerConfig config = defaultConfig(), store::Store* store = nullptr) {
    std::vector<std::unique_ptr<Authenticator>> authn;
    auto token = std::make_unique<TokenAuthenticator>();
    token_ = token.get();
    authn.push_back(std::move(token));
    for (auto& a : extra_authenticators_)
      authn.push_back(std::move(a));
    extra_authenticators_.clear();
    issuer_ = std::make_unique<Issuer>(std::move(authn), *authority_, *bundle_,
                                       store ? *store : *store_, metrics_, clock_, config);
    return *issuer_;
  }

  // An issuer with `limit` signing slots whose authentication waits until the
  // test opens *gate: holds slots for as long as the test wants.
  Issuer& gatedIssuer(size_t limit, BlockingAuthenticator** gate) {
    auto blocking = std::make_unique<BlockingAuthenticator>();
    *gate = blocking.get();
    extra_authenticators_.push_back(std::move(blocking));
    IssuerConfig config = defaultConfig();
    config.max_concurrent_signings = limit;
    return issuer(config);
  }

  static IssuerConfig defaultConfig() {
    IssuerConfig c;
    c.policy.default_ttl = 12h;
    c.policy.max_ttl = 24h;
    return c;
  }

  SignCall call(std::optional<std::string> token, const std::string& csr, Api api = Api::kMeshid,
                int64_t ttl = 0) {
    SignCall c;
    c.api = api;
    if (token)
      c.credentials = bearer(*token);
    c.csr = csr;
    c.requested_ttl_seconds = ttl;
    return c;
  }

  uint64_t recorded() { return orThrow(store_->countIssuances(), "count"); }

  TempDir dir_;
  FakeClock clock_{t0()};
  std::unique_ptr<store::SqliteStore> store_ = orThrow(store::SqliteStore::open(dir_ / "ca.db"));
  CaMetrics metrics_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<LocalAuthority> authority_;
  std::unique_ptr<TrustBundle> bundle_;
  std::vector<std::unique_ptr<Authenticator>> extra_authenticators_;
  TokenAuthenticator* token_ = nullptr;
  std::unique_ptr<Issuer> issuer_;
  pki::EvpPkeyPtr key_ = newKey();
};

TEST_F(IssuerTest, NoCredentialIsUnauthenticatedAndNothingRecorded) {
  auto r = issuer().sign(call(std::nullopt, csrPem(key_.get(), kSelf)));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  EXPECT_EQ(recorded(), 0u);
  MESHID_EXPECT_CONTAINS(metrics_.serialize(),
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"no_credential\"} 1");
}

// A bearer token no authenticator recognises is no credential at all.
TEST_F(IssuerTest, UnclaimedTokenIsUnauthenticated) {
  auto r = issuer().sign(call("something-else", csrPem(key_.get(), kSelf)));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  EXPECT_EQ(recorded(), 0u);
}

TEST_F(IssuerTest, BadCredentialIsUnauthenticatedAndNothingRecorded) {
  auto r = issuer().sign(call("tok:bad", csrPem(key_.get(), kSelf)));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "bad test token");
  EXPECT_EQ(recorded(), 0u);
  MESHID_EXPECT_CONTAINS(metrics_.serialize(),
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"bad_credential\"} 1");
}

TEST_F(IssuerTest, AuthenticatorOutageIsUnavailable) {
  auto r = issuer().sign(call("tok:down", csrPem(key_.get(), kSelf)));
  EXPECT_EQ(errorOf(r).code, Code::kUnavailable);
  EXPECT_EQ(recorded(), 0u);
}

TEST_F(IssuerTest, ForeignIdentityIsPermissionDeniedAndNothingRecorded) {
  auto r = issuer().sign(
      call("tok:" + std::string(kSelf), csrPem(key_.get(), "spiffe://example.org/ns/app/sa/db")));
  EXPECT_EQ(errorOf(r).code, Code::kPermissionDenied);
  EXPECT_EQ(recorded(), 0u);
  MESHID_EXPECT_CONTAINS(metrics_.serialize(),
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"foreign_identity\"} 1");
}

TEST_F(IssuerTest, GarbageCsrIsInvalidArgumentAndNothingRecorded) {
  for (std::string csr : {std::string(), std::string("not a csr"),
                          std::string("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END "
                                      "CERTIFICATE REQUEST-----\n"),
                          std::string(64 * 1024, 'A')}) {
    auto r = issuer().sign(call("tok:" + std::string(kSelf), csr));
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << csr.substr(0, 40);
  }
  EXPECT_EQ(recorded(), 0u);
}

TEST_F(IssuerTest, OverMaximumLifetimeOnMeshidApiIsInvalidArgument) {
  auto r = issuer().sign(
      call("tok:" + std::string(kSelf), csrPem(key_.get(), kSelf), Api::kMeshid, 48 * 3600));
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  EXPECT_EQ(recorded(), 0u);
}

TEST_F(IssuerTest, SuccessRecordsOneIssuanceAndReturnsLeafChainAndBundle) {
  std::string csr = csrPem(key_.get(), kSelf);
  auto r = issuer().sign(call("tok:" + std::string(kSelf), csr, Api::kIstio, 3600));
  MESHID_ASSERT_OK(r);

  EXPECT_EQ(r->spiffe_id.str(), kSelf);
  pki::X509Ptr leaf = leafOf(*r);
  EXPECT_EQ(r->leaf.pem, pki::certificateToPem(leaf.get()));
  EXPECT_TRUE(pki::samePublicKey(X509_get0_pubkey(leaf.get()), key_.get()));
  EXPECT_EQ(pki::uriSans(leaf.get()), std::vector<std::string>{std::string(kSelf)});
  ASSERT_EQ(chainOf(*r).size(), 1u);
  EXPECT_EQ(X509_cmp(chainOf(*r)[0].get(), ca_->intermediate.get()), 0);
  ASSERT_EQ(r->signer->chain_pem.size(), 1u);
  EXPECT_EQ(r->signer->chain_pem[0], pki::certificateToPem(ca_->intermediate.get()));
  ASSERT_TRUE(r->bundle);
  EXPECT_EQ(r->bundle->version, 1u);
  ASSERT_EQ(r->bundle->roots.size(), 1u);
  EXPECT_EQ(X509_cmp(r->bundle->roots[0].get(), ca_->root.get()), 0);
  EXPECT_EQ(r->leaf.serial_hex, pki::serialHex(leaf.get()));
  EXPECT_EQ(r->leaf.not_before, pki::notBefore(leaf.get()));
  EXPECT_EQ(r->leaf.not_after, pki::notAfter(leaf.get()));
  MESHID_EXPECT_OK(
      pki::verifyChain(leaf.get(), chainOf(*r), r->bundle->roots, pki::testing::verifyAt(t0())));
  EXPECT_EQ(pki::notAfter(leaf.get()), t0() + 1h);

  EXPECT_EQ(recorded(), 1u);
  auto rec = store_->findIssuance(r->leaf.serial_hex);
  MESHID_ASSERT_OK(rec);
  ASSERT_TRUE(rec->has_value());
  const store::IssuanceRecord& got = **rec;
  EXPECT_EQ(got.serial, r->leaf.serial_hex);
  EXPECT_EQ(got.spiffe_id, kSelf);
  EXPECT_EQ(got.not_before, pki::notBefore(leaf.get()));
  EXPECT_EQ(got.not_after, pki::notAfter(leaf.get()));
  EXPECT_EQ(got.signer, "selfsigned");
  EXPECT_EQ(got.caller, kSelf);
  EXPECT_EQ(got.method, "test");
  EXPECT_EQ(got.api, "istio");
  EXPECT_EQ(got.issued_at, t0());

  std::string metrics = metrics_.serialize();
  MESHID_EXPECT_CONTAINS(metrics, "meshid_ca_certificates_issued_total{signer=\"selfsigned\"} 1");
  MESHID_EXPECT_CONTAINS(metrics, "meshid_ca_requests_total{api=\"istio\",result=\"ok\"} 1");
  MESHID_EXPECT_CONTAINS(metrics, "meshid_ca_signings_in_flight 0");
}

TEST_F(IssuerTest, EachSigningGetsItsOwnSerialAndRecord) {
  Issuer& iss = issuer();
  auto a = iss.sign(call("tok:" + std::string(kSelf), csrPem(key_.get(), kSelf)));
  auto b = iss.sign(call("tok:" + std::string(kSelf), csrPem(key_.get(), kSelf)));
  MESHID_ASSERT_OK(a);
  MESHID_ASSERT_OK(b);
  EXPECT_NE(a->leaf.serial_hex, b->leaf.serial_hex);
  EXPECT_EQ(recorded(), 2u);
}

TEST_F(IssuerTest, AuthenticatorsAreTriedInOrderUntilOneClaims) {
  // The first (token) authenticator does not claim a "claim:" token; the
  // second does.
  class ClaimAll final : public Authenticator {
   public:
    std::string_view name() const override { return "claim_all"; }
    Result<std::optional<Identity>> authenticate(const CallerCredentials&) override {
      return std::optional<Identity>(Identity{spiffeId(kSelf), "claim_all", ""});
    }
  };
  extra_authenticators_.push_back(std::make_unique<ClaimAll>());
  Issuer& iss = issuer();
  auto r = iss.sign(call("claim:x", csrPem(key_.get(), kSelf)));
  MESHID_ASSERT_OK(r);
  EXPECT_EQ((*store_->findIssuance(r->leaf.serial_hex))->method, "claim_all");
  EXPECT_EQ(token_->calls.load(), 1);
  // A refusal by the first stops the search: the second never overrides it.
  auto refused = iss.sign(call("tok:bad", csrPem(key_.get(), kSelf)));
  EXPECT_EQ(errorOf(refused).code, Code::kUnauthenticated);
}

TEST_F(IssuerTest, StoreFailureWithholdsTheCertificate) {
  UnrecordingStore broken(*store_);
  auto r = issuer(defaultConfig(), &broken)
               .sign(call("tok:" + std::string(kSelf), csrPem(key_.get(), kSelf)));
  EXPECT_EQ(errorOf(r).code, Code::kUnavailable);
  EXPECT_EQ(broken.record_attempts, 1);
  EXPECT_EQ(recorded(), 0u);
  // The message tells the caller to retry and leaks no internals.
  MESHID_EXPECT_NOT_CONTAINS(errorOf(r).message, "disk I/O");
  MESHID_EXPECT_CONTAINS(metrics_.serialize(),
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"store_failed\"} 1");
  MESHID_EXPECT_NOT_CONTAINS(metrics_.serialize(), "meshid_ca_certificates_issued_total{");
}

TEST_F(IssuerTest, OverloadAnswersResourceExhaustedAtOnce) {
  BlockingAuthenticator* gate = nullptr;
  Issuer& iss = gatedIssuer(1, &gate);
  std::string csr = csrPem(key_.get(), kSelf);

  // The first call takes the only slot and waits inside authentication.
  auto first = std::async(std::launch::async, [&] { return iss.sign(call("x", csr)); });
  if (!gate->waitEntered(1, 5s)) {
    gate->release();
    FAIL() << "first call never reached authentication";
  }

  // The second is refused without waiting: if it queued, this future would
  // not be ready before the first call is released.
  auto second = std::async(std::launch::async, [&] { return iss.sign(call("x", csr)); });
  bool answered = second.wait_for(5s) == std::future_status::ready;
  gate->release();
  ASSERT_TRUE(answered) << "second call waited for the slot instead of being refused";
  auto refused = second.get();
  EXPECT_EQ(errorOf(refused).code, Code::kResourceExhausted);

  auto done = first.get();
  MESHID_EXPECT_OK(done);
  EXPECT_EQ(recorded(), 1u);
  MESHID_EXPECT_CONTAINS(metrics_.serialize(),
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"overloaded\"} 1");

  // The slot is free again once the first call is done.
  MESHID_EXPECT_OK(iss.sign(call("x", csr)));
}

TEST_F(IssuerTest, LeafNeverOutlivesTheIntermediate) {
  TestCaOptions options;
  options.intermediate_lifetime = 2h;
  build(options);
  auto r = issuer().sign(
      call("tok:" + std::string(kSelf), csrPem(key_.get(), kSelf), Api::kIstio, 24 * 3600));
  MESHID_ASSERT_OK(r);
  EXPECT_EQ(pki::notAfter(leafOf(*r).get()), pki::notAfter(ca_->intermediate.get()));
  EXPECT_EQ((*store_->findIssuance(r->leaf.serial_hex))->not_after,
            pki::notAfter(ca_->intermediate.get()));
}

TEST_F(IssuerTest, ExpiredIntermediateRefusesAndRecordsNothing) {
  Issuer& iss = issuer();
  clock_.advance(400 * 24h);  // past the 365-day intermediate
  auto r = iss.sign(call("tok:" + std::string(kSelf), csrPem(key_.get(), kSelf)));
  EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition);
  EXPECT_EQ(recorded(), 0u);
  MESHID_EXPECT_CONTAINS(metrics_.serialize(),
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"signer_unavailable\"} 1");
}

TEST_F(IssuerTest, SigningUsesTheAuthorityMaterialOfTheMoment) {
  Issuer& iss = issuer();
  TestCa next = TestCa::create();
  authority_->replace(materialOf(next));
  auto r = iss.sign(call("tok:" + std::string(kSelf), csrPem(key_.get(), kSelf)));
  MESHID_ASSERT_OK(r);
  ASSERT_EQ(chainOf(*r).size(), 1u);
  EXPECT_EQ(X509_cmp(chainOf(*r)[0].get(), next.intermediate.get()), 0);
  MESHID_EXPECT_OK(
      pki::verifyChain(leafOf(*r).get(), chainOf(*r), next.roots(), pki::testing::verifyAt(t0())));
}

TEST_F(IssuerTest, AuthenticateAloneSetsReason) {
  Issuer& iss = issuer();
  DenialReason reason = DenialReason::kOverloaded;
  auto none = iss.authenticate(CallerCredentials{}, &reason);
  EXPECT_EQ(errorOf(none).code, Code::kUnauthenticated);
  EXPECT_EQ(reason, DenialReason::kNoCredential);
  auto bad = iss.authenticate(bearer("tok:bad"), &reason);
  EXPECT_EQ(errorOf(bad).code, Code::kUnauthenticated);
  EXPECT_EQ(reason, DenialReason::kBadCredential);
  auto ok = iss.authenticate(bearer("tok:" + std::string(kSelf)), &reason);
  MESHID_ASSERT_OK(ok);
  EXPECT_EQ(ok->spiffe_id.str(), kSelf);
}

// A batch judges each call on its own and records the good ones together.
TEST_F(IssuerTest, BatchSignsEachCallOnItsOwnAndRecordsTheIssuedOnes) {
  Issuer& iss = issuer();
  std::string good = csrPem(key_.get(), kSelf);
  std::string foreign = csrPem(key_.get(), "spiffe://example.org/ns/app/sa/db");
  std::string garbage = "garbage";  // calls view their CSR: it must outlive them
  std::vector<SignCall> calls = {call("tok:" + std::string(kSelf), good), call("tok:bad", good),
                                 call("tok:" + std::string(kSelf), foreign),
                                 call("tok:" + std::string(kSelf), garbage),
                                 call("tok:" + std::string(kSelf), good)};
  auto results = iss.signBatch(calls);
  ASSERT_EQ(results.size(), calls.size());
  MESHID_EXPECT_OK(results[0]);
  EXPECT_EQ(errorOf(results[1]).code, Code::kUnauthenticated);
  EXPECT_EQ(errorOf(results[2]).code, Code::kPermissionDenied);
  EXPECT_EQ(errorOf(results[3]).code, Code::kInvalidArgument);
  MESHID_EXPECT_OK(results[4]);
  EXPECT_NE(results[0]->leaf.serial_hex, results[4]->leaf.serial_hex);
  EXPECT_EQ(recorded(), 2u);
  for (size_t i : {0u, 4u}) {
    auto found = orThrow(store_->findIssuance(results[i]->leaf.serial_hex), "find");
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->spiffe_id, kSelf);
  }
  std::string m = metrics_.serialize();
  MESHID_EXPECT_CONTAINS(m, "meshid_ca_denials_total{api=\"meshid\",reason=\"bad_credential\"} 1");
  MESHID_EXPECT_CONTAINS(m,
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"foreign_identity\"} 1");
  MESHID_EXPECT_CONTAINS(m, "meshid_ca_signing_batch_size_count 1");
  MESHID_EXPECT_CONTAINS(m, "meshid_ca_signing_batch_size_sum 5");
  MESHID_EXPECT_CONTAINS(m, "meshid_ca_requests_total{api=\"meshid\",result=\"ok\"} 2");
  MESHID_EXPECT_CONTAINS(m, "meshid_ca_requests_total{api=\"meshid\",result=\"denied\"} 3");
}

// One failed transaction withholds every certificate of the batch.
TEST_F(IssuerTest, BatchWhoseRecordFailsWithholdsEveryCertificate) {
  UnrecordingStore broken(*store_);
  Issuer& iss = issuer(defaultConfig(), &broken);
  std::string good = csrPem(key_.get(), kSelf);
  std::vector<SignCall> calls = {call("tok:" + std::string(kSelf), good), call("tok:bad", good),
                                 call("tok:" + std::string(kSelf), good)};
  auto results = iss.signBatch(calls);
  EXPECT_EQ(errorOf(results[0]).code, Code::kUnavailable);
  EXPECT_EQ(errorOf(results[1]).code, Code::kUnauthenticated);
  EXPECT_EQ(errorOf(results[2]).code, Code::kUnavailable);
  EXPECT_EQ(recorded(), 0u);
  MESHID_EXPECT_CONTAINS(metrics_.serialize(),
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"store_failed\"} 2");
}

// Calls from many threads through the queue: each answered exactly once,
// each with a certificate of its own, all recorded.
TEST_F(IssuerTest, QueueAnswersEveryCallOnceFromManyThreads) {
  Issuer& iss = issuer();
  SigningQueue queue(iss, 2, 4);
  std::string csr = csrPem(key_.get(), kSelf);
  constexpr int kThreads = 4, kPerThread = 25;
  std::mutex mu;
  std::set<std::string> serials;
  std::atomic<int> answers{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        std::promise<void> answered;
        queue.submit(call("tok:" + std::string(kSelf), csr), [&](Result<SignResult> r) {
          ++answers;
          if (r.ok()) {
            std::lock_guard lock(mu);
            serials.insert(r->leaf.serial_hex);
          } else {
            ++failures;
          }
          answered.set_value();
        });
        answered.get_future().wait();
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(answers, kThreads * kPerThread);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(serials.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(recorded(), static_cast<uint64_t>(kThreads * kPerThread));
}

// At its limit the queue refuses at once instead of queueing; after stop()
// every call is refused as UNAVAILABLE.
TEST_F(IssuerTest, QueueAtItsLimitRefusesAtOnceAndStoppedQueueRefusesAll) {
  BlockingAuthenticator* gate = nullptr;
  Issuer& iss = gatedIssuer(2, &gate);
  std::string csr = csrPem(key_.get(), kSelf);
  SigningQueue queue(iss, 1, 1);

  std::promise<Result<SignResult>> first, second;
  queue.submit(call("x", csr), [&](Result<SignResult> r) { first.set_value(std::move(r)); });
  queue.submit(call("x", csr), [&](Result<SignResult> r) { second.set_value(std::move(r)); });
  if (!gate->waitEntered(1, 5s)) {
    gate->release();
    FAIL() << "the worker never started signing";
  }
  // Both slots are taken (one signing, one queued): a third is answered
  // before submit returns.
  std::optional<Result<SignResult>> third;
  queue.submit(call("x", csr), [&](Result<SignResult> r) { third = std::move(r); });
  ASSERT_TRUE(third.has_value()) << "the third call was queued instead of refused";
  EXPECT_EQ(errorOf(*third).code, Code::kResourceExhausted);
  gate->release();
  MESHID_EXPECT_OK(first.get_future().get());
  MESHID_EXPECT_OK(second.get_future().get());
  EXPECT_EQ(recorded(), 2u);
  MESHID_EXPECT_CONTAINS(metrics_.serialize(),
                         "meshid_ca_denials_total{api=\"meshid\",reason=\"overloaded\"} 1");

  queue.stop();
  std::optional<Result<SignResult>> late;
  queue.submit(call("x", csr), [&](Result<SignResult> r) { late = std::move(r); });
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(errorOf(*late).code, Code::kUnavailable);
}

// Without workers of its own, the queue signs only when asked (the gRPC
// loops ask after each read): a batch at a time, in arrival order, and
// stop() signs what is still waiting.
TEST_F(IssuerTest, QueueWithoutWorkersSignsOnTheCallersThreadABatchAtATime) {
  Issuer& iss = issuer();
  SigningQueue queue(iss, 0, 4);
  std::string csr = csrPem(key_.get(), kSelf);
  std::vector<int> answered;
  std::set<std::thread::id> threads;
  for (int i = 0; i < 10; ++i) {
    queue.submit(call("tok:" + std::string(kSelf), csr), [&, i](Result<SignResult> r) {
      EXPECT_TRUE(r.ok()) << errorOf(r).message;
      answered.push_back(i);
      threads.insert(std::this_thread::get_id());
    });
  }
  EXPECT_TRUE(answered.empty()) << "signed before anyone asked";
  EXPECT_TRUE(queue.runQueued());
  EXPECT_EQ(answered.size(), 4u);
  EXPECT_TRUE(queue.runQueued());
  EXPECT_EQ(answered.size(), 8u);
  EXPECT_FALSE(queue.runQueued());  // the last two: nothing left after them
  EXPECT_EQ(answered, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_FALSE(queue.runQueued());
  EXPECT_EQ(threads, std::set<std::thread::id>{std::this_thread::get_id()});

  queue.submit(call("tok:" + std::string(kSelf), csr),
               [&](Result<SignResult> r) { answered.push_back(r.ok() ? 10 : -1); });
  queue.stop();
  EXPECT_EQ(answered.back(), 10) << "stop() left a queued call unanswered";
  EXPECT_EQ(recorded(), 11u);
}

}  // namespace
}  // namespace meshid::ca
