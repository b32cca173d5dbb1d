#include "proxy/config.h"

#include <gtest/gtest.h>

#include "unit/common/test_util.h"

namespace meshid::proxy {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::messageOf;

const std::string kHead = R"(
trust_domain: example.org
certificates: {cert_file: c.pem, key_file: k.pem, bundle_file: b.pem}
)";

TEST(ProxyConfig, InboundAndOutboundListeners) {
  auto c = parseProxyConfig(kHead + R"(
workers: 2
timeouts: {handshake: 500ms, idle: 1m}
inbound:
  - {name: in, listen: 0.0.0.0:15006, forward: 127.0.0.1:8080, mode: PERMISSIVE,
     allow: [spiffe://example.org/ns/shop/]}
outbound:
  - {name: out, listen: 127.0.0.1:15001, destination: 10.0.0.5:15006,
     expected_ids: [spiffe://example.org/ns/web/sa/web], ca_file: pin.pem}
)",
                            "/etc/meshid");
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->certificates.cert_file, "/etc/meshid/c.pem");
  EXPECT_EQ(c->workers, 2u);
  EXPECT_EQ(c->handshake_timeout, 500ms);
  EXPECT_EQ(c->idle_timeout, 60s);
  ASSERT_EQ(c->inbound.size(), 1u);
  EXPECT_EQ(c->inbound[0].mode, Mode::kPermissive);
  EXPECT_FALSE(c->inbound[0].allow_list.empty());
  ASSERT_EQ(c->outbound.size(), 1u);
  EXPECT_EQ(c->outbound[0].ca_file, "/etc/meshid/pin.pem");
}

TEST(ProxyConfig, DefaultModeIsStrict) {
  auto c =
      parseProxyConfig(kHead + "inbound: [{name: a, listen: 1.2.3.4:1, forward: 1.2.3.4:2}]", "/");
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->inbound[0].mode, Mode::kStrict);
}

TEST(ProxyConfig, MistakesAreRefusedWithTheReason) {
  struct Bad {
    std::string yaml;
    const char* why;
  };
  const std::string in = "inbound: [{name: a, listen: 1.2.3.4:1, forward: 1.2.3.4:2";
  for (const Bad& b : std::vector<Bad>{
           {"", "empty"},
           {kHead, "no inbound or outbound"},
           {kHead + in + ", mode: LOOSE}]", "STRICT, PERMISSIVE or DISABLE"},
           {kHead + in + ", allow: [spiffe://x/]}]", "prefix"},
           {kHead + in + ", colour: red}]", "unknown key"},
           {kHead + "inbound: [{name: a, listen: nowhere, forward: 1.2.3.4:2}]", "HOST:PORT"},
           {kHead + in + "}, {name: a, listen: 1.2.3.4:3, forward: 1.2.3.4:4}]", "twice"},
           {"trust_domain: example.org\ninbound: []", "certificates is required"},
           {kHead + in + "}]\nworkers: 1000", "workers"},
           {kHead + in + "}]\ntimeouts: {handshake: 0ms}", "bad duration"},
           {kHead + in + "}]\nlimits: {max_connections: 0}", "at least 1"},
       }) {
    auto r = parseProxyConfig(b.yaml, "/");
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << b.yaml;
    MESHID_EXPECT_CONTAINS(messageOf(r), b.why) << b.yaml;
  }
}

}  // namespace
}  // namespace meshid::proxy
