// Session-ticket key rotation, in virtual time: real in-memory TLS 1.3
// handshakes between the snapshot's client and server contexts, the ticket
// key's period driven by a FakeClock.
#include "proxy/ticket_keys.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <asio/ssl/context.hpp>

#include "proxy/tls_snapshot.h"
#include "unit/proxy/tls_test_material.h"

namespace meshid::proxy {
namespace {

using namespace std::chrono_literals;
using meshid::testing::orThrow;

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;
struct SessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using SessionPtr = std::unique_ptr<SSL_SESSION, SessionFree>;

struct Outcome {
  bool ok = false;
  bool resumed = false;
  SessionPtr ticket;  // what the client holds afterwards
};

// One handshake over a BIO pair, a byte from the server, then a clean close;
// the client ends up holding the newest ticket.
Outcome handshake(const TlsSnapshot& snap, SSL_SESSION* resume) {
  SslPtr server(SSL_new(snap.server->native_handle()));
  SslPtr client(SSL_new(snap.client->native_handle()));
  BIO *a = nullptr, *b = nullptr;
  BIO_new_bio_pair(&a, 0, &b, 0);
  SSL_set_bio(server.get(), a, a);
  SSL_set_bio(client.get(), b, b);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());
  if (resume)
    SSL_set_session(client.get(), resume);
  Outcome out;
  bool s_done = false, c_done = false;
  for (int i = 0; i < 20 && !(s_done && c_done); ++i) {
    if (!c_done) {
      int r = SSL_do_handshake(client.get());
      if (r == 1)
        c_done = true;
      else if (SSL_get_error(client.get(), r) != SSL_ERROR_WANT_READ)
        return out;
    }
    if (!s_done) {
      int r = SSL_do_handshake(server.get());
      if (r == 1)
        s_done = true;
      else if (SSL_get_error(server.get(), r) != SSL_ERROR_WANT_READ)
        return out;
    }
  }
  if (!(s_done && c_done) || SSL_write(server.get(), "x", 1) != 1)
    return out;
  char c = 0;
  if (SSL_read(client.get(), &c, 1) != 1)
    return out;
  // The server closes; reading to its close_notify, the client takes every
  // ticket sent (after a resumption, OpenSSL's server sends the new ticket
  // late), then answers the close so the session stays resumable.
  SSL_shutdown(server.get());
  if (SSL_read(client.get(), &c, 1) != 0)
    return out;
  out.ok = true;
  out.resumed = SSL_session_reused(server.get()) == 1;
  out.ticket.reset(SSL_get1_session(client.get()));
  SSL_shutdown(client.get());
  return out;
}

class TicketKeysTest : public ::testing::Test {
 protected:
  TicketKeysTest() : clock_(std::chrono::system_clock::now()) {
    config_.ticket_key_rotation = 10min;
    auto ca = pki::testing::TestCa::create({.now = clock_.now() - 1h});
    auto pem = testing::proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock_.now() - 1min);
    snap_ = orThrow(buildSnapshot(config_, pem.chain, pem.key, pem.bundle, clock_, 1));
  }
  ProxyConfig config_{orThrow(pki::TrustDomain::parse("example.org"))};
  FakeClock clock_;
  std::shared_ptr<const TlsSnapshot> snap_;
};

TEST_F(TicketKeysTest, ATicketResumesWithinItsPeriodAndTheNext) {
  // Each check uses a ticket of its own from a full handshake (OpenSSL's
  // client offers a TLS 1.3 ticket once).
  auto a = handshake(*snap_, nullptr);
  auto b = handshake(*snap_, nullptr);
  auto c = handshake(*snap_, nullptr);
  ASSERT_TRUE(a.ok && b.ok && c.ok);
  EXPECT_FALSE(a.resumed);
  EXPECT_EQ(snap_->ticket_keys->keysMade(), 1u);

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

TEST_F(TicketKeysTest, AfterAnIdleStretchNoOldKeySurvives) {
  auto first = handshake(*snap_, nullptr);
  ASSERT_TRUE(first.ok);
  clock_.advance(3h);  // no handshake in between: the lazy rotation sees a gap
  auto later = handshake(*snap_, first.ticket.get());
  ASSERT_TRUE(later.ok);
  EXPECT_FALSE(later.resumed);
}

TEST_F(TicketKeysTest, AnotherSnapshotsTicketsDoNotResume) {
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
