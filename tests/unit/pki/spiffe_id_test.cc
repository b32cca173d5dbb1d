#include "pki/spiffe_id.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "unit/common/test_util.h"

namespace meshid::pki {
namespace {

using meshid::testing::errorOf;

TrustDomain td(std::string_view name) {
  return *TrustDomain::parse(name);
}

TEST(SpiffeIdParse, AcceptsValidIds) {
  for (const char* text : {
           "spiffe://example.org/ns/default/sa/web", "spiffe://example.org/a", "spiffe://a/b",
           "spiffe://my-td_1.example.org/x",
           "spiffe://td/AZaz09.-_",    // every path character class
           "spiffe://td/.../a..b/.c",  // dots inside a segment are fine
           "spiffe://192.168.1.1/x",   // an IP-looking trust domain is only a name
       }) {
    auto id = SpiffeId::parse(text);
    ASSERT_TRUE(id.ok()) << text << ": " << id.error().message;
    EXPECT_EQ(id->str(), text);
    EXPECT_FALSE(id->isTrustDomainId());
  }
}

TEST(SpiffeIdParse, SplitsTrustDomainAndPath) {
  auto id = SpiffeId::parse("spiffe://example.org/ns/default/sa/web");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->trustDomain().name(), "example.org");
  EXPECT_EQ(id->path(), "/ns/default/sa/web");
}

TEST(SpiffeIdParse, AcceptsTrustDomainOnlyId) {
  auto id = SpiffeId::parse("spiffe://example.org");
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_TRUE(id->isTrustDomainId());
  EXPECT_EQ(id->path(), "");
  EXPECT_EQ(id->trustDomain().name(), "example.org");
}

struct BadId {
  std::string text;
  std::string reason;  // a phrase the error message must contain
};

class SpiffeIdRejects : public ::testing::TestWithParam<BadId> {};

TEST_P(SpiffeIdRejects, WithReason) {
  const BadId& c = GetParam();
  auto id = SpiffeId::parse(c.text);
  ASSERT_FALSE(id.ok()) << "accepted " << c.text;
  EXPECT_EQ(id.error().code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(id.error().message, c.reason);
}

INSTANTIATE_TEST_SUITE_P(
    SpiffeStandard, SpiffeIdRejects,
    ::testing::Values(
        BadId{"", "must start with spiffe://"}, BadId{"example.org/a", "must start with spiffe://"},
        BadId{"https://example.org/a", "must start with spiffe://"},
        BadId{"spiffe:/example.org/a", "must start with spiffe://"},
        BadId{"SPIFFE://example.org/a", "must start with spiffe://"},
        BadId{"Spiffe://example.org/a", "must start with spiffe://"},
        BadId{"spiffe://", "empty trust domain"}, BadId{"spiffe:///a", "empty trust domain"},
        BadId{"spiffe://Example.org/a", "lowercase"},
        BadId{"spiffe://example.org/a//b", "empty path segment"},
        BadId{"spiffe://example.org//a", "empty path segment"},
        BadId{"spiffe://example.org/..", "'.' or '..'"},
        BadId{"spiffe://example.org/.", "'.' or '..'"},
        BadId{"spiffe://example.org/a/../b", "'.' or '..'"},
        BadId{"spiffe://example.org/a/./b", "'.' or '..'"},
        BadId{"spiffe://example.org/", "must not end with a slash"},
        BadId{"spiffe://example.org/a/", "must not end with a slash"},
        BadId{"spiffe://example.org:8443/a", "port"}, BadId{"spiffe://example.org:/a", "port"},
        BadId{"spiffe://user@example.org/a", "user info"},
        BadId{"spiffe://example.org/a?x=1", "query"}, BadId{"spiffe://example.org?x=1", "query"},
        BadId{"spiffe://example.org/a#frag", "fragment"},
        BadId{"spiffe://example.org#frag", "fragment"},
        BadId{"spiffe://example.org/a%2Fb", "percent-encoded"},
        BadId{"spiffe://example.org/%2e%2e", "percent-encoded"},
        BadId{"spiffe://example.org/a b", "path character"},
        BadId{"spiffe://example.org/a+b", "path character"},
        BadId{"spiffe://example.org/a~b", "path character"},
        BadId{"spiffe://example.org/a:b", "path character"},
        BadId{"spiffe://example.org/a@b", "path character"},
        BadId{"spiffe://example.org/caf\xc3\xa9", "path character"},
        BadId{std::string("spiffe://example.org/a\0b", 24), "path character"},
        BadId{"spiffe://exa mple.org/a", "character other than"},
        BadId{"spiffe://ex%41mple.org/a", "character other than"},
        BadId{"spiffe://[::1]/a", "character other than"}),
    [](const ::testing::TestParamInfo<BadId>& info) {
      return "Case" + std::to_string(info.index);
    });

TEST(SpiffeIdParse, RefusesUppercaseTrustDomainWithEmptySegment) {
  // Two faults at once: refused either way, never normalized into a valid ID.
  auto id = SpiffeId::parse("spiffe://Example.org/a//b");
  EXPECT_EQ(errorOf(id).code, Code::kInvalidArgument);
}

TEST(SpiffeIdParse, AcceptsIdOfExactly2048Bytes) {
  std::string prefix = "spiffe://example.org/";
  std::string id = prefix + std::string(2048 - prefix.size(), 'a');
  ASSERT_EQ(id.size(), 2048u);
  MESHID_EXPECT_OK(SpiffeId::parse(id));
}

TEST(SpiffeIdParse, RefusesIdOver2048Bytes) {
  std::string prefix = "spiffe://example.org/";
  std::string id = prefix + std::string(2049 - prefix.size(), 'a');
  auto r = SpiffeId::parse(id);
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "2048");
  // A huge ID is refused without being echoed back.
  EXPECT_LT(errorOf(r).message.size(), 200u);
}

TEST(SpiffeIdParse, AcceptsTrustDomainOfExactly255Bytes) {
  MESHID_EXPECT_OK(SpiffeId::parse("spiffe://" + std::string(255, 'a') + "/x"));
}

TEST(SpiffeIdParse, RefusesTrustDomainOver255Bytes) {
  auto r = SpiffeId::parse("spiffe://" + std::string(256, 'a') + "/x");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "255");
}

TEST(SpiffeIdParse, ErrorMessagesAreBoundedAndPrintable) {
  std::string hostile = "spiffe://example.org/" + std::string(500, 'a') + "\x1b[31m\n\xff";
  auto r = SpiffeId::parse(hostile);
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.error().message.size(), 300u);
  for (char c : r.error().message) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "unprintable byte " << static_cast<int>(c);
  }
}

TEST(SpiffeIdEquality, ComparesWholeId) {
  EXPECT_EQ(*SpiffeId::parse("spiffe://td/a"), *SpiffeId::parse("spiffe://td/a"));
  EXPECT_FALSE(*SpiffeId::parse("spiffe://td/a") == *SpiffeId::parse("spiffe://td/A"));
  EXPECT_FALSE(*SpiffeId::parse("spiffe://td/a") == *SpiffeId::parse("spiffe://td2/a"));
}

TEST(TrustDomainParse, AcceptsNameWithOrWithoutScheme) {
  for (const char* text : {"example.org", "spiffe://example.org"}) {
    auto t = TrustDomain::parse(text);
    ASSERT_TRUE(t.ok()) << text << ": " << t.error().message;
    EXPECT_EQ(t->name(), "example.org");
    EXPECT_EQ(t->idString(), "spiffe://example.org");
  }
  EXPECT_EQ(td("example.org"), td("spiffe://example.org"));
}

TEST(TrustDomainParse, RefusesBadNames) {
  for (const char* text : {"", "spiffe://", "Example.org", "example.org/", "example.org/a",
                           "spiffe://example.org/a", "example.org:443", "user@example.org",
                           "exa mple.org", "example.org?x", "example.org#x", "ex%41mple"}) {
    EXPECT_EQ(errorOf(TrustDomain::parse(text)).code, Code::kInvalidArgument) << text;
  }
  EXPECT_FALSE(TrustDomain::parse(std::string(256, 'a')).ok());
  MESHID_EXPECT_OK(TrustDomain::parse(std::string(255, 'a')));
}

TEST(SpiffeIdForTrustDomain, HasNoPath) {
  SpiffeId id = SpiffeId::forTrustDomain(td("example.org"));
  EXPECT_EQ(id.str(), "spiffe://example.org");
  EXPECT_TRUE(id.isTrustDomainId());
  EXPECT_EQ(id, *SpiffeId::parse("spiffe://example.org"));
}

TEST(SpiffeIdForServiceAccount, BuildsKubernetesShape) {
  auto id = SpiffeId::forServiceAccount(td("cluster.local"), "default", "web");
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(id->str(), "spiffe://cluster.local/ns/default/sa/web");
  auto sa = id->serviceAccount();
  ASSERT_TRUE(sa.has_value());
  EXPECT_EQ(sa->first, "default");
  EXPECT_EQ(sa->second, "web");
}

TEST(SpiffeIdForServiceAccount, RefusesEmptyParts) {
  EXPECT_EQ(errorOf(SpiffeId::forServiceAccount(td("td"), "", "web")).code, Code::kInvalidArgument);
  EXPECT_EQ(errorOf(SpiffeId::forServiceAccount(td("td"), "default", "")).code,
            Code::kInvalidArgument);
}

TEST(SpiffeIdForServiceAccount, RefusesInvalidCharacters) {
  for (auto [ns, sa] :
       {std::pair{"a b", "web"}, std::pair{"default", "we?b"}, std::pair{"..", "web"},
        std::pair{"default", "."}, std::pair{"default", "web/"}}) {
    EXPECT_EQ(errorOf(SpiffeId::forServiceAccount(td("td"), ns, sa)).code, Code::kInvalidArgument)
        << ns << " " << sa;
  }
}

TEST(SpiffeIdForServiceAccount, RefusesSlashInsideAPart) {
  // "a/b" is two path segments, not one namespace: the ID would name a
  // different (or no) service account than the one asked for.
  for (auto [ns, sa] : {std::pair{"team/x", "web"}, std::pair{"default", "web/extra"},
                        std::pair{"default/sa/admin", "x"}}) {
    auto id = SpiffeId::forServiceAccount(td("td"), ns, sa);
    EXPECT_EQ(errorOf(id).code, Code::kInvalidArgument)
        << ns << " " << sa << " gave " << (id.ok() ? id->str() : "");
  }
}

TEST(SpiffeIdServiceAccount, ReadsOnlyTheKubernetesShape) {
  auto sa = SpiffeId::parse("spiffe://td/ns/sa/sa/sa")->serviceAccount();
  ASSERT_TRUE(sa.has_value());
  EXPECT_EQ(sa->first, "sa");
  EXPECT_EQ(sa->second, "sa");
  for (const char* text :
       {"spiffe://td", "spiffe://td/web", "spiffe://td/ns/default", "spiffe://td/ns/default/sa",
        "spiffe://td/ns/default/sa/web/extra", "spiffe://td/ns/default/svc/web",
        "spiffe://td/x/ns/default/sa/web", "spiffe://td/NS/default/sa/web"}) {
    auto id = SpiffeId::parse(text);
    ASSERT_TRUE(id.ok()) << text;
    EXPECT_FALSE(id->serviceAccount().has_value()) << text;
  }
}

}  // namespace
}  // namespace meshid::pki
