#include "ca/join_token.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "ca/authn/join_token_authenticator.h"
#include "store/sqlite_store.h"
#include "unit/common/test_util.h"
#include "unit/pki/test_ca.h"

namespace meshid::ca {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::orThrow;
using meshid::testing::TempDir;
using pki::testing::t0;

constexpr std::string_view kHostId = "spiffe://example.org/host/node-1";

TEST(JoinToken, GeneratedTokensHaveTheDocumentedShape) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    auto t = generateJoinToken();
    MESHID_ASSERT_OK(t);
    EXPECT_EQ(t->size(), 47u) << *t;  // "mjt_" + 43 base64url characters
    EXPECT_TRUE(t->starts_with("mjt_")) << *t;
    EXPECT_TRUE(looksLikeJoinToken(*t)) << *t;
    EXPECT_EQ(t->find_first_of("+/="), std::string::npos) << *t;
    seen.insert(*t);
  }
  EXPECT_EQ(seen.size(), 50u);
}

TEST(JoinToken, LooksLikeJoinTokenRefusesOtherShapes) {
  const std::string body(43, 'A');
  EXPECT_TRUE(looksLikeJoinToken("mjt_" + body));
  EXPECT_TRUE(looksLikeJoinToken("mjt_" + std::string(42, 'z') + "-"));
  EXPECT_TRUE(looksLikeJoinToken("mjt_" + std::string(42, '0') + "_"));
  EXPECT_FALSE(looksLikeJoinToken(""));
  EXPECT_FALSE(looksLikeJoinToken("mjt_"));
  EXPECT_FALSE(looksLikeJoinToken("mjt_" + body.substr(1)));  // one short
  EXPECT_FALSE(looksLikeJoinToken("mjt_" + body + "A"));      // one long
  EXPECT_FALSE(looksLikeJoinToken("MJT_" + body));
  EXPECT_FALSE(looksLikeJoinToken("xjt_" + body));
  for (char bad : {'+', '/', '=', '.', ' ', '\0', '\n'}) {
    std::string t = "mjt_" + body;
    t[20] = bad;
    EXPECT_FALSE(looksLikeJoinToken(t)) << static_cast<int>(bad);
  }
  EXPECT_FALSE(looksLikeJoinToken("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
}

TEST(JoinToken, HashIsLowercaseHexSha256) {
  // SHA-256("abc"), FIPS 180-2 appendix B.1.
  EXPECT_EQ(hashJoinToken("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hashJoinToken("").size(), 64u);
  EXPECT_NE(hashJoinToken("mjt_a"), hashJoinToken("mjt_b"));
}

class JoinTokenAuthenticatorTest : public ::testing::Test {
 protected:
  // Creates a token for kHostId expiring at t0() + ttl; returns the token.
  std::string makeToken(Seconds ttl = 1h) {
    std::string token = orThrow(generateJoinToken(), "token");
    orThrow(store_->createJoinToken({.token_hash = hashJoinToken(token),
                                     .spiffe_id = std::string(kHostId),
                                     .created_at = t0(),
                                     .expires_at = t0() + ttl}),
            "create token");
    return token;
  }
  static CallerCredentials bearer(std::string token) {
    CallerCredentials c;
    c.bearer_token = std::move(token);
    return c;
  }

  TempDir dir_;
  FakeClock clock_{t0()};
  std::unique_ptr<store::SqliteStore> store_ = orThrow(store::SqliteStore::open(dir_ / "ca.db"));
  JoinTokenAuthenticator authn_{*store_, clock_};
};

TEST_F(JoinTokenAuthenticatorTest, ClaimsOnlyBearerTokensWithThePrefix) {
  EXPECT_FALSE(authn_.authenticate(CallerCredentials{})->has_value());
  EXPECT_FALSE(authn_.authenticate(bearer("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"))->has_value());
  EXPECT_FALSE(authn_.authenticate(bearer(""))->has_value());
  EXPECT_FALSE(authn_.authenticate(bearer("MJT_" + std::string(43, 'a')))->has_value());
  CallerCredentials cert_only;
  cert_only.peer_certificate_pem = "-----BEGIN CERTIFICATE-----\n";
  EXPECT_FALSE(authn_.authenticate(cert_only)->has_value());
}

TEST_F(JoinTokenAuthenticatorTest, MalformedTokenIsUnauthenticated) {
  for (std::string t : {std::string("mjt_"), std::string("mjt_short"),
                        "mjt_" + std::string(43, '+'), "mjt_" + std::string(44, 'a')}) {
    auto r = authn_.authenticate(bearer(t));
    EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated) << t;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, "malformed");
  }
}

TEST_F(JoinTokenAuthenticatorTest, UnknownTokenIsUnauthenticated) {
  std::string token = orThrow(generateJoinToken(), "token");
  auto r = authn_.authenticate(bearer(token));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "unknown");
  MESHID_EXPECT_NOT_CONTAINS(errorOf(r).message, token);
}

TEST_F(JoinTokenAuthenticatorTest, ValidTokenGivesItsIdentityOnce) {
  std::string token = makeToken();
  auto r = authn_.authenticate(bearer(token));
  MESHID_ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->spiffe_id.str(), kHostId);
  EXPECT_EQ((*r)->method, "join_token");
  // The detail names the token by a hash prefix, never by the token.
  EXPECT_EQ((*r)->detail, hashJoinToken(token).substr(0, 12));
  MESHID_EXPECT_NOT_CONTAINS((*r)->detail, token.substr(4, 12));

  auto again = authn_.authenticate(bearer(token));
  EXPECT_EQ(errorOf(again).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(again).message, "already used");
}

TEST_F(JoinTokenAuthenticatorTest, ExpiredTokenIsUnauthenticated) {
  std::string token = makeToken(10min);
  clock_.advance(10min);
  auto r = authn_.authenticate(bearer(token));
  EXPECT_EQ(errorOf(r).code, Code::kUnauthenticated);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "expired");
}

// The token is checked even when a client certificate is also presented: a
// bearer credential is the stronger statement of who is asking.
TEST_F(JoinTokenAuthenticatorTest, TokenWinsOverClientCertificate) {
  std::string token = makeToken();
  CallerCredentials c = bearer(token);
  c.peer_certificate_pem = "-----BEGIN CERTIFICATE-----\n";
  auto r = authn_.authenticate(c);
  MESHID_ASSERT_OK(r);
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->method, "join_token");
}

// A store outage is not the caller's fault: UNAVAILABLE (retryable), not
// UNAUTHENTICATED.
TEST_F(JoinTokenAuthenticatorTest, StoreOutageIsUnavailable) {
  class DownStore final : public store::Store {
   public:
    Result<void> recordIssuance(const store::IssuanceRecord&) override { return down(); }
    Result<std::optional<store::IssuanceRecord>> findIssuance(const std::string&) override {
      return down();
    }
    Result<std::vector<store::IssuanceRecord>> listIssuances(const store::IssuanceQuery&) override {
      return down();
    }
    Result<uint64_t> countIssuances() override { return down(); }
    Result<void> createJoinToken(const store::JoinTokenRecord&) override { return down(); }
    Result<store::JoinTokenRecord> consumeJoinToken(const std::string&, SystemTime) override {
      return down();
    }
    Result<store::BundleVersion> saveBundle(const std::string&, const std::string&,
                                            SystemTime) override {
      return down();
    }
    Result<std::optional<store::BundleVersion>> latestBundle() override { return down(); }
    Result<store::PruneResult> pruneExpired(SystemTime, uint64_t) override { return down(); }
    Result<int> schemaVersion() override { return down(); }

   private:
    static Error down() { return Error::unavailable("database is locked"); }
  };
  DownStore down;
  JoinTokenAuthenticator authn(down, clock_);
  auto r = authn.authenticate(bearer(orThrow(generateJoinToken(), "token")));
  EXPECT_EQ(errorOf(r).code, Code::kUnavailable);
}

TEST_F(JoinTokenAuthenticatorTest, StoredInvalidIdentityIsInternal) {
  std::string token = orThrow(generateJoinToken(), "token");
  MESHID_ASSERT_OK(store_->createJoinToken({.token_hash = hashJoinToken(token),
                                            .spiffe_id = "not a spiffe id",
                                            .created_at = t0(),
                                            .expires_at = t0() + 1h}));
  EXPECT_EQ(errorOf(authn_.authenticate(bearer(token))).code, Code::kInternal);
}

}  // namespace
}  // namespace meshid::ca
