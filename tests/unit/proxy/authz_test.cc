#include "proxy/authz.h"

#include <gtest/gtest.h>

#include "unit/common/test_util.h"

namespace meshid::proxy {
namespace {

using meshid::testing::errorOf;

pki::SpiffeId id(const char* s) {
  return pki::SpiffeId::parse(s).value();
}

TEST(AllowList, EmptyAllowsEveryVerifiedPeer) {
  auto a = AllowList::parse({});
  MESHID_ASSERT_OK(a);
  EXPECT_TRUE(a->empty());
  EXPECT_TRUE(a->allows(id("spiffe://any.org/x")));
}

TEST(AllowList, ExactIdsTrustDomainsAndWholeSegmentPrefixes) {
  auto a = AllowList::parse(
      {"spiffe://td/ns/web/sa/web", "spiffe://partner.org", "spiffe://td/ns/payments/"});
  MESHID_ASSERT_OK(a);
  EXPECT_TRUE(a->allows(id("spiffe://td/ns/web/sa/web")));
  EXPECT_FALSE(a->allows(id("spiffe://td/ns/web/sa/web2")));
  EXPECT_FALSE(a->allows(id("spiffe://td/ns/web/sa/web/x")));
  EXPECT_TRUE(a->allows(id("spiffe://partner.org/anything/at/all")));
  EXPECT_FALSE(a->allows(id("spiffe://partner.org.evil/x")));
  EXPECT_TRUE(a->allows(id("spiffe://td/ns/payments/sa/api")));
  EXPECT_FALSE(a->allows(id("spiffe://td/ns/payments-v2/sa/api"))) << "not a whole segment";
  EXPECT_FALSE(a->allows(id("spiffe://td/ns/other/sa/x"))) << "deny by default once a list is set";
}

TEST(AllowList, MalformedEntriesAreRefused) {
  for (const char* bad : {"", "td/ns/x", "spiffe://TD/x", "spiffe://td/", "spiffe://td//x/",
                          "https://td/x", "spiffe://td/a/../b"}) {
    EXPECT_EQ(errorOf(AllowList::parse({bad})).code, Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace meshid::proxy
