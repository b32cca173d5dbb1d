// The proxy's socket BIO on real sockets (a non-blocking Unix socket pair):
// what OpenSSL sees (bytes, retry on EAGAIN, EOF, fd) and what the pipe sees
// (a read that empties the socket clears its readiness), then a whole TLS
// handshake, data and an unexpected EOF through two of them.
#include "proxy/socket_bio.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "proxy/readiness.h"
#include "proxy/tls_snapshot.h"
#include "unit/proxy/memory_handshake.h"
#include "unit/proxy/tls_test_material.h"

namespace meshid::proxy {
namespace {

using meshid::testing::orThrow;
using namespace std::chrono_literals;

struct SocketPair {
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd), 0); }
  ~SocketPair() {
    closeEnd(0);
    closeEnd(1);
  }
  void closeEnd(int i) {
    if (fd[i] >= 0)
      close(fd[i]);
    fd[i] = -1;
  }
  int fd[2] = {-1, -1};
};

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

// One end of a socket pair behind a socket BIO; the other end plays the peer.
class SocketBioTest : public ::testing::Test {
 protected:
  SocketBioTest() : state_{p_.fd[0], &ready_, false}, bio_(newSocketBio(state_)) {}
  BIO* bio() const { return bio_.get(); }
  int peer() const { return p_.fd[1]; }

  SocketPair p_;
  Readiness ready_;
  SocketBioState state_;
  BioPtr bio_;
};

TEST_F(SocketBioTest, AReadThatEmptiesTheSocketClearsItsReadiness) {
  ASSERT_TRUE(bio_);
  ASSERT_EQ(write(peer(), "hello", 5), 5);

  char buf[64];
  size_t n = 0;
  // A full read: the socket may hold more, readiness stays.
  ASSERT_EQ(BIO_read_ex(bio(), buf, 2, &n), 1);
  EXPECT_EQ(std::string(buf, n), "he");
  EXPECT_TRUE(ready_.readReady());
  // A short read: the socket is empty now.
  ASSERT_EQ(BIO_read_ex(bio(), buf, sizeof buf, &n), 1);
  EXPECT_EQ(std::string(buf, n), "llo");
  EXPECT_FALSE(ready_.readReady());
}

TEST_F(SocketBioTest, EmptySocketAsksOpensslToRetryTheRead) {
  char buf[8];
  size_t n = 0;
  EXPECT_EQ(BIO_read_ex(bio(), buf, sizeof buf, &n), 0);
  EXPECT_EQ(n, 0u);
  EXPECT_TRUE(BIO_should_retry(bio()));
  EXPECT_TRUE(BIO_should_read(bio()));
  EXPECT_FALSE(ready_.readReady());
  EXPECT_EQ(BIO_eof(bio()), 0);
}

TEST_F(SocketBioTest, ThePeersCloseIsAnEofNotARetry) {
  p_.closeEnd(1);
  char buf[8];
  size_t n = 0;
  EXPECT_EQ(BIO_read_ex(bio(), buf, sizeof buf, &n), 0);
  EXPECT_FALSE(BIO_should_retry(bio()));
  EXPECT_EQ(BIO_eof(bio()), 1);
}

TEST_F(SocketBioTest, WritesGoToTheSocketAndAFullOneAsksToRetry) {
  size_t n = 0;
  ASSERT_EQ(BIO_write_ex(bio(), "ping", 4, &n), 1);
  EXPECT_EQ(n, 4u);
  char buf[8];
  EXPECT_EQ(read(peer(), buf, sizeof buf), 4);
  // Fill the socket until the kernel has no room.
  std::string chunk(64 * 1024, 'x');
  int guard = 0;
  while (BIO_write_ex(bio(), chunk.data(), chunk.size(), &n) == 1 && ++guard < 10000) {
  }
  EXPECT_TRUE(BIO_should_retry(bio()));
  EXPECT_TRUE(BIO_should_write(bio()));
  EXPECT_EQ(BIO_flush(bio()), 1);
}

TEST_F(SocketBioTest, WritingToAClosedPeerFailsWithoutSigpipe) {
  p_.closeEnd(1);
  size_t n = 0;
  // SIGPIPE's default would end this test binary: MSG_NOSIGNAL must hold.
  EXPECT_EQ(BIO_write_ex(bio(), "x", 1, &n), 0);
  EXPECT_FALSE(BIO_should_retry(bio()));
}

TEST_F(SocketBioTest, GivesItsDescriptorToSslGetFd) {
  int fd = -1;
  EXPECT_EQ(BIO_get_fd(bio(), &fd), p_.fd[0]);
  EXPECT_EQ(fd, p_.fd[0]);
}

// A handshake, bytes both ways, then the client's socket closes without a
// close_notify: the server's SSL reports an unexpected EOF (it asked
// BIO_eof), as with OpenSSL's own socket BIO.
TEST(SocketBio, CarriesATlsConnectionAndReportsAnUnexpectedEof) {
  ProxyConfig config{orThrow(pki::TrustDomain::parse("example.org"))};
  FakeClock clock(std::chrono::system_clock::now());
  auto ca = pki::testing::TestCa::create({.now = clock.now() - 1h});
  auto pem = testing::proxyPem(ca, "spiffe://example.org/ns/a/sa/b", clock.now() - 1min);
  auto snap = orThrow(buildSnapshot(config, pem.chain, pem.key, pem.bundle, clock, 1));

  SocketPair p;
  Readiness server_ready, client_ready;
  SocketBioState server_state{p.fd[0], &server_ready, false};
  SocketBioState client_state{p.fd[1], &client_ready, false};
  testing::SslPtr server(SSL_new(snap->server->native_handle()));
  testing::SslPtr client(SSL_new(snap->client->native_handle()));
  BIO* sb = newSocketBio(server_state);
  BIO* cb = newSocketBio(client_state);
  ASSERT_TRUE(sb && cb);
  SSL_set_bio(server.get(), sb, sb);
  SSL_set_bio(client.get(), cb, cb);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());
  bool s_done = false, c_done = false;
  for (int i = 0; i < 50 && !(s_done && c_done); ++i) {
    for (auto [ssl, done] : {std::pair{client.get(), &c_done}, std::pair{server.get(), &s_done}}) {
      if (*done)
        continue;
      ERR_clear_error();
      int r = SSL_do_handshake(ssl);
      *done = r == 1;
      if (!*done) {
        ASSERT_EQ(SSL_get_error(ssl, r), SSL_ERROR_WANT_READ);
      }
    }
  }
  ASSERT_TRUE(s_done && c_done);
  EXPECT_EQ(SSL_get_fd(server.get()), p.fd[0]);

  size_t n = 0;
  ASSERT_EQ(SSL_write_ex(client.get(), "request", 7, &n), 1);
  char buf[64];
  // The server may first read the client's post-handshake bytes.
  int r = 0;
  for (int i = 0; i < 5 && r != 1; ++i)
    r = SSL_read_ex(server.get(), buf, sizeof buf, &n);
  ASSERT_EQ(r, 1);
  EXPECT_EQ(std::string(buf, n), "request");
  ASSERT_EQ(SSL_write_ex(server.get(), "answer", 6, &n), 1);
  r = 0;
  for (int i = 0; i < 5 && r != 1; ++i)  // TLS 1.3 tickets come first
    r = SSL_read_ex(client.get(), buf, sizeof buf, &n);
  ASSERT_EQ(r, 1);
  EXPECT_EQ(std::string(buf, n), "answer");

  client.reset();  // no close_notify sent
  p.closeEnd(1);
  ERR_clear_error();
  r = SSL_read_ex(server.get(), buf, sizeof buf, &n);
  EXPECT_EQ(r, 0);
  EXPECT_EQ(SSL_get_error(server.get(), r), SSL_ERROR_SSL);
  EXPECT_EQ(ERR_GET_REASON(ERR_peek_error()), SSL_R_UNEXPECTED_EOF_WHILE_READING);
  EXPECT_TRUE(server_state.eof);
  ERR_clear_error();
}

}  // namespace
}  // namespace meshid::proxy
