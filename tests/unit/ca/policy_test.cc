#include "ca/policy.h"

#include <gtest/gtest.h>

#include <string>

#include "pki/csr.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using pki::testing::craftCsr;
using pki::testing::newEcKey;
using pki::testing::newKey;
using pki::testing::reqToDer;
using pki::testing::spiffeId;

constexpr std::string_view kSelf = "spiffe://example.org/ns/app/sa/web";

Identity caller(std::string_view id = kSelf) {
  return Identity{spiffeId(id), "jwt", ""};
}

pki::ParsedCsr csrFor(const EVP_PKEY* key, std::string_view id) {
  auto req = orThrow(pki::buildCsr(key, spiffeId(id)), "csr");
  return orThrow(pki::parseCsr(pki::csrToPem(req.get())), "parse csr");
}

pki::ParsedCsr craftedCsr(const EVP_PKEY* key, const std::string& sans) {
  auto req = craftCsr(key, {sans});
  return orThrow(pki::parseCsr(reqToDer(req.get())), "parse crafted csr");
}

PolicyConfig config() {
  PolicyConfig c;
  c.default_ttl = 12h;
  c.max_ttl = 24h;
  return c;
}

// A value no denial uses, so a test sees whether decide() wrote the reason.
constexpr auto kUnset = static_cast<DenialReason>(-1);

class PolicyTest : public ::testing::Test {
 protected:
  pki::EvpPkeyPtr key_ = newKey();
};

TEST_F(PolicyTest, OwnIdentityIsAllowedWithRequestedLifetime) {
  DenialReason reason = kUnset;
  auto d = decide(caller(), csrFor(key_.get(), kSelf), 3600, Api::kMeshid, config(), &reason);
  MESHID_ASSERT_OK(d);
  EXPECT_EQ(d->spiffe_id.str(), kSelf);
  EXPECT_EQ(d->ttl, 1h);
  EXPECT_EQ(reason, kUnset) << "an allowed request sets no denial reason";
}

TEST_F(PolicyTest, ForeignIdentityIsPermissionDenied) {
  DenialReason reason = kUnset;
  auto d = decide(caller(), csrFor(key_.get(), "spiffe://example.org/ns/app/sa/admin"), 0,
                  Api::kIstio, config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kPermissionDenied);
  EXPECT_EQ(reason, DenialReason::kForeignIdentity);
  MESHID_EXPECT_CONTAINS(errorOf(d).message, "spiffe://example.org/ns/app/sa/admin");
}

TEST_F(PolicyTest, SameNameInAnotherTrustDomainIsPermissionDenied) {
  DenialReason reason = kUnset;
  auto d = decide(caller(), csrFor(key_.get(), "spiffe://other.org/ns/app/sa/web"), 0, Api::kIstio,
                  config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kPermissionDenied);
  EXPECT_EQ(reason, DenialReason::kForeignIdentity);
}

TEST_F(PolicyTest, ExtraDnsSanIsInvalidArgument) {
  DenialReason reason = kUnset;
  auto d = decide(
      caller(),
      craftedCsr(key_.get(), std::string("URI:") + std::string(kSelf) + ",DNS:web.example.org"), 0,
      Api::kIstio, config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kBadCsr);
}

TEST_F(PolicyTest, ExtraIpSanIsInvalidArgument) {
  DenialReason reason = kUnset;
  auto d = decide(caller(),
                  craftedCsr(key_.get(), std::string("URI:") + std::string(kSelf) + ",IP:10.0.0.1"),
                  0, Api::kIstio, config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kBadCsr);
}

TEST_F(PolicyTest, ExtraEmailSanIsInvalidArgument) {
  DenialReason reason = kUnset;
  auto d = decide(
      caller(),
      craftedCsr(key_.get(), std::string("URI:") + std::string(kSelf) + ",email:a@example.org"), 0,
      Api::kIstio, config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kBadCsr);
}

// An extra SAN is refused even when the caller asks for a foreign identity:
// the CSR is malformed for this CA whatever it names.
TEST_F(PolicyTest, DnsOnlyCsrIsInvalidArgument) {
  DenialReason reason = kUnset;
  auto d = decide(caller(), craftedCsr(key_.get(), "DNS:web.example.org"), 0, Api::kIstio, config(),
                  &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kBadCsr);
}

TEST_F(PolicyTest, TwoUriSansAreInvalidArgument) {
  DenialReason reason = kUnset;
  auto d = decide(caller(),
                  craftedCsr(key_.get(), std::string("URI:") + std::string(kSelf) +
                                             ",URI:spiffe://example.org/ns/app/sa/other"),
                  0, Api::kIstio, config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kBadCsr);
}

TEST_F(PolicyTest, DisallowedKeyTypeIsInvalidArgument) {
  PolicyConfig c = config();
  c.allowed_key_types = {pki::KeyType::kEcP256};
  auto p384 = newKey(pki::KeyType::kEcP384);
  DenialReason reason = kUnset;
  auto d = decide(caller(), csrFor(p384.get(), kSelf), 0, Api::kIstio, c, &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kKeyType);
  MESHID_EXPECT_CONTAINS(errorOf(d).message, "P-384");
}

TEST_F(PolicyTest, Ed25519IsRefusedByDefault) {
  auto ed = newKey(pki::KeyType::kEd25519);
  DenialReason reason = kUnset;
  auto d = decide(caller(), csrFor(ed.get(), kSelf), 0, Api::kIstio, config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kKeyType);
}

// P-521 passes the key-strength check but is no KeyType this CA knows.
TEST_F(PolicyTest, UnlistedCurveIsRefused) {
  auto p521 = newEcKey("P-521");
  DenialReason reason = kUnset;
  auto d = decide(caller(), csrFor(p521.get(), kSelf), 0, Api::kIstio, config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kKeyType);
}

TEST_F(PolicyTest, RsaIsAllowedWhenListed) {
  auto rsa = newKey(pki::KeyType::kRsa2048);
  DenialReason reason = kUnset;
  MESHID_EXPECT_OK(decide(caller(), csrFor(rsa.get(), kSelf), 0, Api::kIstio, config(), &reason));
  PolicyConfig ec_only = config();
  ec_only.allowed_key_types = {pki::KeyType::kEcP256};
  auto d = decide(caller(), csrFor(rsa.get(), kSelf), 0, Api::kIstio, ec_only, &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kKeyType);
}

TEST_F(PolicyTest, NegativeLifetimeIsInvalidArgumentOnBothApis) {
  for (Api api : {Api::kIstio, Api::kMeshid}) {
    DenialReason reason = kUnset;
    auto d = decide(caller(), csrFor(key_.get(), kSelf), -1, api, config(), &reason);
    EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument) << apiName(api);
    EXPECT_EQ(reason, DenialReason::kBadLifetime) << apiName(api);
  }
}

TEST_F(PolicyTest, ZeroLifetimeMeansDefault) {
  for (Api api : {Api::kIstio, Api::kMeshid}) {
    DenialReason reason = kUnset;
    auto d = decide(caller(), csrFor(key_.get(), kSelf), 0, api, config(), &reason);
    MESHID_ASSERT_OK(d);
    EXPECT_EQ(d->ttl, 12h) << apiName(api);
  }
}

TEST_F(PolicyTest, MaximumLifetimeItselfIsAllowed) {
  DenialReason reason = kUnset;
  auto d = decide(caller(), csrFor(key_.get(), kSelf), 24 * 3600, Api::kMeshid, config(), &reason);
  MESHID_ASSERT_OK(d);
  EXPECT_EQ(d->ttl, 24h);
}

TEST_F(PolicyTest, OverMaximumIsClampedOnIstioApi) {
  DenialReason reason = kUnset;
  auto d =
      decide(caller(), csrFor(key_.get(), kSelf), 90LL * 24 * 3600, Api::kIstio, config(), &reason);
  MESHID_ASSERT_OK(d);
  EXPECT_EQ(d->ttl, 24h);
  EXPECT_EQ(reason, kUnset);
}

TEST_F(PolicyTest, OverMaximumIsInvalidArgumentOnMeshidApi) {
  DenialReason reason = kUnset;
  auto d =
      decide(caller(), csrFor(key_.get(), kSelf), 24 * 3600 + 1, Api::kMeshid, config(), &reason);
  EXPECT_EQ(errorOf(d).code, Code::kInvalidArgument);
  EXPECT_EQ(reason, DenialReason::kBadLifetime);
  MESHID_EXPECT_CONTAINS(errorOf(d).message, "maximum");
}

// The largest lifetime a caller can send is clamped (Istio) or refused
// (meshid), never overflowed into something short or negative.
TEST_F(PolicyTest, HugeRequestedLifetimeDoesNotOverflow) {
  DenialReason reason = kUnset;
  auto d = decide(caller(), csrFor(key_.get(), kSelf), INT64_MAX, Api::kIstio, config(), &reason);
  MESHID_ASSERT_OK(d);
  EXPECT_EQ(d->ttl, 24h);
  auto m = decide(caller(), csrFor(key_.get(), kSelf), INT64_MAX, Api::kMeshid, config(), &reason);
  EXPECT_EQ(errorOf(m).code, Code::kInvalidArgument);
}

// An agent acting for the workloads on its host (issue 4): only the
// identities an admin delegated to it, by exact ID or whole-segment prefix.
TEST_F(PolicyTest, DelegatedIdentitiesAreAllowedForTheAgentOnly) {
  constexpr std::string_view kAgent = "spiffe://example.org/meshid/agent/node1";
  PolicyConfig c = config();
  c.delegations.push_back(
      {spiffeId(kAgent),
       {"spiffe://example.org/ns/web/", "spiffe://example.org/ns/files/sa/nginx"}});
  DenialReason reason = kUnset;
  Identity agent{spiffeId(kAgent), "mtls", ""};
  for (std::string_view ok : std::initializer_list<std::string_view>{
           "spiffe://example.org/ns/web/sa/web", "spiffe://example.org/ns/web/sa/api/x",
           "spiffe://example.org/ns/files/sa/nginx", kAgent}) {
    auto d = decide(agent, csrFor(key_.get(), ok), 0, Api::kMeshid, c, &reason);
    MESHID_EXPECT_OK(d);
    if (d.ok()) {
      EXPECT_EQ(d->spiffe_id.str(), ok);
    }
  }
  for (std::string_view denied : std::initializer_list<std::string_view>{
           "spiffe://example.org/ns/webhook/sa/x",  // not a whole segment
           "spiffe://example.org/ns/files/sa/nginx2", "spiffe://example.org/ns/files/sa/nginx/sub",
           "spiffe://example.org/ns/other/sa/x"}) {
    reason = kUnset;
    auto d = decide(agent, csrFor(key_.get(), denied), 0, Api::kMeshid, c, &reason);
    EXPECT_EQ(errorOf(d).code, Code::kPermissionDenied) << denied;
    EXPECT_EQ(reason, DenialReason::kForeignIdentity) << denied;
  }
  // Another caller gets nothing from the agent's grant.
  reason = kUnset;
  auto other = decide(caller(), csrFor(key_.get(), "spiffe://example.org/ns/web/sa/web"), 0,
                      Api::kMeshid, c, &reason);
  EXPECT_EQ(errorOf(other).code, Code::kPermissionDenied);
}

TEST(Delegation, PrefixNeedsAPathBelowIt) {
  Delegation d{spiffeId("spiffe://example.org/agent"), {"spiffe://example.org/ns/web/"}};
  EXPECT_TRUE(d.allows(spiffeId("spiffe://example.org/ns/web/a")));
  EXPECT_FALSE(d.allows(spiffeId("spiffe://example.org/ns/web")));
  EXPECT_FALSE(d.allows(spiffeId("spiffe://example.org/ns/we")));
}

TEST(DenialLabel, EveryReasonHasABoundedLabel) {
  for (DenialReason r :
       {DenialReason::kNoCredential, DenialReason::kBadCredential, DenialReason::kForeignIdentity,
        DenialReason::kBadCsr, DenialReason::kKeyType, DenialReason::kBadLifetime,
        DenialReason::kOverloaded, DenialReason::kSignerUnavailable, DenialReason::kStoreFailed}) {
    std::string label = denialLabel(r);
    EXPECT_FALSE(label.empty());
    EXPECT_NE(label, "unknown");
    for (char c : label)
      EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << label;
  }
}

}  // namespace
}  // namespace meshid::ca
