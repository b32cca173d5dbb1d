// Session-ticket key rotation, in virtual time: real in-memory handshakes
// between the snapshot's client and server contexts, the ticket key's period
// driven by a FakeClock. Stateless tickets carry TLS 1.2 resumption, and TLS
// 1.3's when the session cache is off (tls.session_cache_size: 0); each
// test runs both ways.
#include "proxy/ticket_keys.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <asio/ssl/context.hpp>

#include "proxy/tls_snapshot.h"
#include "unit/proxy/memory_handshake.h"
#include "unit/proxy/tls_test_material.h"

namespace meshid::proxy {
namespace {

using namespace std::chrono_literals;
using meshid::testing::orThrow;

struct TicketCase {
  const char* name;
  int max_version;  // the client's
  size_t session_cache_size;
};

// For test names in ctest's list (gtest would print the raw bytes).
void PrintTo(const TicketCase& c, std::ostream* os) {
  *os << c.name;
}

class TicketKeysTest : public ::testing::TestWithParam<TicketCase> {
 protected:
  TicketKeysTest() : clock_(std::chrono::system_clock::now()) {
    config_.ticket_key_rotation = 10min;
    config_.session_cache_size = GetParam().session_cache_size;
    auto ca = pki::testing::TestCa::create({.now = clock_.now() - 1h});
    auto pem = testing::proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock_.now() - 1min);
    snap_ = orThrow(buildSnapshot(config_, pem.chain, pem.key, pem.bundle, clock_, 1));
  }
  ProxyConfig config_{orThrow(pki::TrustDomain::parse("example.org"))};
  testing::Outcome handshake(const TlsSnapshot& snap, SSL_SESSION* resume) {
    return testing::handshake(snap, resume, GetParam().max_version);
  }
  FakeClock clock_;
  std::shared_ptr<const TlsSnapshot> snap_;
};

INSTANTIATE_TEST_SUITE_P(Resumption, TicketKeysTest,
                         ::testing::Values(TicketCase{"Tls12", TLS1_2_VERSION, 1024},
                                           TicketCase{"Tls13NoCache", 0, 0}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_P(TicketKeysTest, ATicketResumesWithinItsPeriodAndTheNext) {
  // Each check uses a ticket of its own from a full handshake (OpenSSL's
  // client offers a TLS 1.3 ticket once).
  auto a = handshake(*snap_, nullptr);
  auto b = handshake(*snap_, nullptr);
  auto c = handshake(*snap_, nullptr);
  ASSERT_TRUE(a.ok && b.ok && c.ok);
  EXPECT_FALSE(a.resumed);
  EXPECT_EQ(snap_->ticket_keys->keysMade(), 1u);
  if (snap_->sessions) {  // TLS 1.2 sessions travel in their tickets
    EXPECT_EQ(snap_->sessions->size(), 0u);
  }

  auto a2 = handshake(*snap_, a.ticket.get());
  ASSERT_TRUE(a2.ok);
  EXPECT_TRUE(a2.resumed);
  EXPECT_EQ(snap_->ticket_keys->keysMade(), 1u);

  // The key rotated: a ticket under the previous key still resumes.
  clock_.advance(10min);
  auto b2 = handshake(*snap_, b.ticket.get());
  ASSERT_TRUE(b2.ok);
  EXPECT_TRUE(b2.resumed);
  EXPECT_EQ(snap_->ticket_keys->keysMade(), 2u);
  auto d = handshake(*snap_, nullptr);  // a ticket under the second key
  ASSERT_TRUE(d.ok);

  // One more period: the first key is gone (wiped), its tickets make a full
  // handshake; a ticket under the second key still resumes.
  clock_.advance(10min);
  auto c2 = handshake(*snap_, c.ticket.get());
  ASSERT_TRUE(c2.ok);
  EXPECT_FALSE(c2.resumed);
  auto d2 = handshake(*snap_, d.ticket.get());
  ASSERT_TRUE(d2.ok);
  EXPECT_TRUE(d2.resumed);
  EXPECT_EQ(snap_->ticket_keys->keysMade(), 3u);
}

TEST_P(TicketKeysTest, AfterAnIdleStretchNoOldKeySurvives) {
  auto first = handshake(*snap_, nullptr);
  ASSERT_TRUE(first.ok);
  clock_.advance(3h);  // no handshake in between: the lazy rotation sees a gap
  auto later = handshake(*snap_, first.ticket.get());
  ASSERT_TRUE(later.ok);
  EXPECT_FALSE(later.resumed);
}

TEST_P(TicketKeysTest, AnotherSnapshotsTicketsDoNotResume) {
  auto first = handshake(*snap_, nullptr);
  ASSERT_TRUE(first.ok);
  auto ca = pki::testing::TestCa::create({.now = clock_.now() - 1h});
  auto pem = testing::proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock_.now() - 1min);
  auto other = orThrow(buildSnapshot(config_, pem.chain, pem.key, pem.bundle, clock_, 2));
  auto cross = handshake(*other, first.ticket.get());
  ASSERT_TRUE(cross.ok);
  EXPECT_FALSE(cross.resumed);
}

TEST(Alpn, WireFormatIsLengthPrefixed) {
  EXPECT_EQ(alpnWire({"h2", "http/1.1"}), std::string("\x02h2\x08http/1.1"));
  EXPECT_EQ(alpnWire({}), "");
}

}  // namespace
}  // namespace meshid::proxy
