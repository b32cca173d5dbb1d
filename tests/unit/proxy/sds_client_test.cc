// The SDS client's checks of what the agent sends and the ACK/NACK it
// answers with (PROTOCOLS.md §2), without a stream.
#include "proxy/sds_client.h"

#include <gtest/gtest.h>

#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "proxy/snapshot_store.h"
#include "unit/common/test_util.h"
#include "unit/proxy/tls_test_material.h"

namespace meshid::proxy {
namespace {

namespace discovery = envoy::service::discovery::v3;
namespace tls = envoy::extensions::transport_sockets::tls::v3;
using meshid::testing::messageOf;
using meshid::testing::orThrow;

constexpr const char* kType =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

tls::Secret certSecret(const std::string& name, const std::string& chain, const std::string& key) {
  tls::Secret s;
  s.set_name(name);
  s.mutable_tls_certificate()->mutable_certificate_chain()->set_inline_bytes(chain);
  s.mutable_tls_certificate()->mutable_private_key()->set_inline_bytes(key);
  return s;
}

tls::Secret rootSecret(const std::string& name, const std::string& roots) {
  tls::Secret s;
  s.set_name(name);
  s.mutable_validation_context()->mutable_trusted_ca()->set_inline_string(roots);
  return s;
}

discovery::DiscoveryResponse response(std::initializer_list<tls::Secret> secrets) {
  discovery::DiscoveryResponse r;
  r.set_type_url(kType);
  r.set_version_info("v7");
  r.set_nonce("n7");
  for (const auto& s : secrets)
    r.add_resources()->PackFrom(s);
  return r;
}

TEST(SdsClient, TakesTheTwoSecretsItAskedFor) {
  auto m = readSdsResponse(
      response({certSecret("default", "CHAIN", "KEY"), rootSecret("ROOTCA", "ROOTS")}), "default",
      "ROOTCA");
  MESHID_ASSERT_OK(m);
  EXPECT_EQ(*m->chain_pem, "CHAIN");
  EXPECT_EQ(*m->key_pem, "KEY");
  EXPECT_EQ(*m->bundle_pem, "ROOTS");
  EXPECT_TRUE(m->complete());
}

TEST(SdsClient, AResponseWithOneSecretKeepsTheOther) {
  SdsMaterial held = orThrow(
      readSdsResponse(response({certSecret("default", "C1", "K1"), rootSecret("ROOTCA", "R1")}),
                      "default", "ROOTCA"));
  auto bundle_only =
      orThrow(readSdsResponse(response({rootSecret("ROOTCA", "R2")}), "default", "ROOTCA"));
  EXPECT_FALSE(bundle_only.complete());
  held.merge(bundle_only);
  EXPECT_EQ(*held.chain_pem, "C1");
  EXPECT_EQ(*held.key_pem, "K1");
  EXPECT_EQ(*held.bundle_pem, "R2");
}

TEST(SdsClient, RefusesWhatItDidNotAskForOrCannotUse) {
  tls::Secret from_file = certSecret("default", "", "");
  from_file.mutable_tls_certificate()->mutable_certificate_chain()->set_filename("/etc/passwd");
  tls::Secret no_cert;
  no_cert.set_name("default");
  struct Bad {
    discovery::DiscoveryResponse r;
    const char* why;
  };
  auto wrong_type = response({rootSecret("ROOTCA", "R")});
  wrong_type.set_type_url("type.googleapis.com/envoy.config.cluster.v3.Cluster");
  auto not_a_secret = response({});
  not_a_secret.add_resources()->PackFrom(discovery::DiscoveryRequest());
  auto too_big = response({rootSecret("ROOTCA", std::string((1 << 20) + 1, 'x'))});
  for (const Bad& b : std::vector<Bad>{
           {wrong_type, "type_url"},
           {response({}), "0 resources"},
           {not_a_secret, "not a Secret"},
           {response({rootSecret("ROOTCA", "R"), rootSecret("ROOTCA", "R")}), "sent twice"},
           {response({rootSecret("other", "R")}), "not asked for"},
           {response({from_file}), "only inline"},
           {response({no_cert}), "no tls_certificate"},
           {response({rootSecret("default", "R")}), "no tls_certificate"},
           {response({certSecret("ROOTCA", "C", "K")}), "no validation_context"},
           {too_big, "larger than 1 MiB"},
           {response(
                {certSecret("default", "C", "K"), rootSecret("ROOTCA", "R"), rootSecret("x", "y")}),
            "3 resources"},
       }) {
    auto r = readSdsResponse(b.r, "default", "ROOTCA");
    EXPECT_FALSE(r.ok()) << b.why;
    MESHID_EXPECT_CONTAINS(messageOf(r), b.why);
  }
}

TEST(SdsClient, PublishesACompleteSetOnceAndKeepsWhatItHeldOnARefusal) {
  using namespace std::chrono_literals;
  ProxyConfig config(orThrow(pki::TrustDomain::parse("example.org")));
  FakeClock clock(std::chrono::system_clock::now());
  SnapshotStore store(config, clock);
  auto ca = pki::testing::TestCa::create({.now = clock.now() - 1h});
  auto pem = testing::proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock.now() - 1min);
  SdsMaterial held;

  auto cert_only = response({certSecret("default", pem.chain, pem.key)});
  EXPECT_FALSE(orThrow(applySdsResponse(cert_only, config, held, store))) << "not complete yet";
  EXPECT_EQ(store.current(), nullptr);
  auto roots = response({rootSecret("ROOTCA", pem.bundle)});
  EXPECT_TRUE(orThrow(applySdsResponse(roots, config, held, store)));
  auto first = store.current();
  ASSERT_NE(first, nullptr);
  EXPECT_FALSE(orThrow(applySdsResponse(roots, config, held, store))) << "the same set again";

  auto other = testing::proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock.now() - 1min);
  auto mismatched = response({certSecret("default", pem.chain, other.key)});
  auto r = applySdsResponse(mismatched, config, held, store);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(*held.key_pem, pem.key) << "a refused set is not held";
  EXPECT_EQ(store.current(), first);
  EXPECT_FALSE(applySdsResponse(response({}), config, held, store).ok());
  EXPECT_EQ(*held.chain_pem, pem.chain);
}

TEST(SdsClient, AcksWithTheVersionAndNacksWithTheLastAcceptedOne) {
  ProxyConfig config(orThrow(pki::TrustDomain::parse("example.org")));
  config.sds.socket = "/run/agent.sock";
  auto first = sdsSubscribe(config);
  EXPECT_EQ(first.type_url(), kType);
  EXPECT_TRUE(first.response_nonce().empty());  // a new stream: the current state at once
  ASSERT_EQ(first.resource_names_size(), 2);
  EXPECT_EQ(first.resource_names(0), "default");
  EXPECT_EQ(first.resource_names(1), "ROOTCA");
  EXPECT_TRUE(first.has_node());

  auto r = response({rootSecret("ROOTCA", "R")});
  auto ack = sdsAck(config, r);
  EXPECT_EQ(ack.version_info(), "v7");
  EXPECT_EQ(ack.response_nonce(), "n7");
  EXPECT_FALSE(ack.has_error_detail());
  EXPECT_FALSE(ack.has_node());  // the node goes in the first request only

  auto nack = sdsNack(config, r, "v6", "the private key does not match");
  EXPECT_EQ(nack.version_info(), "v6");
  EXPECT_EQ(nack.response_nonce(), "n7");
  ASSERT_TRUE(nack.has_error_detail());
  EXPECT_EQ(nack.error_detail().code(), 3);  // INVALID_ARGUMENT
  EXPECT_EQ(nack.error_detail().message(), "the private key does not match");
}

}  // namespace
}  // namespace meshid::proxy
