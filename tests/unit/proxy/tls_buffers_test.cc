// Which TLS connections keep OpenSSL's record buffers (TlsBufferKeeper), on
// real TLS connections over in-memory BIO pairs with the proxy's own
// contexts (read-ahead, SSL_MODE_RELEASE_BUFFERS): busy ones keep them up to
// the limit, quiet ones give them back, and giving them back never loses a
// record OpenSSL holds. Time is passed in (virtual), except in the last test,
// where the worker's loop runs the sweep.
#include "proxy/tls_buffers.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "proxy/config.h"
#include "proxy/tls_snapshot.h"
#include "unit/proxy/memory_handshake.h"
#include "unit/proxy/tls_test_material.h"

namespace meshid::proxy {
namespace {

using meshid::testing::orThrow;
using namespace std::chrono_literals;
using Time = TlsBufferUse::Clock::time_point;

using testing::proxySnapshot;

// A server and a client connected through a BIO pair, handshake done.
struct Connection {
  explicit Connection(const TlsSnapshot& snap)
      : Connection(
            testing::joinOverBioPair(snap.server->native_handle(), snap.client->native_handle())) {}
  explicit Connection(testing::BioPair p)
      : server(std::move(p.server)), client(std::move(p.client)) {
    bool s_done = false, c_done = false;
    for (int i = 0; i < 20 && !(s_done && c_done); ++i) {
      if (!c_done)
        c_done = SSL_do_handshake(client.get()) == 1;
      if (!s_done)
        s_done = SSL_do_handshake(server.get()) == 1;
    }
    ready = s_done && c_done;
    ERR_clear_error();
  }
  // What the server reads now, at most `max` bytes (the client's tickets
  // are read on the way).
  std::string serverReads(size_t max = 256) {
    std::string out(max, '\0');
    size_t n = 0;
    if (SSL_read_ex(server.get(), out.data(), max, &n) != 1) {
      ERR_clear_error();
      return "";
    }
    out.resize(n);
    return out;
  }
  bool clientSends(const std::string& s) {
    size_t n = 0;
    return SSL_write_ex(client.get(), s.data(), s.size(), &n) == 1 && n == s.size();
  }
  bool releasesBuffers() const {
    return (SSL_get_mode(server.get()) & SSL_MODE_RELEASE_BUFFERS) != 0;
  }

  testing::SslPtr server;
  testing::SslPtr client;
  bool ready = false;
};

// `n` records, `gap` apart from `start`; returns the last one's time.
Time traffic(TlsBufferUse& use, Time start, int n, std::chrono::microseconds gap) {
  Time t = start;
  for (int i = 0; i < n; ++i) {
    t = start + i * gap;
    use.noteTraffic(t);
  }
  return t;
}

class TlsBuffersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    clock_ = new FakeClock(std::chrono::system_clock::now());
    snap_ = proxySnapshot(*clock_);
  }
  static void TearDownTestSuite() {
    snap_.reset();
    delete clock_;
  }
  static FakeClock* clock_;
  static std::shared_ptr<const TlsSnapshot> snap_;
  const Time t0_ = TlsBufferUse::Clock::now();
};
FakeClock* TlsBuffersTest::clock_ = nullptr;
std::shared_ptr<const TlsSnapshot> TlsBuffersTest::snap_;

TEST_F(TlsBuffersTest, TheProxysContextsReleaseBuffersUnlessKept) {
  Connection c(*snap_);
  ASSERT_TRUE(c.ready);
  EXPECT_TRUE(c.releasesBuffers());
}

// A handshake and a few round trips keep nothing (the idle-RSS row's
// connections make one; even four keep nothing); one record more than the
// streak, close together, keeps the buffers.
TEST_F(TlsBuffersTest, AFewRoundTripsKeepNothingABusyConnectionKeepsItsBuffers) {
  Connection c(*snap_);
  TlsBufferKeeper keeper(nullptr, 4);
  TlsBufferUse use(keeper, c.server.get());
  traffic(use, t0_, TlsBufferUse::kBusyStreak, 300us);
  EXPECT_FALSE(use.kept());  // the first record starts the streak
  EXPECT_TRUE(c.releasesBuffers());
  EXPECT_EQ(keeper.kept(), 0u);
  use.noteTraffic(t0_ + TlsBufferUse::kBusyStreak * 300us);
  EXPECT_TRUE(use.kept());
  EXPECT_FALSE(c.releasesBuffers());
  EXPECT_EQ(keeper.kept(), 1u);
}

TEST_F(TlsBuffersTest, RecordsFarApartNeverKeepBuffers) {
  Connection c(*snap_);
  TlsBufferKeeper keeper(nullptr, 4);
  TlsBufferUse use(keeper, c.server.get());
  traffic(use, t0_, 100,
          std::chrono::duration_cast<std::chrono::microseconds>(TlsBufferUse::kBusyGap + 1ms));
  EXPECT_FALSE(use.kept());
  // One slow record in a streak starts it over.
  Time t = traffic(use, t0_ + 1h, TlsBufferUse::kBusyStreak - 1, 300us);
  t = traffic(use, t + 1s, TlsBufferUse::kBusyStreak, 300us);
  EXPECT_FALSE(use.kept());
  use.noteTraffic(t + 300us);
  EXPECT_TRUE(use.kept());
}

TEST_F(TlsBuffersTest, NoMoreThanTheLimitKeepBuffers) {
  Connection a(*snap_), b(*snap_), c(*snap_);
  TlsBufferKeeper keeper(nullptr, 2);
  TlsBufferUse ua(keeper, a.server.get()), ub(keeper, b.server.get());
  auto uc = std::make_unique<TlsBufferUse>(keeper, c.server.get());
  for (TlsBufferUse* u : {uc.get(), &ua, &ub})
    traffic(*u, t0_, 2 * TlsBufferUse::kBusyStreak, 300us);
  EXPECT_TRUE(uc->kept());
  EXPECT_TRUE(ua.kept());
  EXPECT_FALSE(ub.kept());
  EXPECT_TRUE(b.releasesBuffers());
  EXPECT_EQ(keeper.kept(), 2u);

  uc.reset();  // a kept connection ends: its place is free
  EXPECT_EQ(keeper.kept(), 1u);
  traffic(ub, t0_ + 1s, TlsBufferUse::kBusyStreak + 1, 300us);
  EXPECT_TRUE(ub.kept());
  EXPECT_EQ(keeper.kept(), 2u);
}

TEST_F(TlsBuffersTest, ALimitOfZeroKeepsNone) {
  Connection c(*snap_);
  TlsBufferKeeper keeper(nullptr, 0);
  TlsBufferUse use(keeper, c.server.get());
  traffic(use, t0_, 10 * TlsBufferUse::kBusyStreak, 300us);
  EXPECT_FALSE(use.kept());
  EXPECT_TRUE(c.releasesBuffers());
}

TEST_F(TlsBuffersTest, AQuietConnectionGivesItsBuffersBack) {
  Connection c(*snap_);
  ASSERT_TRUE(c.clientSends("hello"));
  EXPECT_EQ(c.serverReads(), "hello");
  TlsBufferKeeper keeper(nullptr, 4, 1s);
  TlsBufferUse use(keeper, c.server.get());
  const Time last = traffic(use, t0_, TlsBufferUse::kBusyStreak + 1, 300us);
  ASSERT_TRUE(use.kept());

  keeper.sweep(last + 999ms);  // not quiet long enough
  EXPECT_TRUE(use.kept());
  EXPECT_EQ(keeper.released(), 0u);

  keeper.sweep(last + 1s);
  EXPECT_FALSE(use.kept());
  EXPECT_TRUE(c.releasesBuffers());
  EXPECT_EQ(keeper.kept(), 0u);
  EXPECT_EQ(keeper.released(), 1u);

  // The connection goes on, and keeps its buffers again when busy again.
  ASSERT_TRUE(c.clientSends("again"));
  EXPECT_EQ(c.serverReads(), "again");
  traffic(use, last + 2s, TlsBufferUse::kBusyStreak + 1, 300us);
  EXPECT_TRUE(use.kept());
}

TEST_F(TlsBuffersTest, ASweepGivesBackTheQuietOnesOnly) {
  Connection a(*snap_), b(*snap_), c(*snap_), d(*snap_);
  TlsBufferKeeper keeper(nullptr, 4, 1s);
  TlsBufferUse ua(keeper, a.server.get()), ub(keeper, b.server.get()), uc(keeper, c.server.get()),
      ud(keeper, d.server.get());
  for (TlsBufferUse* u : {&ua, &ub, &uc, &ud})
    traffic(*u, t0_, TlsBufferUse::kBusyStreak + 1, 300us);
  ASSERT_EQ(keeper.kept(), 4u);
  // b and d stay busy; a and c (first and third kept) go quiet.
  traffic(ub, t0_ + 900ms, 2, 300us);
  traffic(ud, t0_ + 900ms, 2, 300us);
  keeper.sweep(t0_ + 1500ms);
  EXPECT_FALSE(ua.kept());
  EXPECT_TRUE(ub.kept());
  EXPECT_FALSE(uc.kept());
  EXPECT_TRUE(ud.kept());
  EXPECT_TRUE(a.releasesBuffers() && c.releasesBuffers());
  EXPECT_FALSE(b.releasesBuffers() || d.releasesBuffers());
  EXPECT_EQ(keeper.kept(), 2u);
  EXPECT_EQ(keeper.released(), 2u);
  keeper.sweep(t0_ + 2s);
  EXPECT_EQ(keeper.kept(), 0u);
  EXPECT_EQ(keeper.released(), 4u);
}

TEST_F(TlsBuffersTest, ARecordOpensslHoldsIsNeverLost) {
  Connection c(*snap_);
  // Two records; the server takes three bytes, so OpenSSL holds the rest of
  // the first and (read ahead) the second.
  ASSERT_TRUE(c.clientSends("first"));
  ASSERT_TRUE(c.clientSends("second"));
  ASSERT_EQ(c.serverReads(3), "fir");
  ASSERT_EQ(SSL_has_pending(c.server.get()), 1);

  TlsBufferKeeper keeper(nullptr, 4, 1s);
  TlsBufferUse use(keeper, c.server.get());
  const Time last = traffic(use, t0_, TlsBufferUse::kBusyStreak + 1, 300us);
  ASSERT_TRUE(use.kept());
  keeper.sweep(last + 1h);
  EXPECT_TRUE(use.kept()) << "a buffer with a record in it was given back";
  EXPECT_FALSE(c.releasesBuffers());

  EXPECT_EQ(c.serverReads(), "st");
  EXPECT_EQ(c.serverReads(), "second");
  EXPECT_EQ(SSL_has_pending(c.server.get()), 0);
  keeper.sweep(last + 1h);
  EXPECT_FALSE(use.kept());
  ASSERT_TRUE(c.clientSends("third"));
  EXPECT_EQ(c.serverReads(), "third");
}

TEST_F(TlsBuffersTest, AConnectionThatEndsLeavesTheKeeper) {
  TlsBufferKeeper keeper(nullptr, 4, 1s);
  {
    Connection c(*snap_);
    TlsBufferUse use(keeper, c.server.get());
    traffic(use, t0_, TlsBufferUse::kBusyStreak + 1, 300us);
    ASSERT_EQ(keeper.kept(), 1u);
  }
  EXPECT_EQ(keeper.kept(), 0u);
  keeper.sweep(t0_ + 1h);  // nothing left to touch
  EXPECT_EQ(keeper.released(), 0u);
}

TEST_F(TlsBuffersTest, TheWorkersLoopRunsTheSweep) {
  asio::io_context io;
  ReadinessLoop loop(io);
  ASSERT_TRUE(loop.ok());
  Connection c(*snap_);
  TlsBufferKeeper keeper(&loop, 4, 20ms);
  TlsBufferUse use(keeper, c.server.get());
  traffic(use, TlsBufferUse::Clock::now(), TlsBufferUse::kBusyStreak + 1, 1us);
  ASSERT_TRUE(use.kept());
  for (int i = 0; i < 100 && use.kept(); ++i)
    loop.runFor(10ms);
  EXPECT_FALSE(use.kept());
  EXPECT_TRUE(c.releasesBuffers());
  EXPECT_EQ(keeper.released(), 1u);
}

}  // namespace
}  // namespace meshid::proxy
