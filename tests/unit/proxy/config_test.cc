#include "proxy/config.h"

#include <gtest/gtest.h>

#include "unit/common/test_util.h"

namespace meshid::proxy {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::messageOf;
using meshid::testing::orThrow;

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
  EXPECT_EQ(c->kept_buffers, 256u);  // the default
  EXPECT_TRUE(c->own_record_layer);  // the default
}

// Adaptive unless set otherwise; a fixed budget in microseconds only, at
// most a millisecond; 0 is off.
TEST(ProxyConfig, BusyPollIsAutoUnlessSetOtherwise) {
  const std::string in = "inbound: [{name: a, listen: 1.2.3.4:1, forward: 1.2.3.4:2}]\n";
  auto plain = parseProxyConfig(kHead + in, "/");
  MESHID_ASSERT_OK(plain);
  EXPECT_EQ(plain->busy_poll, kAutoBusyPoll);
  EXPECT_TRUE(plain->busy_poll_adaptive);
  auto aut = orThrow(parseProxyConfig(kHead + in + "busy_poll: auto", "/"));
  EXPECT_EQ(aut.busy_poll, kAutoBusyPoll);
  EXPECT_TRUE(aut.busy_poll_adaptive);
  auto fixed = parseProxyConfig(kHead + in + "busy_poll: 50us", "/");
  MESHID_ASSERT_OK(fixed);
  EXPECT_EQ(fixed->busy_poll, 50us);
  EXPECT_FALSE(fixed->busy_poll_adaptive);
  EXPECT_EQ(orThrow(parseProxyConfig(kHead + in + "busy_poll: 1000us", "/")).busy_poll, 1000us);
  auto off = orThrow(parseProxyConfig(kHead + in + "busy_poll: 0", "/"));
  EXPECT_EQ(off.busy_poll, 0us);
  EXPECT_FALSE(off.busy_poll_adaptive);
  for (const char* bad :
       {"50", "1ms", "1001us", "0us", "-5us", "5.5us", "us", "lots", "AUTO", "auto5us", "on"}) {
    auto r = parseProxyConfig(kHead + in + "busy_poll: " + bad, "/");
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << bad;
    MESHID_EXPECT_CONTAINS(messageOf(r), "busy_poll") << bad;
    MESHID_EXPECT_CONTAINS(messageOf(r), "auto") << bad;
  }
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
           {kHead + in + ", alpn: ['']}]", "1 to 255 bytes"},
           {kHead + in + "}]\ntls: {ticket_key_rotation: 0ms}", "bad duration"},
           {kHead + in + "}]\ntls: {session_cache_size: 100001}", "from 0 to 100000"},
           {kHead + in + "}]\ntls: {session_cache_size: -1}", "tls.session_cache_size must be"},
           {kHead + in + "}]\ntls: {kept_buffers: 20001}", "tls.kept_buffers must be"},
           {kHead + in + "}]\ntls: {kept_buffers: many}", "from 0 to 20000"},
           {kHead + in + "}]\ntls: {record_layer: gnutls}",
            "is not meshid (the default) or openssl"},
           {"trust_domain: example.org\ncertificates: {sds: {certificate: default}}\n" + in + "}]",
            "needs socket"},
           {"trust_domain: example.org\ncertificates: {sds: {socket: s, certificate: A, "
            "validation: A}}\n" +
                in + "}]",
            "two different resource names"},
           {"trust_domain: example.org\ncertificates: {cert_file: c, sds: {socket: s}}\n" + in +
                "}]",
            "either files or sds"},
           {"trust_domain: example.org\ncertificates: {sds: {socket: s, port: 1}}\n" + in + "}]",
            "unknown key"},
       }) {
    auto r = parseProxyConfig(b.yaml, "/");
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << b.yaml;
    MESHID_EXPECT_CONTAINS(messageOf(r), b.why) << b.yaml;
  }
}

// "ms" has its own parser; it must keep parseDuration's cap, which keeps
// now() + a timeout (in nanoseconds) from overflowing.
TEST(ProxyConfig, MillisecondDurationsHaveTheSameCapAsTheOthers) {
  const std::string in = "inbound: [{name: a, listen: 1.2.3.4:1, forward: 1.2.3.4:2}]\n";
  for (const char* d : {"9223372036854775807ms", "99999999999999999999ms", "3153600000001ms"}) {
    auto r = parseProxyConfig(kHead + in + "timeouts: {handshake: " + d + "}", "/");
    EXPECT_EQ(errorOf(r).code, Code::kOutOfRange) << d;
    MESHID_EXPECT_CONTAINS(messageOf(r), "100 years") << d;
  }
  auto century = parseProxyConfig(kHead + in + "timeouts: {idle: 3153600000000ms}", "/");
  MESHID_ASSERT_OK(century);
  EXPECT_EQ(century->idle_timeout, std::chrono::hours(24 * 365 * 100));
}

TEST(ProxyConfig, CertificatesFromTheAgentsSdsSocket) {
  auto c = parseProxyConfig(R"(
trust_domain: example.org
certificates:
  sds: {socket: run/agent.sock, initial_fetch_timeout: 5s}
inbound: [{name: a, listen: 1.2.3.4:1, forward: 1.2.3.4:2, alpn: [h2, http/1.1]}]
tls: {ticket_key_rotation: 10m, session_cache_size: 0, kept_buffers: 0, record_layer: openssl}
)",
                            "/etc/meshid");
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->sds.socket, "/etc/meshid/run/agent.sock");
  EXPECT_EQ(c->sds.certificate, "default");  // Istio's names unless told
  EXPECT_EQ(c->sds.validation, "ROOTCA");
  EXPECT_EQ(c->sds.initial_fetch_timeout, 5s);
  EXPECT_TRUE(c->certificates.cert_file.empty());
  EXPECT_EQ(c->inbound[0].alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(c->ticket_key_rotation, 10min);
  EXPECT_EQ(c->session_cache_size, 0u);
  EXPECT_EQ(c->kept_buffers, 0u);
  EXPECT_FALSE(c->own_record_layer);
}

TEST(ProxyConfig, AReloadTakesModesAllowListsAndExpectedIdsOnly) {
  const std::string listeners = R"(
inbound: [{name: in, listen: 1.2.3.4:1, forward: 1.2.3.4:2, mode: %s, allow: [%s]}]
outbound: [{name: out, listen: 1.2.3.4:3, destination: 1.2.3.4:4, expected_ids: [%s]}]
)";
  auto make = [&](const char* mode, const char* allow, const char* expected,
                  const std::string& extra = "") {
    char buf[1024];
    std::snprintf(buf, sizeof buf, listeners.c_str(), mode, allow, expected);
    return orThrow(parseProxyConfig(kHead + buf + extra, "/"));
  };
  const auto running = make("STRICT", "spiffe://example.org/ns/a/sa/b", "spiffe://example.org");
  MESHID_EXPECT_OK(checkReloadable(
      running, make("PERMISSIVE", "spiffe://example.org/ns/c/", "spiffe://example.org/ns/w/sa/w")));
  struct Change {
    std::string extra;
    const char* named;
  };
  for (const Change& c : std::vector<Change>{
           {"workers: 3", "workers"},
           {"admin_listen: 127.0.0.1:1", "admin_listen"},
           {"timeouts: {idle: 1s}", "timeouts"},
           {"tls: {ciphers: ECDHE-ECDSA-AES128-GCM-SHA256}", "tls"},
           {"tls: {session_cache_size: 10}", "tls"},
           {"tls: {kept_buffers: 10}", "tls"},
           {"tls: {record_layer: openssl}", "tls"},
           {"busy_poll: 50us", "busy_poll"},
           {"busy_poll: 0", "busy_poll"},
           {"busy_poll: 5us", "busy_poll"},  // auto's budget, but fixed
       }) {
    auto r = checkReloadable(
        running, make("STRICT", "spiffe://example.org/ns/a/sa/b", "spiffe://example.org", c.extra));
    EXPECT_EQ(errorOf(r).code, Code::kFailedPrecondition) << c.extra;
    MESHID_EXPECT_CONTAINS(messageOf(r), c.named);
    MESHID_EXPECT_CONTAINS(messageOf(r), "restart");
  }
  auto moved = orThrow(
      parseProxyConfig(kHead + "inbound: [{name: in, listen: 1.2.3.4:9, forward: 1.2.3.4:2}]\n"
                               "outbound: [{name: out, listen: 1.2.3.4:3, destination: 1.2.3.4:4}]",
                       "/"));
  MESHID_EXPECT_CONTAINS(messageOf(checkReloadable(running, moved)), "inbound listener in");
}

}  // namespace
}  // namespace meshid::proxy
