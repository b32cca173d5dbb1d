// The proxy's TLS 1.3 record layer (Tls13Stream) taking over from OpenSSL
// after a real handshake (Tls13Handoff), with OpenSSL as the peer over an
// in-memory BIO pair: the peer is an independent implementation, so every
// byte the stream seals must open there and the other way round. Also
// KeyUpdate both ways, close_notify and alerts, and hostile records: each
// ends the stream with the alert RFC 8446 names and an error that says why.
#include "proxy/tls13_stream.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <asio/ssl/context.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "proxy/config.h"
#include "proxy/tls13_handoff.h"
#include "proxy/tls_snapshot.h"
#include "unit/proxy/memory_handshake.h"
#include "unit/proxy/tls_test_material.h"

namespace meshid::proxy {
namespace {

using meshid::testing::orThrow;
using namespace std::chrono_literals;
using Role = Tls13Stream::Role;
using Status = Tls13Stream::Status;

using testing::proxySnapshot;

// Everything one side's BIO of the pair has to read: what the other side wrote.
std::string drain(BIO* bio) {
  std::string out;
  char buf[4096];
  int n = 0;
  while ((n = BIO_read(bio, buf, sizeof buf)) > 0)
    out.append(buf, static_cast<size_t>(n));
  return out;
}

void deliver(BIO* bio, const std::string& bytes) {
  ASSERT_EQ(BIO_write(bio, bytes.data(), static_cast<int>(bytes.size())),
            static_cast<int>(bytes.size()));
}

// A proxy side (`ours`, watched by a Tls13Handoff) and an OpenSSL peer over a
// BIO pair. After the handoff the test reads and writes our side's raw
// bytes through `raw`, our end of the pair.
struct Link {
  Link(const TlsSnapshot& snap, Role role, int max_version = 0) : role(role) {
    SSL_CTX* server_ctx = snap.server->native_handle();
    SSL_CTX* client_ctx = snap.client->native_handle();
    ours.reset(SSL_new(role == Role::kServer ? server_ctx : client_ctx));
    peer.reset(SSL_new(role == Role::kServer ? client_ctx : server_ctx));
    BIO *a = nullptr, *b = nullptr;
    BIO_new_bio_pair(&a, 1 << 20, &b, 1 << 20);  // room for the largest test
    SSL_set_bio(ours.get(), a, a);
    SSL_set_bio(peer.get(), b, b);
    raw = a;
    if (role == Role::kServer) {
      SSL_set_accept_state(ours.get());
      SSL_set_connect_state(peer.get());
    } else {
      SSL_set_connect_state(ours.get());
      SSL_set_accept_state(peer.get());
    }
    if (max_version)
      SSL_set_max_proto_version(peer.get(), max_version);
    handoff = std::make_unique<Tls13Handoff>(ours.get());
    bool o_done = false, p_done = false;
    for (int i = 0; i < 20 && !(o_done && p_done); ++i) {
      if (!p_done)
        p_done = SSL_do_handshake(peer.get()) == 1;
      if (!o_done)
        o_done = SSL_do_handshake(ours.get()) == 1;
    }
    ready = o_done && p_done;
    SSL_set_read_ahead(ours.get(), 0);  // as TlsSocket does after the handshake
    ERR_clear_error();
  }

  // OpenSSL (still ours) reads what is there.
  std::string oursReadsWithOpenSsl() {
    std::string out(65536, '\0');
    size_t n = 0;
    if (SSL_read_ex(ours.get(), out.data(), out.size(), &n) != 1) {
      ERR_clear_error();
      return "";
    }
    out.resize(n);
    return out;
  }

  bool takeOver(uint64_t rekey = Tls13Stream::kRekeyRecords) {
    auto keys = handoff->keys(role);
    if (!keys)
      return false;
    stream = Tls13Stream::create(role, *keys, pool, rekey);
    handoff.reset();
    return stream != nullptr;
  }

  bool peerSends(const std::string& s) {
    size_t n = 0;
    return s.empty() || (SSL_write_ex(peer.get(), s.data(), s.size(), &n) == 1 && n == s.size());
  }
  // The peer's records, fed to the stream in pieces of `chunk` bytes, read
  // with room for `cap` bytes at a time: all the plaintext, until kNeedMore.
  std::string streamReads(size_t chunk = 1 << 20, size_t cap = BufferPool::kUsableBytes) {
    const std::string wire = drain(raw);
    std::string out;
    std::vector<char> buf(cap);
    size_t at = 0;
    for (;;) {
      Tls13Stream::ReadResult r = stream->read(buf.data(), buf.size());
      if (r.status == Status::kData) {
        out.append(buf.data(), r.bytes);
        continue;
      }
      last = r.status;
      if (r.status != Status::kNeedMore || at == wire.size())
        return out;
      const auto space = stream->inputSpace();
      const size_t n = std::min({chunk, space.size(), wire.size() - at});
      std::memcpy(space.data(), wire.data() + at, n);
      stream->received(n);
      at += n;
    }
  }
  // The stream seals `s`; the peer reads it all.
  std::string streamSends(const std::string& s) {
    std::string wire(stream->control().begin(), stream->control().end());
    stream->controlSent(wire.size());
    size_t done = 0;
    std::vector<char> out(BufferPool::kBufferBytes);
    while (done < s.size()) {
      size_t consumed = 0;
      const size_t n =
          stream->seal({s.data() + done, s.size() - done}, out.data(), out.size(), &consumed);
      if (n == 0)
        return "seal failed";
      wire.append(out.data(), n);
      done += consumed;
    }
    deliver(raw, wire);
    return peerReads();
  }
  // The stream's alert record, through to the peer: what the peer read then.
  std::string streamSendsAlert() {
    char alert[Tls13Stream::kAlertRecordBytes];
    const size_t n = stream->sealAlert(alert);
    EXPECT_EQ(n, sizeof alert);
    deliver(raw, std::string(alert, n));
    return peerReads();
  }
  std::string peerReads() {
    std::string out;
    std::vector<char> buf(1 << 16);
    size_t n = 0;
    while (SSL_read_ex(peer.get(), buf.data(), buf.size(), &n) == 1)
      out.append(buf.data(), n);
    peer_error = SSL_get_error(peer.get(), 0);
    ERR_clear_error();
    return out;
  }

  Role role;
  testing::SslPtr ours;
  testing::SslPtr peer;
  BIO* raw = nullptr;
  std::unique_ptr<Tls13Handoff> handoff;  // after ours: detaches before it goes
  BufferPool pool;
  std::unique_ptr<Tls13Stream> stream;
  bool ready = false;
  Status last = Status::kNeedMore;
  int peer_error = 0;
};

class Tls13StreamTest : public ::testing::Test {
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
};
FakeClock* Tls13StreamTest::clock_ = nullptr;
std::shared_ptr<const TlsSnapshot> Tls13StreamTest::snap_;

// Equal bytes; else the sizes and the first difference (not megabytes of both).
::testing::AssertionResult sameBytes(const std::string& got, const std::string& want) {
  if (got == want)
    return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i])
    ++i;
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, want " << want.size() << ", first difference at " << i;
}

std::string pattern(size_t n, int seed = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 131 + static_cast<size_t>(seed) * 7) & 0xff);
  return s;
}

TEST_F(Tls13StreamTest, AServerTakesOverAfterTheHandshakeAndCarriesDataBothWays) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready);
  ASSERT_TRUE(l.takeOver());
  for (size_t size :
       {size_t{1}, size_t{64}, size_t{16383}, size_t{16384}, size_t{16385}, size_t{100'000}}) {
    const std::string in = pattern(size, 1), out = pattern(size, 2);
    ASSERT_TRUE(l.peerSends(in));
    EXPECT_TRUE(sameBytes(l.streamReads(), in)) << size;
    EXPECT_TRUE(sameBytes(l.streamSends(out), out)) << size;
  }
}

// The peer's records arrive one byte at a time, and the caller's buffer is
// smaller than a record: nothing is lost or reordered.
TEST_F(Tls13StreamTest, RecordsInPiecesAndASmallReadBuffer) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready && l.takeOver());
  const std::string in = pattern(40'000, 3);
  ASSERT_TRUE(l.peerSends(in.substr(0, 100)) && l.peerSends(in.substr(100)));
  EXPECT_TRUE(sameBytes(l.streamReads(1, 7), in));
  ASSERT_TRUE(l.peerSends(in));
  EXPECT_TRUE(sameBytes(l.streamReads(5000, 1000), in));
}

// The peer's first data arrived with its Finished and OpenSSL read it: the
// records move only once OpenSSL holds none, numbered after those it read.
TEST_F(Tls13StreamTest, RecordsOpenSslAlreadyReadAreCountedAndNotLost) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready);
  ASSERT_TRUE(l.peerSends("first") && l.peerSends("second"));
  // OpenSSL reads the header and body of the first record only (read-ahead
  // is off), so the second is still on the wire... but a partial read of the
  // second would leave OpenSSL holding bytes: take the first one through it.
  EXPECT_EQ(l.oursReadsWithOpenSsl(), "first");
  ASSERT_TRUE(l.takeOver());
  EXPECT_EQ(l.streamReads(), "second");
  EXPECT_EQ(l.streamSends("answer"), "answer");
}

TEST_F(Tls13StreamTest, NoHandoffWhileOpenSslHoldsAHalfReadRecord) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready);
  ASSERT_TRUE(l.peerSends("whole"));
  std::string wire = drain(l.raw);
  // Half of the record reaches OpenSSL, which reads its header and waits.
  BIO* peer_side = SSL_get_wbio(l.peer.get());
  ASSERT_EQ(BIO_write(peer_side, wire.data(), 9), 9);
  EXPECT_EQ(l.oursReadsWithOpenSsl(), "");
  EXPECT_FALSE(l.handoff->keys(Role::kServer));
  ASSERT_EQ(BIO_write(peer_side, wire.data() + 9, static_cast<int>(wire.size() - 9)),
            static_cast<int>(wire.size() - 9));
  EXPECT_EQ(l.oursReadsWithOpenSsl(), "whole");
  ASSERT_TRUE(l.takeOver());
  ASSERT_TRUE(l.peerSends("next"));
  EXPECT_EQ(l.streamReads(), "next");
}

TEST_F(Tls13StreamTest, TheServersTicketsCountOnItsSide) {
  // The proxy's server sends one ticket after the handshake, under its
  // application key: the stream's first record is number 1, which the
  // client opens only if the count was right.
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready && l.takeOver());
  EXPECT_EQ(l.streamSends("after the ticket"), "after the ticket");
}

TEST_F(Tls13StreamTest, AKeyUpdateFromThePeerWithAndWithoutARequest) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready && l.takeOver());
  ASSERT_EQ(SSL_key_update(l.peer.get(), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
  ASSERT_TRUE(l.peerSends("under the new key"));
  EXPECT_EQ(l.streamReads(), "under the new key");
  EXPECT_EQ(l.stream->keyUpdatesReceived(), 1u);
  EXPECT_TRUE(l.stream->control().empty());

  ASSERT_EQ(SSL_key_update(l.peer.get(), SSL_KEY_UPDATE_REQUESTED), 1);
  ASSERT_TRUE(l.peerSends("please update yours"));
  EXPECT_EQ(l.streamReads(), "please update yours");
  EXPECT_EQ(l.stream->keyUpdatesReceived(), 2u);
  EXPECT_EQ(l.stream->keyUpdatesSent(), 1u);
  EXPECT_FALSE(l.stream->control().empty());  // the answer, sent before the next data
  EXPECT_EQ(l.streamSends("done"), "done");
  ASSERT_TRUE(l.peerSends("and on"));
  EXPECT_EQ(l.streamReads(), "and on");
}

// RFC 8446 §5.5: the stream updates its own key before a key has protected
// too many records (here every 3, to see it happen).
TEST_F(Tls13StreamTest, TheStreamUpdatesItsOwnKeyBeforeTheLimit) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready && l.takeOver(3));
  const std::string big = pattern(10 * Tls13Stream::kMaxPlainBytes, 4);
  EXPECT_TRUE(sameBytes(l.streamSends(big), big));
  EXPECT_GE(l.stream->keyUpdatesSent(), 3u);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(l.streamSends("small"), "small");
}

TEST_F(Tls13StreamTest, CloseNotifyBothWays) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready && l.takeOver());
  ASSERT_TRUE(l.peerSends("last words"));
  SSL_shutdown(l.peer.get());
  EXPECT_EQ(l.streamReads(), "last words");
  EXPECT_EQ(l.last, Status::kEnd);
  EXPECT_FALSE(l.stream->failed());  // close_notify may still be sent back
  char buf[16];
  EXPECT_EQ(l.stream->read(buf, sizeof buf).status, Status::kEnd);  // it stays

  EXPECT_EQ(l.streamSendsAlert(), "");
  EXPECT_EQ(l.peer_error, SSL_ERROR_ZERO_RETURN);
}

TEST_F(Tls13StreamTest, AClientIgnoresLaterTicketsAndWaitsForDataBeforeTakingOver) {
  // Ours is the client; the peer is the proxy's server context without a
  // handoff (its records stay OpenSSL's).
  Link l(*snap_, Role::kClient);
  ASSERT_TRUE(l.ready);
  EXPECT_FALSE(l.handoff->keys(Role::kClient));  // no application data yet
  ASSERT_TRUE(l.peerSends("hello client"));
  EXPECT_EQ(l.oursReadsWithOpenSsl(), "hello client");  // with the ticket before it
  ASSERT_TRUE(SSL_SESSION_is_resumable(SSL_get0_session(l.ours.get())));
  ASSERT_TRUE(l.takeOver());
  // Another ticket, then data.
  ASSERT_EQ(SSL_new_session_ticket(l.peer.get()), 1);
  ASSERT_EQ(SSL_do_handshake(l.peer.get()), 1);
  ASSERT_TRUE(l.peerSends("more"));
  EXPECT_EQ(l.streamReads(), "more");
  EXPECT_EQ(l.streamSends("from the client"), "from the client");
}

TEST_F(Tls13StreamTest, Tls12NeverMoves) {
  Link l(*snap_, Role::kServer, TLS1_2_VERSION);
  ASSERT_TRUE(l.ready);
  EXPECT_TRUE(l.handoff->never());
  EXPECT_FALSE(l.handoff->keys(Role::kServer));
}

TEST_F(Tls13StreamTest, AKeyUpdateBeforeTheHandoffKeepsTheRecordsWithOpenSsl) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready);
  ASSERT_EQ(SSL_key_update(l.peer.get(), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
  ASSERT_TRUE(l.peerSends("x"));
  EXPECT_EQ(l.oursReadsWithOpenSsl(), "x");
  EXPECT_TRUE(l.handoff->never());
  EXPECT_FALSE(l.handoff->keys(Role::kServer));
}

TEST_F(Tls13StreamTest, ContextsWithoutTheRecordLayerReportNoSecrets) {
  auto snap = proxySnapshot(*clock_, false);
  Link l(*snap, Role::kServer);
  ASSERT_TRUE(l.ready);
  EXPECT_TRUE(l.handoff->never());
}

// Hostile records: each ends the stream with an error that names it, and
// the fatal alert the stream seals for it reaches the peer as that alert.
struct Hostile {
  const char* name;
  // Turns the peer's honest record (header and body) into the hostile one.
  void (*spoil)(std::string& record);
  const char* error;      // part of error()
  const char* delivered;  // what came through before it
};

class Tls13StreamHostileTest : public Tls13StreamTest,
                               public ::testing::WithParamInterface<Hostile> {};

TEST_P(Tls13StreamHostileTest, EndsTheStreamWithTheRightAlert) {
  Link l(*snap_, Role::kServer);
  ASSERT_TRUE(l.ready && l.takeOver());
  ASSERT_TRUE(l.peerSends("honest data"));
  std::string record = drain(l.raw);
  GetParam().spoil(record);
  BIO_write(SSL_get_wbio(l.peer.get()), record.data(), static_cast<int>(record.size()));
  EXPECT_EQ(l.streamReads(), GetParam().delivered);
  EXPECT_EQ(l.last, Status::kError);
  EXPECT_NE(l.stream->error().find(GetParam().error), std::string::npos) << l.stream->error();
  EXPECT_TRUE(l.stream->failed());
  char buf[8];
  EXPECT_EQ(l.stream->read(buf, sizeof buf).status, Status::kError);  // it stays

  EXPECT_EQ(l.streamSendsAlert(), "");
  EXPECT_EQ(l.peer_error, SSL_ERROR_SSL);  // a fatal alert, not a clean close
}

const Hostile kHostile[] = {
    {"flipped_byte", [](std::string& r) { r[7] ^= 1; }, "did not authenticate", ""},
    {"flipped_tag", [](std::string& r) { r.back() ^= 0x80; }, "did not authenticate", ""},
    {"header_says_too_long",
     [](std::string& r) {
       r[3] = static_cast<char>((Tls13Stream::kMaxBodyBytes + 1) >> 8);
       r[4] = static_cast<char>((Tls13Stream::kMaxBodyBytes + 1) & 0xff);
     },
     "at most", ""},
    {"too_short_for_a_tag",
     [](std::string& r) { r = std::string("\x17\x03\x03\x00\x10", 5) + std::string(16, 'x'); },
     "cannot hold a tag", ""},
    {"unprotected_handshake", [](std::string& r) { r[0] = 22; }, "unprotected record (type 22)",
     ""},
    {"change_cipher_spec_after_handshake",
     [](std::string& r) { r = std::string("\x14\x03\x03\x00\x01\x01", 6); },
     "unprotected record (type 20)", ""},
    {"record_version", [](std::string& r) { r[2] = 1; }, "record version 3.1", ""},
    {"replayed_record", [](std::string& r) { r += r; }, "did not authenticate", "honest data"},
};

INSTANTIATE_TEST_SUITE_P(Records, Tls13StreamHostileTest, ::testing::ValuesIn(kHostile),
                         [](const auto& info) { return std::string(info.param.name); });

// Inner plaintext the peer could send: sealed by a second stream that has
// the peer's keys, so the content is what the test chooses.
struct Pair {
  BufferPool pool;
  std::unique_ptr<Tls13Stream> reader;
  std::unique_ptr<RecordCipher> sealer;
  Pair() {
    std::vector<uint8_t> s(32, 7);
    TrafficSecret secret(s);
    Tls13Stream::Keys keys{Tls13Suite::kAes128GcmSha256, secret, 0, secret, 0};
    reader = Tls13Stream::create(Role::kServer, keys, pool);
    sealer = RecordCipher::create(Tls13Suite::kAes128GcmSha256, secret, 0, true);
  }
  Tls13Stream::ReadResult feed(uint8_t type, const std::string& content, std::string* out) {
    std::string rec(content.size() + RecordCipher::kOverheadBytes, '\0');
    sealer->seal(type, content, rec.data());
    const auto space = reader->inputSpace();
    std::memcpy(space.data(), rec.data(), rec.size());
    reader->received(rec.size());
    std::vector<char> buf(1 << 16);
    auto r = reader->read(buf.data(), buf.size());
    if (out)
      out->assign(buf.data(), r.bytes);
    return r;
  }
};

TEST(Tls13StreamContent, WhatTheInnerPlaintextMayAndMayNotBe) {
  {
    Pair p;  // an empty application data record is fine
    std::string out;
    EXPECT_EQ(p.feed(23, "", &out).status, Status::kNeedMore);
    EXPECT_EQ(p.feed(23, "x", &out).status, Status::kData);
    EXPECT_EQ(out, "x");
  }
  {
    Pair p;
    EXPECT_EQ(p.feed(21, std::string("\x01\x00", 2), nullptr).status, Status::kEnd);
  }
  {
    Pair p;  // a fatal alert from the peer
    EXPECT_EQ(p.feed(21, std::string("\x02\x28", 2), nullptr).status, Status::kError);
    EXPECT_NE(p.reader->error().find("alert 40"), std::string::npos);
    char alert[Tls13Stream::kAlertRecordBytes];
    EXPECT_EQ(p.reader->sealAlert(alert), 0u);  // nothing answers a fatal alert
  }
  {
    Pair p;  // user_canceled is not the end; close_notify follows
    EXPECT_EQ(p.feed(21, std::string("\x01\x5a", 2), nullptr).status, Status::kNeedMore);
  }
  {
    Pair p;
    EXPECT_EQ(p.feed(21, std::string("\x01", 1), nullptr).status, Status::kError);
    EXPECT_NE(p.reader->error().find("an alert of 1 bytes"), std::string::npos);
  }
  {
    Pair p;  // a new ticket to a server
    EXPECT_EQ(p.feed(22, std::string("\x04\x00\x00\x00", 4), nullptr).status, Status::kError);
    EXPECT_NE(p.reader->error().find("type 4 after the handshake"), std::string::npos);
  }
  {
    Pair p;  // a KeyUpdate with a bad request value
    EXPECT_EQ(p.feed(22, std::string("\x18\x00\x00\x01\x02", 5), nullptr).status, Status::kError);
    EXPECT_NE(p.reader->error().find("request_update 2"), std::string::npos);
  }
  {
    Pair p;  // data after a KeyUpdate in its record
    EXPECT_EQ(p.feed(22, std::string("\x18\x00\x00\x01\x00\x18", 6), nullptr).status,
              Status::kError);
    EXPECT_NE(p.reader->error().find("after a KeyUpdate"), std::string::npos);
  }
  {
    Pair p;  // a message longer than its record
    EXPECT_EQ(p.feed(22, std::string("\x18\x00\x00\x09\x00", 5), nullptr).status, Status::kError);
    EXPECT_NE(p.reader->error().find("split over records"), std::string::npos);
  }
  {
    Pair p;
    EXPECT_EQ(p.feed(22, "", nullptr).status, Status::kError);
  }
  {
    Pair p;  // an unknown content type
    EXPECT_EQ(p.feed(24, "x", nullptr).status, Status::kError);
    EXPECT_NE(p.reader->error().find("content type 24"), std::string::npos);
  }
  {
    Pair p;  // content longer than 2^14
    EXPECT_EQ(p.feed(23, std::string(Tls13Stream::kMaxPlainBytes + 1, 'a'), nullptr).status,
              Status::kError);
    EXPECT_NE(p.reader->error().find("bytes of content"), std::string::npos);
  }
}

TEST(Tls13StreamContent, OnlyPaddingIsRefused) {
  Pair p;
  // Sealed with type 0 and zero content: the record is all padding.
  EXPECT_EQ(p.feed(0, std::string(10, '\0'), nullptr).status, Status::kError);
  EXPECT_NE(p.reader->error().find("only padding"), std::string::npos);
}

TEST(Tls13StreamContent, PaddingAfterTheTypeIsTakenOff) {
  Pair p;
  std::string out;
  // Sealed as type 0 after "data", 23 and zeros: the inner plaintext is the
  // content "data", its type 23, then 50 zeros of padding.
  ASSERT_EQ(p.feed(0, std::string("data\x17", 5) + std::string(49, '\0'), &out).status,
            Status::kData);
  EXPECT_EQ(out, "data");
}

}  // namespace
}  // namespace meshid::proxy
