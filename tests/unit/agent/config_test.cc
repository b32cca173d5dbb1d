#include "agent/config.h"

#include <gtest/gtest.h>

#include <csignal>

#include "unit/common/test_util.h"

namespace meshid::agent {
namespace {

using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::messageOf;

const std::filesystem::path kBase = "/etc/meshid";

constexpr const char* kMinimal = R"(
trust_domain: example.org
ca:
  addresses: [ca.example.org:15012]
  root_file: root.pem
credentials:
  jwt_token_file: /var/run/secrets/tokens/istio-token
)";

Result<AgentConfig> parse(const std::string& yaml, const Environment& env = {}) {
  return parseAgentConfig(yaml, kBase, env);
}

TEST(AgentConfig, MinimalConfigGetsIstioDefaults) {
  auto c = parse(kMinimal);
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->ca.addresses, std::vector<std::string>{"ca.example.org:15012"});
  EXPECT_EQ(c->ca.root_file, kBase / "root.pem");
  EXPECT_EQ(c->ttl, 24h);
  EXPECT_EQ(c->rotation.grace_ratio, 0.5);
  EXPECT_EQ(c->key_type, pki::KeyType::kEcP256);
  EXPECT_EQ(c->admin_listen, "127.0.0.1:15020");
  EXPECT_TRUE(c->entries.empty());
}

TEST(AgentConfig, EntriesWithSelectorsAndSinks) {
  auto c = parse(std::string(kMinimal) + R"(
sockets: {sds: /run/meshid/sds.sock, workload_api: wl.sock, admin: /run/meshid/admin.sock}
rotation: {ttl: 1h, key_type: rsa-2048, grace_ratio: 0.4, grace_ratio_jitter: 0.05,
           initial_backoff: 500ms, max_backoff: 30s, workers: 2}
entries:
  - spiffe_id: spiffe://example.org/ns/web/sa/web
    selectors: {uid: 1000, gid: 1000, path: /usr/bin/envoy}
  - spiffe_id: spiffe://example.org/ns/files/sa/nginx
    file_sink: {dir: certs, reload_command: "nginx -s reload", signal_pid_file: /run/x.pid,
                signal: USR1}
bundle_sinks:
  - path: /etc/ssl/mesh/root-cert.pem
)");
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->workload_api_socket, kBase / "wl.sock");
  EXPECT_EQ(c->ttl, 1h);
  EXPECT_EQ(c->key_type, pki::KeyType::kRsa2048);
  EXPECT_EQ(c->rotation.initial_backoff, 500ms);
  EXPECT_EQ(c->workers, 2u);
  ASSERT_EQ(c->entries.size(), 2u);
  EXPECT_EQ(c->entries[0].selectors.uid, 1000u);
  EXPECT_EQ(c->entries[0].selectors.path, "/usr/bin/envoy");
  ASSERT_TRUE(c->entries[1].file_sink);
  EXPECT_EQ(c->entries[1].file_sink->dir, kBase / "certs");
  EXPECT_EQ(c->entries[1].file_sink->key_file, "key.pem");
  EXPECT_EQ(c->entries[1].file_sink->signal, SIGUSR1);
  ASSERT_EQ(c->bundle_sinks.size(), 1u);
}

TEST(AgentConfig, IstioEnvironmentOverridesTheFile) {
  auto c = parse(std::string(kMinimal) + "rotation: {ttl: 1h}\n",
                 {{"SECRET_TTL", "2h30m0s"},
                  {"SECRET_GRACE_PERIOD_RATIO", "0.3"},
                  {"SECRET_GRACE_PERIOD_RATIO_JITTER", "0.02"}});
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->ttl, 150min);
  EXPECT_DOUBLE_EQ(c->rotation.grace_ratio, 0.3);
  EXPECT_DOUBLE_EQ(c->rotation.grace_ratio_jitter, 0.02);

  EXPECT_EQ(errorOf(parse(kMinimal, {{"SECRET_TTL", "24"}})).code, Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parse(kMinimal, {{"SECRET_GRACE_PERIOD_RATIO", "half"}})).code,
            Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parse(kMinimal, {{"SECRET_GRACE_PERIOD_RATIO", "1.5"}})).code,
            Code::kInvalidArgument);
}

TEST(AgentConfig, JoinTokenNeedsAgentIdAndStateDir) {
  const std::string base = R"(
trust_domain: example.org
ca: {addresses: [a:1], pinned_sha256: "AB:)" +
                           std::string(62, 'c') + "\"}\n";
  auto ok =
      parse(base + R"(credentials: {join_token_file: t, agent_id: spiffe://example.org/agent/n1}
state_dir: /var/lib/meshid-agent
)");
  MESHID_ASSERT_OK(ok);
  EXPECT_EQ(ok->ca.pinned_sha256, "ab" + std::string(62, 'c'));
  EXPECT_EQ(errorOf(parse(base + "credentials: {join_token_file: t}\nstate_dir: s\n")).code,
            Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parse(base + "credentials: {join_token_file: t, agent_id: "
                                 "spiffe://example.org/a}\n"))
                .code,
            Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(
      messageOf(parse(base + "credentials: {join_token_file: t, agent_id: spiffe://other.org/a}\n"
                             "state_dir: s\n")),
      "trust domain");
}

TEST(AgentConfig, MistakesAreRefusedWithTheReason) {
  struct Bad {
    std::string yaml;
    const char* why;
  };
  const std::string td = "trust_domain: example.org\n";
  const std::string cred = "credentials: {jwt_token_file: t}\n";
  const std::string ca = "ca: {addresses: [a:1], root_file: r}\n";
  for (const Bad& b : std::vector<Bad>{
           {"", "empty"},
           {"trust_domain: [", "agent config"},
           {td + ca + cred + "colour: blue\n", "unknown key \"colour\""},
           {ca + cred, "trust_domain is required"},
           {td + cred, "ca is required"},
           {td + "ca: {addresses: [], root_file: r}\n" + cred, "at least one"},
           {td + "ca: {addresses: [a:1]}\n" + cred, "exactly one of root_file"},
           {td + "ca: {addresses: [a:1], root_file: r, pinned_sha256: abc}\n" + cred, "64 hex"},
           {td + "ca: {addresses: [a:1], pinned_sha256: " + std::string(64, 'z') + "}\n" + cred,
            "hex"},
           {td + ca, "exactly one of jwt_token_file"},
           {td + ca + cred + "rotation: {ttl: 1s}\n", "at least 2s"},
           {td + ca + cred + "rotation: {agent_ttl: 1s}\n", "at least 2s"},
           {td + ca + cred + "rotation: {ttl: 10}\n", "rotation.ttl"},
           {td + ca + cred + "rotation: {key_type: ed25519}\n", "Envoy"},
           {td + ca + cred + "rotation: {grace_ratio: 1}\n", "rotation"},
           {td + ca + cred + "rotation: {workers: 0}\n", "workers"},
           {td + ca + cred + "sockets: {sds: /" + std::string(120, 'a') + "}\n", "too long"},
           {td + ca + cred + "entries: [{spiffe_id: spiffe://other.org/x, selectors: {uid: 1}}]\n" +
                "sockets: {sds: s}\n",
            "outside the trust domain"},
           {td + ca + cred + "entries: [{spiffe_id: spiffe://example.org/x}]\n", "needs selectors"},
           {td + ca + cred + "entries: [{spiffe_id: spiffe://example.org/x, selectors: {}}]\n",
            "selectors is empty"},
           {td + ca + cred +
                "entries: [{spiffe_id: spiffe://example.org/x, selectors: {uid: 1}}]\n",
            "sockets.sds"},
           {td + ca + cred +
                "sockets: {sds: s}\nentries: [{spiffe_id: spiffe://example.org/x, "
                "selectors: {uid: 1}}, {spiffe_id: spiffe://example.org/x, "
                "selectors: {uid: 2}}]\n",
            "twice"},
           {td + ca + cred +
                "sockets: {sds: s}\nentries: [{spiffe_id: spiffe://example.org/x, "
                "selectors: {path: bin/envoy}}]\n",
            "absolute"},
           {td + ca + cred +
                "entries: [{spiffe_id: spiffe://example.org/x, file_sink: {dir: d, "
                "key_file: ../k}}]\n",
            "plain file name"},
           {td + ca + cred +
                "entries: [{spiffe_id: spiffe://example.org/x, file_sink: {dir: d, "
                "key_file: cert-chain.pem}}]\n",
            "must differ"},
           {td + ca + cred +
                "entries: [{spiffe_id: spiffe://example.org/x, file_sink: {dir: d, "
                "signal: KILL}}]\n",
            "signal"},
           {td + ca + cred + "entries: [{spiffe_id: spiffe://example.org/x, file_sink: {}}]\n",
            "file_sink.dir"},
       }) {
    auto r = parse(b.yaml);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << b.yaml;
    MESHID_EXPECT_CONTAINS(messageOf(r), b.why) << b.yaml;
  }
}

TEST(GoDuration, IstioSpellings) {
  EXPECT_EQ(*parseGoDuration("24h0m0s"), 24h);
  EXPECT_EQ(*parseGoDuration("1h30m"), 90min);
  EXPECT_EQ(*parseGoDuration("90s"), 90s);
  EXPECT_EQ(*parseGoDuration("500ms"), 500ms);
  EXPECT_EQ(*parseGoDuration("1.5h"), 90min);
  EXPECT_EQ(*parseGoDuration("2d"), 48h);
  for (const char* bad :
       {"", "24", "h", "5x", "-1s", "0s", "1e9999h", "1..5s", "1h 30m", "99999999999999999999h"}) {
    EXPECT_EQ(errorOf(parseGoDuration(bad)).code, Code::kInvalidArgument) << bad;
  }
  EXPECT_EQ(errorOf(parseGoDuration(std::string(100, '1') + "s")).code, Code::kInvalidArgument);
}

}  // namespace
}  // namespace meshid::agent
