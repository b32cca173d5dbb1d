#include "ca/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "unit/common/test_util.h"

namespace meshid::ca {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using meshid::testing::errorOf;
using meshid::testing::messageOf;
using meshid::testing::TempDir;

const fs::path kBase = "/etc/meshid";

Result<CaConfig> parse(const std::string& yaml) {
  return parseCaConfig(yaml, kBase);
}

constexpr const char* kMinimal = R"(
trust_domain: example.org
state_dir: /var/lib/meshid
)";

TEST(CaConfig, MinimalConfigGetsDefaults) {
  auto c = parse(kMinimal);
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->trust_domain.name(), "example.org");
  EXPECT_EQ(c->state_dir, fs::path("/var/lib/meshid"));
  EXPECT_EQ(c->listen, "127.0.0.1:15012");
  EXPECT_EQ(c->admin_listen, "127.0.0.1:15014");
  EXPECT_EQ(c->serving.spiffe_id, "spiffe://example.org/meshid/ca");
  EXPECT_EQ(c->signer.type, "selfsigned");
  EXPECT_EQ(c->policy.default_ttl, 24h);
  EXPECT_EQ(c->policy.max_ttl, 24h);
  EXPECT_TRUE(c->mtls);
  EXPECT_TRUE(c->join_tokens);
  EXPECT_FALSE(c->kubernetes.enabled);
  EXPECT_EQ(c->databasePath(), fs::path("/var/lib/meshid/meshid-ca.db"));
  EXPECT_EQ(c->records.retention, 90 * 24h);
  EXPECT_EQ(c->records.prune_interval, 1h);
}

TEST(CaConfig, StoreRetention) {
  auto c = parse(std::string(kMinimal) + "store:\n  retention: 30d\n  prune_interval: 10m\n");
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->records.retention, 30 * 24h);
  EXPECT_EQ(c->records.prune_interval, 10min);
  auto forever = parse(std::string(kMinimal) + "store:\n  retention: 0\n");
  MESHID_ASSERT_OK(forever);
  EXPECT_EQ(forever->records.retention, 0s);
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"store:\n  retention: -1d\n", "store.retention"},
           {"store:\n  retention: 90\n", "store.retention"},
           {"store:\n  retention: never\n", "store.retention"},
           {"store:\n  prune_interval: 0\n", "store.prune_interval"},
           {"store:\n  keep: 1d\n", "keep"}}) {
    auto r = parse(std::string(kMinimal) + yaml);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << yaml;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, key);
  }
}

TEST(CaConfig, FullValidConfig) {
  auto c = parse(R"(
trust_domain: mesh.example.com
listen: 0.0.0.0:15012
admin_listen: 127.0.0.1:0
state_dir: /var/lib/meshid-ca
serving:
  spiffe_id: spiffe://mesh.example.com/istiod
  dns_names: [istiod.istio-system.svc, meshid-ca]
  ip_addresses: ["127.0.0.1", "::1"]
  lifetime: 12h
signer:
  type: files
  dir: /etc/cacerts
  key_type: ec-p384
  root_ttl: 3650d
  intermediate_ttl: 90d
  poll_interval: 5s
issuance:
  default_ttl: 1h
  max_ttl: 48h
  allowed_key_types: [ec-p256, rsa-2048]
limits:
  max_concurrent_signings: 8
  max_message_bytes: 8192
  signing_workers: 3
  malloc_thread_cache: 0
authentication:
  mtls: false
  join_tokens: false
  kubernetes:
    jwks_file: /var/run/jwks.json
    issuer: https://kubernetes.default.svc.cluster.local
    audiences: [istio-ca, meshid]
    refresh: 10m
)");
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->trust_domain.name(), "mesh.example.com");
  EXPECT_EQ(c->listen, "0.0.0.0:15012");
  EXPECT_EQ(c->admin_listen, "127.0.0.1:0");
  EXPECT_EQ(c->state_dir, fs::path("/var/lib/meshid-ca"));
  EXPECT_EQ(c->serving.spiffe_id, "spiffe://mesh.example.com/istiod");
  EXPECT_EQ(c->serving.dns_names,
            (std::vector<std::string>{"istiod.istio-system.svc", "meshid-ca"}));
  EXPECT_EQ(c->serving.ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_EQ(c->serving.lifetime, 12h);
  EXPECT_EQ(c->signer.type, "files");
  EXPECT_EQ(c->signer.dir, fs::path("/etc/cacerts"));
  EXPECT_EQ(c->signer.key_type, pki::KeyType::kEcP384);
  EXPECT_EQ(c->signer.root_ttl, 3650 * 24h);
  EXPECT_EQ(c->signer.intermediate_ttl, 90 * 24h);
  EXPECT_EQ(c->signer.poll_interval, 5s);
  EXPECT_EQ(c->policy.default_ttl, 1h);
  EXPECT_EQ(c->policy.max_ttl, 48h);
  EXPECT_EQ(c->policy.allowed_key_types,
            (std::set<pki::KeyType>{pki::KeyType::kEcP256, pki::KeyType::kRsa2048}));
  EXPECT_EQ(c->max_concurrent_signings, 8u);
  EXPECT_EQ(c->max_message_bytes, 8192u);
  EXPECT_EQ(c->signing_workers, 3u);
  EXPECT_EQ(c->malloc_thread_cache, 0u);
  EXPECT_FALSE(c->mtls);
  EXPECT_FALSE(c->join_tokens);
  EXPECT_TRUE(c->kubernetes.enabled);
  EXPECT_EQ(c->kubernetes.jwks_file, fs::path("/var/run/jwks.json"));
  EXPECT_TRUE(c->kubernetes.jwks_url.empty());
  EXPECT_EQ(c->kubernetes.issuer, "https://kubernetes.default.svc.cluster.local");
  EXPECT_EQ(c->kubernetes.audiences, (std::vector<std::string>{"istio-ca", "meshid"}));
  EXPECT_EQ(c->kubernetes.refresh, 10min);
}

TEST(CaConfig, DelegationGrants) {
  auto c = parse(std::string(kMinimal) + R"(
delegation:
  - agent: spiffe://example.org/meshid/agent/node1
    may_request: [spiffe://example.org/ns/web/, spiffe://example.org/ns/db/sa/pg]
)");
  MESHID_ASSERT_OK(c);
  ASSERT_EQ(c->policy.delegations.size(), 1u);
  EXPECT_EQ(c->policy.delegations[0].agent.str(), "spiffe://example.org/meshid/agent/node1");
  EXPECT_EQ(c->policy.delegations[0].may_request.size(), 2u);

  struct Bad {
    const char* yaml;
    const char* why;
  };
  for (const Bad& b : {
           Bad{"delegation: {agent: x}", "list"},
           Bad{"delegation: [{agent: spiffe://example.org/a}]", "may_request"},
           Bad{"delegation: [{agent: spiffe://other.org/a, may_request: []}]", "trust domain"},
           Bad{"delegation: [{agent: spiffe://example.org/a, may_request: [spiffe://other.org/x]}]",
               "outside"},
           Bad{"delegation: [{agent: spiffe://example.org/a, may_request: "
               "[\"spiffe://example.org/a//\"]}]",
               "delegation.may_request"},
           Bad{"delegation: [{agent: spiffe://example.org/a, may_request: [], extra: 1}]",
               "unknown key"},
       }) {
    auto r = parse(std::string(kMinimal) + b.yaml + "\n");
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << b.yaml;
    MESHID_EXPECT_CONTAINS(messageOf(r), b.why);
  }
}

TEST(CaConfig, UnknownKeyIsRefusedByName) {
  auto top = parse(std::string(kMinimal) + "listne: 0.0.0.0:1\n");
  EXPECT_EQ(errorOf(top).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(top).message, "listne");

  for (const auto& [section, key] :
       std::vector<std::pair<std::string, std::string>>{{"serving", "lifetme"},
                                                        {"signer", "pol_interval"},
                                                        {"issuance", "maxttl"},
                                                        {"limits", "max_signings"},
                                                        {"authentication", "oidc"}}) {
    auto r = parse(std::string(kMinimal) + section + ":\n  " + key + ": 1\n");
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << section;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, key);
    MESHID_EXPECT_CONTAINS(errorOf(r).message, section);
  }
  auto nested = parse(std::string(kMinimal) +
                      "authentication:\n  kubernetes:\n    jwks_file: /j\n    audience: x\n");
  EXPECT_EQ(errorOf(nested).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(nested).message, "\"audience\"");
}

TEST(CaConfig, RequiredKeysAreRequired) {
  auto no_td = parse("state_dir: /x\n");
  EXPECT_EQ(errorOf(no_td).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(no_td).message, "trust_domain");
  auto no_state = parse("trust_domain: example.org\n");
  EXPECT_EQ(errorOf(no_state).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(no_state).message, "state_dir");
}

TEST(CaConfig, BadTrustDomainIsRefused) {
  EXPECT_EQ(errorOf(parse("trust_domain: Example.ORG\nstate_dir: /x\n")).code,
            Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parse("trust_domain: 'a b'\nstate_dir: /x\n")).code, Code::kInvalidArgument);
}

TEST(CaConfig, ServingIdentityMustBeInTheTrustDomain) {
  auto r = parse(std::string(kMinimal) + "serving:\n  spiffe_id: spiffe://other.org/ca\n");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "trust domain");
}

TEST(CaConfig, FilesSignerWithoutDirIsRefused) {
  auto r = parse(std::string(kMinimal) + "signer:\n  type: files\n");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "signer.dir");
}

TEST(CaConfig, UnknownSignerTypeIsRefused) {
  auto r = parse(std::string(kMinimal) + "signer:\n  type: vault\n");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "vault");
}

TEST(CaConfig, UnknownKeyTypeIsRefused) {
  EXPECT_EQ(errorOf(parse(std::string(kMinimal) + "signer:\n  key_type: dsa-1024\n")).code,
            Code::kInvalidArgument);
  EXPECT_EQ(
      errorOf(parse(std::string(kMinimal) + "issuance:\n  allowed_key_types: [rsa-1024]\n")).code,
      Code::kInvalidArgument);
}

TEST(CaConfig, DefaultTtlAboveMaxTtlIsRefused) {
  auto r = parse(std::string(kMinimal) + "issuance:\n  default_ttl: 48h\n  max_ttl: 24h\n");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "default_ttl");
  // Raising only the default past the (default) maximum is refused too.
  EXPECT_EQ(errorOf(parse(std::string(kMinimal) + "issuance:\n  default_ttl: 25h\n")).code,
            Code::kInvalidArgument);
  // Equal is fine.
  MESHID_EXPECT_OK(parse(std::string(kMinimal) + "issuance:\n  default_ttl: 2h\n  max_ttl: 2h\n"));
}

TEST(CaConfig, JwksUrlMustBeHttps) {
  auto r = parse(std::string(kMinimal) +
                 "authentication:\n  kubernetes:\n    jwks_url: http://k8s/openid/v1/jwks\n");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(r).message, "https");
  auto ok = parse(std::string(kMinimal) +
                  "authentication:\n  kubernetes:\n    jwks_url: https://k8s/openid/v1/jwks\n"
                  "    jwks_ca_file: k8s-ca.pem\n");
  MESHID_ASSERT_OK(ok);
  EXPECT_EQ(ok->kubernetes.jwks_url, "https://k8s/openid/v1/jwks");
  EXPECT_EQ(ok->kubernetes.jwks_ca_file, kBase / "k8s-ca.pem");
}

TEST(CaConfig, JwksFileAndUrlTogetherAreRefused) {
  auto both = parse(std::string(kMinimal) +
                    "authentication:\n  kubernetes:\n    jwks_file: /j.json\n"
                    "    jwks_url: https://k8s/jwks\n");
  EXPECT_EQ(errorOf(both).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(both).message, "exactly one");
  auto neither =
      parse(std::string(kMinimal) + "authentication:\n  kubernetes:\n    issuer: https://x\n");
  EXPECT_EQ(errorOf(neither).code, Code::kInvalidArgument);
}

TEST(CaConfig, BadDurationsAreRefusedWithTheirKey) {
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"issuance:\n  default_ttl: 10\n", "issuance.default_ttl"},
           {"issuance:\n  max_ttl: 1x\n", "issuance.max_ttl"},
           {"issuance:\n  max_ttl: -1h\n", "issuance.max_ttl"},
           {"issuance:\n  max_ttl: 0s\n", "issuance.max_ttl"},
           {"serving:\n  lifetime: ''\n", "serving.lifetime"},
           {"signer:\n  root_ttl: forever\n", "signer.root_ttl"},
           {"signer:\n  intermediate_ttl: 1.5h\n", "signer.intermediate_ttl"},
           {"signer:\n  poll_interval: 200ms\n", "signer.poll_interval"},
           {"authentication:\n  kubernetes:\n    jwks_file: /j\n    refresh: soon\n",
            "authentication.kubernetes.refresh"}}) {
    auto r = parse(std::string(kMinimal) + yaml);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << yaml;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, key);
  }
  auto huge = parse(std::string(kMinimal) + "signer:\n  root_ttl: 1000000d\n");
  EXPECT_FALSE(huge.ok());
}

TEST(CaConfig, WrongValueTypesAreInvalidArgument) {
  for (std::string yaml :
       {"limits:\n  max_concurrent_signings: lots\n", "limits:\n  max_concurrent_signings: -1\n",
        "authentication:\n  mtls: maybe\n", "serving:\n  dns_names: {a: b}\n",
        "issuance:\n  max_ttl: [1h]\n", "listen: [a, b]\n"}) {
    auto r = parse(std::string(kMinimal) + yaml);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << yaml;
  }
}

TEST(CaConfig, LimitsAreChecked) {
  EXPECT_EQ(errorOf(parse(std::string(kMinimal) + "limits:\n  max_concurrent_signings: 0\n")).code,
            Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parse(std::string(kMinimal) + "limits:\n  max_message_bytes: 100\n")).code,
            Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parse(std::string(kMinimal) + "limits:\n  signing_workers: 1000\n")).code,
            Code::kInvalidArgument);
  auto cache = parse(std::string(kMinimal) + "limits:\n  malloc_thread_cache: 65536\n");
  EXPECT_EQ(errorOf(cache).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(cache).message,
                         "malloc_thread_cache 0 (glibc's default) to 65535");
  for (const char* bad : {"-1", "many", "[64]", "6.5"}) {
    auto r = parse(std::string(kMinimal) + "limits:\n  malloc_thread_cache: " + bad + "\n");
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << bad;
  }
}

TEST(CaConfig, MallocThreadCacheDefaultsTo64) {
  auto c = parse(kMinimal);
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->malloc_thread_cache, 64u);
}

TEST(CaConfig, EmptyFileIsRefused) {
  for (std::string yaml : {"", "\n\n", "# only a comment\n", "~\n"}) {
    auto r = parse(yaml);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << yaml;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, "empty");
  }
}

TEST(CaConfig, NotAMappingIsRefused) {
  for (std::string yaml : {"- a\n- b\n", "just a string\n", "42\n"}) {
    auto r = parse(yaml);
    EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument) << yaml;
    MESHID_EXPECT_CONTAINS(errorOf(r).message, "mapping");
  }
  auto section = parse(std::string(kMinimal) + "signer: files\n");
  EXPECT_EQ(errorOf(section).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(section).message, "signer must be a mapping");
}

TEST(CaConfig, MalformedYamlIsInvalidArgument) {
  auto r = parse("trust_domain: [unclosed\n");
  EXPECT_EQ(errorOf(r).code, Code::kInvalidArgument);
  EXPECT_EQ(errorOf(parse("a: b\n  c: d\n: :\n")).code, Code::kInvalidArgument);
}

TEST(CaConfig, RelativePathsResolveAgainstBaseDir) {
  auto c = parse(R"(
trust_domain: example.org
state_dir: state
signer:
  type: files
  dir: ../cacerts
authentication:
  kubernetes:
    jwks_file: k8s/jwks.json
)");
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->state_dir, kBase / "state");
  EXPECT_EQ(c->signer.dir, kBase / "../cacerts");
  EXPECT_EQ(c->kubernetes.jwks_file, kBase / "k8s/jwks.json");
  EXPECT_EQ(c->databasePath(), kBase / "state" / "meshid-ca.db");
}

TEST(CaConfig, LoadResolvesAgainstTheFilesFolder) {
  TempDir dir;
  fs::create_directory(dir / "conf");
  std::ofstream(dir / "conf" / "ca.yaml") << "trust_domain: example.org\nstate_dir: state\n";
  auto c = loadCaConfig(dir / "conf" / "ca.yaml");
  MESHID_ASSERT_OK(c);
  EXPECT_EQ(c->state_dir, dir / "conf" / "state");
}

TEST(CaConfig, LoadErrorsNameTheFile) {
  TempDir dir;
  std::ofstream(dir / "ca.yaml") << "trust_domain: example.org\nstate_dir: s\nbogus: 1\n";
  auto c = loadCaConfig(dir / "ca.yaml");
  EXPECT_EQ(errorOf(c).code, Code::kInvalidArgument);
  MESHID_EXPECT_CONTAINS(errorOf(c).message, (dir / "ca.yaml").string());
  MESHID_EXPECT_CONTAINS(errorOf(c).message, "bogus");
  EXPECT_FALSE(loadCaConfig(dir / "missing.yaml").ok());
}

}  // namespace
}  // namespace meshid::ca
