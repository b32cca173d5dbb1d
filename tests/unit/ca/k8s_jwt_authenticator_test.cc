#include "ca/authn/k8s_jwt_authenticator.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "ca/join_token.h"
#include "pki/jwt.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using meshid::testing::TempDir;
using nlohmann::json;
using pki::testing::newKey;
using pki::testing::t0;

constexpr std::string_view kIssuer = "https://kubernetes.default.svc.cluster.local";

// A projected service-account token's claims, valid at t0().
json k8sClaims(std::string ns = "payments", std::string sa = "web") {
  int64_t now = toUnixSeconds(t0());
  return {
      {"iss", kIssuer},
      {"sub", "system:serviceaccount:" + ns + ":" + sa},
      {"aud", json::array({"istio-ca"})},
      {"exp", now + 3600},
      {"iat", now - 60},
      {"nbf", now - 60},
      {"kubernetes.io",
       {{"namespace", ns},
        {"serviceaccount", {{"name", sa}, {"uid", "6d1c-sa"}}},
        {"pod", {{"name", "web-5f7c"}, {"uid", "9a2b-pod"}}}}},
  };
}

std::string sign(const EVP_PKEY* key, std::string_view kid, const json& claims = k8sClaims()) {
  return orThrow(pki::signJwt({{"kid", std::string(kid)}}, claims, key), "sign jwt");
}

std::string jwksText(std::initializer_list<std::pair<const EVP_PKEY*, std::string_view>> keys) {
  json set = {{"keys", json::array()}};
  for (const auto& [key, kid] : keys) {
    set["keys"].push_back(json::parse(orThrow(pki::jwkFromPublicKey(key, kid), "jwk")));
  }
  return set.dump();
}

void writeText(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

CallerCredentials bearer(std::string token) {
  CallerCredentials c;
  c.bearer_token = std::move(token);
  return c;
}

class K8sJwtAuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override { writeText(jwks_path_, jwksText({{key_.get(), "k1"}})); }

  std::unique_ptr<KubernetesJwtAuthenticator> make(std::string issuer = std::string(kIssuer),
                                                   std::vector<std::string> audiences = {
                                                       "istio-ca"}) {
    return std::make_unique<KubernetesJwtAuthenticator>(
        td_, std::make_unique<FileJwksProvider>(jwks_path_), std::move(issuer),
        std::move(audiences), clock_);
  }

  TempDir dir_;
  fs::path jwks_path_ = dir_ / "jwks.json";
  pki::TrustDomain td_ = orThrow(pki::TrustDomain::parse("example.org"));
  FakeClock clock_{t0()};
  pki::EvpPkeyPtr key_ = newKey();
};

TEST_F(K8sJwtAuthenticatorTest, ValidTokenIsTheServiceAccountIdentity) {
  auto authn = make();
  auto r = authn->authenticate(bearer(sign(key_.get(), "k1")));
  MESHID_ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->spiffe_id.str(), "spiffe://example.org/ns/payments/sa/web");
  EXPECT_EQ((*r)->method, "jwt");
  EXPECT_EQ((*r)->detail, "k1");
}

TEST_F(K8sJwtAuthenticatorTest, RsaSignedTokenIsAccepted) {
  auto rsa = newKey(pki::KeyType::kRsa2048);
  writeText(jwks_path_, jwksText({{key_.get(), "k1"}, {rsa.get(), "rsa"}}));
  auto r = make()->authenticate(bearer(sign(rsa.get(), "rsa", k8sClaims("ns1", "sa1"))));
  MESHID_ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->spiffe_id.str(), "spiffe://example.org/ns/ns1/sa/sa1");
}

TEST_F(K8sJwtAuthenticatorTest, SubjectOnlyTokenIsAccepted) {
  json claims = k8sClaims("legacy", "builder");
  claims.erase("kubernetes.io");
  auto r = make()->authenticate(bearer(sign(key_.get(), "k1", claims)));
  MESHID_ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->spiffe_id.str(), "spiffe://example.org/ns/legacy/sa/builder");
}

TEST_F(K8sJwtAuthenticatorTest, TokenNamingNoServiceAccountIsUnauthenticated) {
  auto authn = make();
  for (std::string sub :
       {"alice", "system:serviceaccount:", "system:serviceaccount:ns", "system:serviceaccount::sa",
        "system:serviceaccount:ns:", "system:node:worker-1"}) {
    json claims = k8sClaims();
    claims.erase("kubernetes.io");
    claims["sub"] = sub;
    auto r = authn->authenticate(bearer(sign(key_.get(), "k1", claims)));
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated) << sub;
  }
  json no_sub = k8sClaims();
  no_sub.erase("kubernetes.io");
  no_sub.erase("sub");
  EXPECT_EQ(errorOf(authn->authenticate(bearer(sign(key_.get(), "k1", no_sub)))).code,
            Code::kUnauthenticated);
}

// Names that cannot be path segments of a SPIFFE ID never become one.
TEST_F(K8sJwtAuthenticatorTest, ServiceAccountThatIsNoValidIdentityIsUnauthenticated) {
  auto authn = make();
  for (auto [ns, sa] : std::vector<std::pair<std::string, std::string>>{
           {"a/b", "web"}, {"payments", "../admin"}, {"..", "web"}, {"ns", "s a"}}) {
    json claims = k8sClaims(ns, sa);
    auto r = authn->authenticate(bearer(sign(key_.get(), "k1", claims)));
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated) << ns << " " << sa;
    claims.erase("kubernetes.io");
    r = authn->authenticate(bearer(sign(key_.get(), "k1", claims)));
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated) << "sub-only " << ns << " " << sa;
  }
}

TEST_F(K8sJwtAuthenticatorTest, WrongAudienceIsUnauthenticated) {
  json claims = k8sClaims();
  claims["aud"] = json::array({"https://kubernetes.default.svc"});
  auto r = make()->authenticate(bearer(sign(key_.get(), "k1", claims)));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
}

TEST_F(K8sJwtAuthenticatorTest, ConfiguredAudiencesAreHonoured) {
  json claims = k8sClaims();
  claims["aud"] = "meshid";
  auto r = make(std::string(kIssuer), {"istio-ca", "meshid"})
               ->authenticate(bearer(sign(key_.get(), "k1", claims)));
  MESHID_EXPECT_OK(r);
}

TEST_F(K8sJwtAuthenticatorTest, WrongIssuerIsUnauthenticated) {
  json claims = k8sClaims();
  claims["iss"] = "https://evil.example";
  auto r = make()->authenticate(bearer(sign(key_.get(), "k1", claims)));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
}

TEST_F(K8sJwtAuthenticatorTest, ExpiredTokenIsUnauthenticated) {
  auto authn = make();
  std::string token = sign(key_.get(), "k1");
  MESHID_ASSERT_OK(authn->authenticate(bearer(token)));
  clock_.advance(1h + 61s);  // past exp and the 60 s skew
  auto r = authn->authenticate(bearer(token));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
}

TEST_F(K8sJwtAuthenticatorTest, TokenSignedByAnotherKeyIsUnauthenticated) {
  auto other = newKey();
  auto authn = make();
  EXPECT_EQ(errorOf(authn->authenticate(bearer(sign(other.get(), "k1")))).code,
            Code::kUnauthenticated);
  EXPECT_EQ(errorOf(authn->authenticate(bearer(sign(other.get(), "unknown-kid")))).code,
            Code::kUnauthenticated);
}

TEST_F(K8sJwtAuthenticatorTest, GarbageBearerIsUnauthenticated) {
  auto authn = make();
  for (std::string t :
       {std::string(""), std::string("x"), std::string("a.b.c"), std::string(20000, 'a')}) {
    EXPECT_EQ(errorOf(authn->authenticate(bearer(t))).code, Code::kUnauthenticated)
        << t.substr(0, 20);
  }
}

TEST_F(K8sJwtAuthenticatorTest, JoinTokenShapedBearerIsNotMine) {
  auto authn = make();
  auto r = authn->authenticate(bearer(orThrow(generateJoinToken())));
  MESHID_ASSERT_OK(r);
  EXPECT_FALSE(r->has_value());
  EXPECT_FALSE(authn->authenticate(bearer("mjt_malformed"))->has_value());
}

TEST_F(K8sJwtAuthenticatorTest, NoBearerIsNotMine) {
  CallerCredentials cert_only;
  cert_only.peer_certificate_pem = "pem";
  auto r = make()->authenticate(cert_only);
  MESHID_ASSERT_OK(r);
  EXPECT_FALSE(r->has_value());
}

TEST_F(K8sJwtAuthenticatorTest, MissingJwksIsUnavailable) {
  fs::remove(jwks_path_);
  auto r = make()->authenticate(bearer(sign(key_.get(), "k1")));
  EXPECT_EQ(errorOf(r).code, Code::kUnavailable);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, jwks_path_.string());
}

TEST_F(K8sJwtAuthenticatorTest, BrokenJwksIsUnavailable) {
  writeText(jwks_path_, "{\"keys\": [");
  EXPECT_EQ(errorOf(make()->authenticate(bearer(sign(key_.get(), "k1")))).code, Code::kUnavailable);
}

// The cluster rotates its signing key: the JWKS file is replaced on disk and
// the new key is accepted once the file's mtime has changed. The provider
// re-checks the file at most once per (steady-clock) second, so this one
// test has to wait that second out.
TEST_F(K8sJwtAuthenticatorTest, ReplacedJwksFileIsPickedUp) {
  auto authn = make();
  auto next = newKey();
  std::string old_token = sign(key_.get(), "k1");
  std::string new_token = sign(next.get(), "k2");
  MESHID_ASSERT_OK(authn->authenticate(bearer(old_token)));
  EXPECT_EQ(errorOf(authn->authenticate(bearer(new_token))).code, Code::kUnauthenticated);

  auto before = fs::last_write_time(jwks_path_);
  fs::path tmp = dir_ / "jwks.json.tmp";
  writeText(tmp, jwksText({{next.get(), "k2"}}));
  fs::rename(tmp, jwks_path_);
  fs::last_write_time(jwks_path_, before + 10s);

  std::this_thread::sleep_for(1100ms);
  auto r = authn->authenticate(bearer(new_token));
  MESHID_ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->detail, "k2");
  EXPECT_EQ(errorOf(authn->authenticate(bearer(old_token))).code, Code::kUnauthenticated)
      << "the retired key must stop working";
}

// A JWKS replaced by a broken file keeps the previous keys (logged), rather
// than locking every workload out.
TEST_F(K8sJwtAuthenticatorTest, BrokenReplacementKeepsPreviousKeys) {
  auto authn = make();
  std::string token = sign(key_.get(), "k1");
  MESHID_ASSERT_OK(authn->authenticate(bearer(token)));
  auto before = fs::last_write_time(jwks_path_);
  writeText(jwks_path_, "not json");
  fs::last_write_time(jwks_path_, before + 10s);
  std::this_thread::sleep_for(1100ms);
  MESHID_EXPECT_OK(authn->authenticate(bearer(token)));
}

}  // namespace
}  // namespace meshid::ca
