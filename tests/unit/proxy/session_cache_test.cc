// The TLS 1.3 session cache, in virtual time: real in-memory handshakes
// between a snapshot's client and server contexts (single use, expiry,
// eviction, per snapshot), and the cache on its own for what a handshake
// cannot show directly.
#include "proxy/session_cache.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include "proxy/tls_snapshot.h"
#include "unit/proxy/memory_handshake.h"
#include "unit/proxy/tls_test_material.h"

namespace meshid::proxy {
namespace {

using namespace std::chrono_literals;
using meshid::testing::orThrow;

class SessionCacheTest : public ::testing::Test {
 protected:
  SessionCacheTest() : clock_(std::chrono::system_clock::now()) {
    config_.ticket_key_rotation = 10min;  // sessions live 20 minutes
    config_.session_cache_size = 3;
    snap_ = newSnapshot(1);
  }
  std::shared_ptr<const TlsSnapshot> newSnapshot(uint64_t generation) {
    auto ca = pki::testing::TestCa::create({.now = clock_.now() - 1h});
    auto pem = testing::proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock_.now() - 1min);
    return orThrow(buildSnapshot(config_, pem.chain, pem.key, pem.bundle, clock_, generation));
  }
  ProxyConfig config_{orThrow(pki::TrustDomain::parse("example.org"))};
  FakeClock clock_;
  std::shared_ptr<const TlsSnapshot> snap_;
};

TEST_F(SessionCacheTest, ATls13TicketResumesOnceAndItsSuccessorAgain) {
  auto first = testing::handshake(*snap_, nullptr);
  ASSERT_TRUE(first.ok);
  EXPECT_FALSE(first.resumed);
  ASSERT_EQ(snap_->sessions->size(), 1u);
  // The session is kept by the server: no ticket key was needed for it.
  EXPECT_EQ(snap_->ticket_keys->keysMade(), 0u);

  // OpenSSL's client would not offer a ticket twice; a copy lets us try.
  testing::SessionPtr copy(SSL_SESSION_dup(first.ticket.get()));
  auto second = testing::handshake(*snap_, first.ticket.get());
  ASSERT_TRUE(second.ok);
  EXPECT_TRUE(second.resumed);
  EXPECT_EQ(snap_->sessions->size(), 1u);  // the old one taken, a fresh one kept

  auto replay = testing::handshake(*snap_, copy.get());
  ASSERT_TRUE(replay.ok);
  EXPECT_FALSE(replay.resumed) << "a ticket resumes once";

  auto third = testing::handshake(*snap_, second.ticket.get());
  ASSERT_TRUE(third.ok);
  EXPECT_TRUE(third.resumed) << "the ticket handed out by a resumption resumes";
}

TEST_F(SessionCacheTest, ASessionExpiresAfterTwoKeyPeriods) {
  auto a = testing::handshake(*snap_, nullptr);
  auto b = testing::handshake(*snap_, nullptr);
  ASSERT_TRUE(a.ok && b.ok);
  clock_.advance(19min);
  auto a2 = testing::handshake(*snap_, a.ticket.get());
  ASSERT_TRUE(a2.ok);
  EXPECT_TRUE(a2.resumed);
  clock_.advance(1min);
  auto b2 = testing::handshake(*snap_, b.ticket.get());
  ASSERT_TRUE(b2.ok);
  EXPECT_FALSE(b2.resumed);
}

TEST_F(SessionCacheTest, WhenFullTheOldestSessionMakesRoom) {
  std::vector<testing::Outcome> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(testing::handshake(*snap_, nullptr));
    ASSERT_TRUE(clients.back().ok);
    clock_.advance(1s);
  }
  EXPECT_EQ(snap_->sessions->size(), 3u);
  EXPECT_EQ(snap_->sessions->evicted(), 1u);
  // Each resumption takes its session and keeps a fresh one: no eviction.
  for (int i = 1; i < 4; ++i)
    EXPECT_TRUE(testing::handshake(*snap_, clients[i].ticket.get()).resumed) << i;
  EXPECT_EQ(snap_->sessions->evicted(), 1u);
  EXPECT_FALSE(testing::handshake(*snap_, clients[0].ticket.get()).resumed);
}

TEST_F(SessionCacheTest, ASessionBelongsToItsSnapshot) {
  auto first = testing::handshake(*snap_, nullptr);
  ASSERT_TRUE(first.ok);
  auto other = newSnapshot(2);
  auto cross = testing::handshake(*other, first.ticket.get());
  ASSERT_TRUE(cross.ok);
  EXPECT_FALSE(cross.resumed);
}

TEST_F(SessionCacheTest, AClientLimitedToTls12GetsAStatelessTicket) {
  auto first = testing::handshake(*snap_, nullptr, TLS1_2_VERSION);
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(snap_->sessions->size(), 0u);
  EXPECT_EQ(snap_->ticket_keys->keysMade(), 1u);
  EXPECT_TRUE(testing::handshake(*snap_, first.ticket.get(), TLS1_2_VERSION).resumed);
}

// The cache alone, with sessions made by a handshake, for the id lookups a
// handshake never makes: unknown ids and expiry at the exact boundary.
TEST_F(SessionCacheTest, TakeFindsOnlyLiveSessionsByExactId) {
  auto made = testing::handshake(*snap_, nullptr, TLS1_2_VERSION);
  ASSERT_TRUE(made.ok);
  SessionCache cache(clock_, 1min, 2);
  const unsigned char id[32] = {1, 2, 3};
  SSL_SESSION* s = SSL_SESSION_dup(made.ticket.get());
  ASSERT_EQ(SSL_SESSION_set1_id(s, id, sizeof id), 1);
  cache.put(s);
  EXPECT_EQ(cache.take(id, 31), nullptr);  // a prefix is another id
  EXPECT_EQ(cache.take(nullptr, 0), nullptr);
  EXPECT_EQ(cache.size(), 1u);
  clock_.advance(1min);
  EXPECT_EQ(cache.take(id, sizeof id), nullptr) << "expired exactly at its lifetime";
  EXPECT_EQ(cache.size(), 0u);

  SSL_SESSION* again = SSL_SESSION_dup(made.ticket.get());
  ASSERT_EQ(SSL_SESSION_set1_id(again, id, sizeof id), 1);
  cache.put(again);
  testing::SessionPtr taken(cache.take(id, sizeof id));
  EXPECT_EQ(taken.get(), again);
  EXPECT_EQ(cache.take(id, sizeof id), nullptr);
}

TEST(SessionCacheConfig, ZeroTurnsTheCacheOff) {
  ProxyConfig config{orThrow(pki::TrustDomain::parse("example.org"))};
  config.session_cache_size = 0;
  FakeClock clock(std::chrono::system_clock::now());
  auto ca = pki::testing::TestCa::create({.now = clock.now() - 1h});
  auto pem = testing::proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock.now() - 1min);
  auto snap = orThrow(buildSnapshot(config, pem.chain, pem.key, pem.bundle, clock, 1));
  EXPECT_EQ(snap->sessions, nullptr);
  auto first = testing::handshake(*snap, nullptr);
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(snap->ticket_keys->keysMade(), 1u);  // a stateless TLS 1.3 ticket
  EXPECT_TRUE(testing::handshake(*snap, first.ticket.get()).resumed);
}

}  // namespace
}  // namespace meshid::proxy
