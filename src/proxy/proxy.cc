#include "proxy/proxy.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <asio.hpp>
#include <asio/ssl/context.hpp>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <utility>

#include "common/admin_http.h"
#include "common/duration.h"
#include "pki/certificate.h"
#include "pki/chain.h"
#include "pki/envoy_cert_details.h"
#include "proxy/buffer_pool.h"
#include "proxy/cert_source.h"
#include "proxy/inbound_sniff.h"
#include "proxy/metrics.h"
#include "proxy/readiness.h"
#include "proxy/snapshot_store.h"
#include "proxy/socket_bio.h"
#include "proxy/socket_fd.h"
#include "proxy/tls13_handoff.h"
#include "proxy/tls13_stream.h"
#include "proxy/tls_buffers.h"
#include "proxy/tls_snapshot.h"

namespace meshid::proxy {
namespace {

using asio::awaitable;
using asio::ip::tcp;
using Steady = std::chrono::steady_clock;

constexpr size_t kBufferBytes = BufferPool::kUsableBytes;
constexpr ptrdiff_t kWouldBlock = -1;

auto withError(asio::error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// One connection's sockets and deadline. The coroutines own it through a
// shared_ptr; the deadline is its own member, so it never outlives it.
struct Session : std::enable_shared_from_this<Session> {
  Session(SocketFd s, BufferPool& pool, TlsBufferKeeper& keeper, ReadinessLoop& readiness)
      : down(std::move(s)), buffers(pool), tls_buffers(keeper), loop(readiness) {}
  SocketFd down;  // the peer that connected to us
  SocketFd up;    // where we connect to
  LoopTimer timer;
  BufferPool& buffers;           // the worker's
  TlsBufferKeeper& tls_buffers;  // the worker's
  ReadinessLoop& loop;           // the worker's
  // After the sockets: they leave the epoll set before their fds close.
  Readiness down_ready;
  Readiness up_ready;
  Steady::time_point last_activity = Steady::now();
  bool timed_out = false;

  // Shutting down (not closing) keeps the fd numbers ours until the
  // coroutines end, so an SSL object never touches a reused fd.
  void abort() {
    ::shutdown(down.get(), SHUT_RDWR);
    down_ready.fail();
    if (up.valid())
      ::shutdown(up.get(), SHUT_RDWR);
    up_ready.fail();
  }

  void deadline(std::chrono::milliseconds d) {
    timer.set(loop, Steady::now() + d, [this] {
      timed_out = true;
      abort();
    });
  }

  // Closes the connection when nothing moved for `idle`.
  void watchIdle(std::chrono::milliseconds idle) {
    timer.set(loop, Steady::now() + idle / 4 + std::chrono::milliseconds(1), [this, idle] {
      if (Steady::now() - last_activity >= idle) {
        timed_out = true;
        abort();
      } else {
        watchIdle(idle);
      }
    });
  }
};

// SSL_get_error needs an empty error queue before each TLS call. Peeking is
// cheaper than clearing OpenSSL's sixteen slots every time, and the queue is
// almost always empty (keep-alive profile: ERR_clear_error was 0.9 % of the
// proxy's CPU).
void clearTlsErrors() {
  if (ERR_peek_error() != 0)
    ERR_clear_error();
}

// Sends all of `p` on the non-blocking socket `fd`, waiting only when it is
// full; false on an error or when the wait was aborted.
awaitable<bool> sendAll(int fd, Readiness& ready, const char* p, size_t len) {
  while (len > 0) {
    const ssize_t n = sendNow(fd, p, len);
    if (n >= 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (!wouldBlock(errno))
      co_return false;
    ready.writeBlocked();
    asio::error_code ec;
    co_await ready.waitWrite(withError(ec));
    if (ec)
      co_return false;
  }
  co_return true;
}

// TLS on a non-blocking socket. OpenSSL does the handshake, driving the fd
// itself through our socket BIO (socket_bio.h): no BIO pair and no copy, and
// SSL_shutdown can send close_notify (half-close) while the other direction
// keeps reading. A TLS 1.3 connection's records then move to the proxy's
// own record layer (tls13_stream.h) at the first point OpenSSL holds none
// (tls13_handoff.h); until then, and for good with TLS 1.2, OpenSSL carries
// them.
//
// The pipe's reading side (TlsSocket and PlainSocket have the same shape):
// readable() says whether tryRead() may make progress now, waitForRead()
// waits until it may; tryRead() never blocks; drained() says that the last read emptied the socket,
// so the next one would only get EAGAIN. The socket is waited for only then: with read-ahead
// OpenSSL (or the record layer) can hold whole records the socket will never signal again.
class TlsSocket {
 public:
  // Binds `ssl` to the socket. Without memory for the BIO the SSL has none
  // and its handshake fails. `handoffs`: hand TLS 1.3 records over to the
  // record layer after the handshake (the context must have
  // Tls13Handoff::enable'd) and count each there; null: OpenSSL keeps them.
  TlsSocket(int fd, Readiness& ready, SslPtr ssl, TlsBufferKeeper& keeper, BufferPool& pool,
            Tls13Stream::Role role, prometheus::Counter* handoffs)
      : fd_(fd),
        ready_(ready),
        bio_state_{fd, &ready, false},
        ssl_(std::move(ssl)),
        buffer_use_(keeper, ssl_.get()),
        pool_(pool),
        role_(role),
        handoffs_(handoffs) {
    if (BIO* bio = newSocketBio(bio_state_))
      SSL_set_bio(ssl_.get(), bio, bio);  // one reference, both directions
    if (handoffs_)
      handoff_ = std::make_unique<Tls13Handoff>(ssl_.get());
  }
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;
  SSL* ssl() const { return ssl_.get(); }  // null once dropped (dropSslOnceMoved)

  // Once the records have moved (now, or later at the handoff) the SSL
  // object is no longer needed: it goes, with OpenSSL's copies of the keys
  // and its buffers (bench: 30.7 -> 17.5 kB per idle mTLS connection). Call
  // after the last look at the handshake (peer, session, metrics). Its
  // session is marked cleanly shut first, so it stays resumable, as TLS 1.3
  // allows whatever happens later on the connection.
  void dropSslOnceMoved() {
    drop_ssl_ = true;
    if (stream_)
      dropSsl();
  }

  awaitable<bool> handshake() {
    for (;;) {
      clearTlsErrors();
      int r = SSL_do_handshake(ssl_.get());
      if (r == 1)
        break;
      if (!co_await waitFor(SSL_get_error(ssl_.get(), r)))
        co_return false;
    }
    if (handoff_) {
      if (handoff_->never()) {
        handoff_.reset();
      } else {
        // OpenSSL's buffer then empties at the end of a record.
        SSL_set_read_ahead(ssl_.get(), 0);
        tryHandoff();
      }
    }
    co_return true;
  }

  bool drained() const {
    if (stream_)
      return !ready_.readReady() && !stream_->hasRecord();
    return !ready_.readReady() && !SSL_has_pending(ssl_.get());
  }
  void noteTraffic(Steady::time_point now) {
    if (!stream_)
      buffer_use_.noteTraffic(now);
  }

  // True when tryRead() may make progress now; otherwise the pipe awaits
  // waitForRead() itself. A plain asio operation, not a coroutine of ours:
  // an idle connection sits in it, and each coroutine frame in that chain is
  // memory per idle connection (bench: ~0.5 kB for this one and waitFor's).
  bool readable() const { return !read_wants_write_ && !drained(); }
  auto waitForRead(asio::error_code& ec) {
    // A KeyUpdate answer waits for room to be written before reading goes on.
    if (std::exchange(read_wants_write_, false))
      return ready_.waitWrite(withError(ec));
    return ready_.waitRead(withError(ec));
  }

  // Bytes read now; kWouldBlock when a whole record is not there yet; 0 at
  // the end of the stream (close_notify or EOF) or on error.
  ptrdiff_t tryRead(char* buf, size_t len) {
    if (handoff_)
      tryHandoff();
    if (stream_)
      return readRecords(buf, len);
    clearTlsErrors();
    size_t n = 0;
    if (SSL_read_ex(ssl_.get(), buf, len, &n) == 1)
      return static_cast<ptrdiff_t>(n);
    int e = SSL_get_error(ssl_.get(), 0);
    if (e == SSL_ERROR_WANT_READ)
      return kWouldBlock;  // the BIO noted the socket drained
    if (e == SSL_ERROR_WANT_WRITE) {
      read_wants_write_ = true;  // a KeyUpdate answer waits for room
      ready_.writeBlocked();
      return kWouldBlock;
    }
    return 0;
  }

  awaitable<bool> write(const char* buf, size_t len) {
    if (handoff_)
      tryHandoff();
    if (stream_)
      co_return co_await writeRecords(buf, len);
    writing_ = true;
    bool ok = true;
    while (len > 0) {
      clearTlsErrors();
      size_t n = 0;
      if (SSL_write_ex(ssl_.get(), buf, len, &n) == 1) {
        buf += n;
        len -= n;
        continue;
      }
      if (!co_await waitFor(SSL_get_error(ssl_.get(), 0))) {
        ok = false;
        break;
      }
    }
    writing_ = false;
    co_return ok;
  }

  // Sends close_notify without waiting for the peer's (TLS half-close).
  awaitable<void> shutdownSend() {
    if (stream_) {
      writing_ = true;
      // What the reading side owes first (a KeyUpdate answer), then
      // close_notify, in one send; nothing after a fatal alert.
      const std::span<const char> owed = stream_->control();
      std::string out(owed.data(), owed.size());
      stream_->controlSent(owed.size());
      char alert[Tls13Stream::kAlertRecordBytes];
      const size_t n = stream_->failed() ? 0 : stream_->sealAlert(alert);
      out.append(alert, n);
      const bool sent = co_await sendAll(out.data(), out.size());
      if (sent && n > 0 && ssl_) {
        // As SSL_shutdown would have noted: else SSL_free takes the session
        // for a broken one and drops it from the caches (no resumption).
        SSL_set_shutdown(ssl_.get(), SSL_get_shutdown(ssl_.get()) | SSL_SENT_SHUTDOWN);
      }
      writing_ = false;
      ::shutdown(fd_, SHUT_WR);
      co_return;
    }
    for (int i = 0; i < 4; ++i) {
      clearTlsErrors();
      int r = SSL_shutdown(ssl_.get());
      if (r >= 0)
        break;
      if (!co_await waitFor(SSL_get_error(ssl_.get(), r)))
        break;
    }
    ::shutdown(fd_, SHUT_WR);
  }

 private:
  // Moves the records to the record layer when OpenSSL holds none now; with
  // a write of OpenSSL's still going out (the other direction's coroutine
  // waits in write()) they stay until a later call.
  void tryHandoff() {
    if (writing_ || read_wants_write_)
      return;
    if (handoff_->never()) {
      handoff_.reset();
      return;
    }
    auto keys = handoff_->keys(role_);
    if (!keys)
      return;
    stream_ = Tls13Stream::create(role_, *keys, pool_);
    handoff_.reset();  // without a stream (no memory) OpenSSL goes on alone
    if (stream_) {
      buffer_use_.stop();
      handoffs_->Increment();
      if (drop_ssl_)
        dropSsl();
    }
  }

  void dropSsl() {
    SSL_set_shutdown(ssl_.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    ssl_.reset();
  }

  ptrdiff_t readRecords(char* buf, size_t len) {
    if (!writing_ && !flushControl())
      return readWantsWrite();
    for (;;) {
      const Tls13Stream::ReadResult r = stream_->read(buf, len);
      // A KeyUpdate answer leaves now, unless a write in progress takes it.
      if (!writing_ && !flushControl() && r.bytes == 0)
        return readWantsWrite();
      switch (r.status) {
        case Tls13Stream::Status::kData:
          return static_cast<ptrdiff_t>(r.bytes);
        case Tls13Stream::Status::kEnd:
          if (ssl_)
            SSL_set_shutdown(ssl_.get(), SSL_get_shutdown(ssl_.get()) | SSL_RECEIVED_SHUTDOWN);
          return 0;
        case Tls13Stream::Status::kError:
          refuse();
          return 0;
        case Tls13Stream::Status::kNeedMore:
          break;
      }
      if (!ready_.readReady()) {
        stream_->releaseIdleInput();
        return kWouldBlock;
      }
      const std::span<char> space = stream_->inputSpace();
      const ssize_t n = recvNow(fd_, space.data(), space.size(), 0);
      if (n < 0 && wouldBlock(errno)) {
        ready_.readDrained();
        stream_->releaseIdleInput();
        return kWouldBlock;
      }
      if (n <= 0)
        return 0;  // EOF without close_notify (truncation), or an error
      if (static_cast<size_t>(n) < space.size())
        ready_.readDrained();
      stream_->received(static_cast<size_t>(n));
    }
  }

  ptrdiff_t readWantsWrite() {
    read_wants_write_ = true;
    ready_.writeBlocked();
    return kWouldBlock;
  }

  // The fatal alert for what the peer sent, if it can leave at once; the
  // connection ends either way.
  void refuse() {
    spdlog::debug("TLS record layer: {}", stream_->error());
    if (writing_)
      return;
    char alert[Tls13Stream::kAlertRecordBytes];
    if (const size_t n = stream_->sealAlert(alert); n > 0 && flushControl())
      (void)sendNow(fd_, alert, n);
  }

  // Sends what the record layer must send first, without waiting; false
  // while some of it is left.
  bool flushControl() {
    while (!stream_->control().empty()) {
      const std::span<const char> c = stream_->control();
      const ssize_t n = sendNow(fd_, c.data(), c.size());
      if (n < 0 && wouldBlock(errno))
        return false;
      // An error: the connection is going; the next read or write finds out.
      stream_->controlSent(n < 0 ? c.size() : static_cast<size_t>(n));
    }
    return true;
  }

  // Seals as much as fits in one pool buffer (64 KiB and the records'
  // overhead), after any KeyUpdate answer the reading side made, and sends it.
  awaitable<bool> writeRecords(const char* buf, size_t len) {
    writing_ = true;
    BufferPool::Lease out = pool_.take();
    bool ok = true;
    while (ok && (len > 0 || !stream_->control().empty())) {
      const std::span<const char> c = stream_->control();
      std::memcpy(out.data(), c.data(), c.size());
      size_t size = c.size();
      stream_->controlSent(c.size());
      size_t consumed = 0;
      const size_t sealed =
          stream_->seal({buf, len}, out.data() + size, BufferPool::kBufferBytes - size, &consumed);
      if (sealed == 0 && len > 0) {
        spdlog::debug("TLS record layer: {}", stream_->error());
        ok = false;
        break;
      }
      size += sealed;
      buf += consumed;
      len -= consumed;
      ok = co_await sendAll(out.data(), size);
    }
    writing_ = false;
    co_return ok;
  }

  awaitable<bool> sendAll(const char* p, size_t len) { return proxy::sendAll(fd_, ready_, p, len); }

  // OpenSSL says "want" only after the socket said EAGAIN, in this handler:
  // no edge can have come since.
  awaitable<bool> waitFor(int ssl_error) {
    asio::error_code ec;
    if (ssl_error == SSL_ERROR_WANT_READ) {
      ready_.readDrained();
      co_await ready_.waitRead(withError(ec));
    } else if (ssl_error == SSL_ERROR_WANT_WRITE) {
      ready_.writeBlocked();
      co_await ready_.waitWrite(withError(ec));
    } else {
      co_return false;
    }
    co_return !ec;
  }

  int fd_;
  Readiness& ready_;          // the session's; the BIO clears it on short reads
  SocketBioState bio_state_;  // before ssl_: the SSL's BIO points here until the SSL is freed
  SslPtr ssl_;
  TlsBufferUse buffer_use_;  // after ssl_: leaves the keeper before the SSL goes
  BufferPool& pool_;         // the worker's
  Tls13Stream::Role role_;
  prometheus::Counter* handoffs_;
  std::unique_ptr<Tls13Handoff> handoff_;  // after ssl_: detaches before the SSL goes
  std::unique_ptr<Tls13Stream> stream_;    // once the records moved
  bool read_wants_write_ = false;
  bool writing_ = false;  // a write() or shutdownSend() is under way
  bool drop_ssl_ = false;
};

// The plaintext side, with the same shape as TlsSocket. Writes go straight
// to the socket and wait only when it is full.
class PlainSocket {
 public:
  PlainSocket(int fd, Readiness& ready) : fd_(fd), ready_(ready) {}  // fd: non-blocking
  bool drained() const { return !ready_.readReady(); }
  bool readable() const { return ready_.readReady(); }
  void noteTraffic(Steady::time_point) {}
  auto waitForRead(asio::error_code& ec) { return ready_.waitRead(withError(ec)); }
  ptrdiff_t tryRead(char* buf, size_t len) {
    ssize_t n = recvNow(fd_, buf, len, 0);
    if (n < 0 && wouldBlock(errno)) {
      ready_.readDrained();
      return kWouldBlock;
    }
    if (n <= 0)
      return 0;  // the end of the stream, or an error
    if (static_cast<size_t>(n) < len)
      ready_.readDrained();
    return n;
  }
  awaitable<bool> write(const char* buf, size_t len) { return sendAll(fd_, ready_, buf, len); }
  awaitable<void> shutdownSend() {
    ::shutdown(fd_, SHUT_WR);
    co_return;
  }

 private:
  int fd_;
  Readiness& ready_;  // the session's
};

// Copies one direction until its end, then half-closes the other side. A
// bounded buffer: nothing more is read until the write completed
// (backpressure). The buffer is held only while data flows: an idle
// connection holds none (bench: 71 -> 41 kB per idle mTLS connection).
template <class From, class To>
awaitable<void> pipe(From& from, To& to, Session& s, prometheus::Counter* counter) {
  // No co_await inside `&&` or `?:`: GCC 12 evaluates it even when the
  // left side already decided (seen here: a finished pipe waited on its
  // socket until the peer went away).
  bool open = true;
  while (open) {
    if (!from.readable()) {
      asio::error_code ec;
      co_await from.waitForRead(ec);
      if (ec)
        break;
    }
    BufferPool::Lease buf = s.buffers.take();
    bool more = true;
    while (more) {
      // Gather what is there, up to a full buffer (several TLS records),
      // and pass it on in one write.
      size_t got = 0;
      ptrdiff_t n = 0;
      do {
        n = from.tryRead(buf.data() + got, kBufferBytes - got);
        if (n > 0)
          got += static_cast<size_t>(n);
      } while (n > 0 && got < kBufferBytes && !from.drained());
      if (got > 0) {
        s.last_activity = s.loop.now();
        from.noteTraffic(s.last_activity);
        to.noteTraffic(s.last_activity);
        counter->Increment(static_cast<double>(got));
        if (!co_await to.write(buf.data(), got)) {
          s.abort();
          co_return;
        }
      }
      if (n == 0) {
        open = false;  // the end of the stream, or an error
        break;
      }
      more = n != kWouldBlock && !from.drained();
    }
  }
  co_await to.shutdownSend();
}

// Runs both directions of a connection; returns when both have ended. `b`
// runs as its own coroutine, `a` in this one, which then waits for `b`.
// Lighter than asio's `a && b` (a parallel group, two spawned coroutines and
// their cancellation slots; bench: 31.1 -> 29.6 kB per idle mTLS
// connection). Nothing needs cancelling: a pipe that fails aborts the
// session, which ends the other one too.
awaitable<void> both(awaitable<void> a, awaitable<void> b, Session& s) {
  auto ex = co_await asio::this_coro::executor;
  LoopEvent b_ended(s.loop);
  bool ended = false;
  asio::co_spawn(ex, std::move(b), [&ended, &b_ended](std::exception_ptr) {
    ended = true;
    b_ended.fire();
  });
  try {
    co_await std::move(a);
  } catch (...) {
    s.abort();  // never leave `b` running on this frame
  }
  if (!ended) {
    asio::error_code ignored;
    co_await b_ended.wait(withError(ignored));
  }
}

// The last TLS session an outbound listener's worker got from its
// destination, offered again on the next connection (resumption). One slot
// per worker, touched only on that worker's thread: no lock.
struct SessionSlot {
  uint64_t generation = 0;  // the certificate snapshot the session was made with
  SSL_SESSION* session = nullptr;
  SessionSlot() = default;
  SessionSlot(const SessionSlot&) = delete;
  SessionSlot& operator=(const SessionSlot&) = delete;
  ~SessionSlot() { SSL_SESSION_free(session); }
  void replace(SSL_SESSION* s, uint64_t gen) {
    SSL_SESSION_free(session);
    session = s;
    generation = gen;
  }
};

int slotIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OpenSSL hands over each new session here (TLS 1.3 tickets arrive after the
// handshake); keep the newest in the connection's slot.
int keepNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* slot = static_cast<SessionSlot*>(SSL_get_ex_data(ssl, slotIndex()));
  if (!slot)
    return 0;
  slot->replace(session, slot->generation);
  return 1;  // we took the reference
}

// One worker's listening socket for a listener (SO_REUSEPORT: the kernel
// spreads connections over the workers).
struct Acceptor {
  SocketFd fd;
  Readiness ready;  // after the fd: leaves the epoll set before it closes
};

// What a listener is now. The mode and the allow list (inbound) or expected
// IDs (outbound) change at runtime (reload, admin call): each connection
// reads them once when it starts and keeps them, so a change never touches
// open connections.
struct ListenerRuntime {
  std::string name;
  const InboundListener* inbound = nullptr;
  const OutboundListener* outbound = nullptr;
  std::atomic<Mode> mode{Mode::kStrict};
  std::atomic<std::shared_ptr<const AllowList>> allowed;
  std::string alpn;  // wire format
  ListenerStats* stats = nullptr;
  tcp::endpoint target;
  int port = 0;
  std::atomic<size_t> active{0};
  std::vector<std::unique_ptr<Acceptor>> acceptors;  // one per worker
  std::vector<SessionSlot> sessions;                 // outbound: one per worker
};

class ProxyImpl final : public Proxy {
 public:
  ProxyImpl(const ProxyConfig& config, const Clock& clock)
      : config_(config), clock_(clock), store_(config_, clock, keepNewSession) {}
  ~ProxyImpl() override { shutdown(); }

  Result<void> init(const CertSourceFactory& sources);
  int port(const std::string& listener) const override {
    for (const auto& l : listeners_) {
      if (l->name == listener)
        return l->port;
    }
    return 0;
  }
  int adminPort() const override { return admin_ ? admin_->port() : 0; }
  void shutdown() override;
  Result<void> reload(const std::string& config_path) override;
  Result<void> setMode(const std::string& listener, Mode mode) override;

 private:
  awaitable<void> acceptLoop(ListenerRuntime& l, size_t worker);
  awaitable<void> serveInbound(std::shared_ptr<Session> s, ListenerRuntime& l);
  awaitable<void> serveOutbound(std::shared_ptr<Session> s, ListenerRuntime& l, SessionSlot& slot);
  awaitable<bool> connectUp(Session& s, ListenerRuntime& l);
  std::string certsJson() const;
  std::string listenersJson() const;
  // Values kept elsewhere (the session cache, the workers' busy polls),
  // copied into the metrics before each scrape.
  void noteScrapedValues();
  HttpReply modeCall(const std::map<std::string, std::string>& params);
  ListenerRuntime* find(const std::string& name) const;

  const ProxyConfig config_;
  const Clock& clock_;
  ProxyMetrics metrics_;
  SnapshotStore store_;
  std::unique_ptr<CertSource> certs_;
  std::mutex reconfigure_mu_;  // one reload or mode change at a time (never the data path)
  std::vector<std::unique_ptr<BufferPool>> buffers_;  // one per worker; outlive the workers' frames
  // One per worker; they outlive the workers' frames.
  std::vector<std::unique_ptr<ReadinessLoop>> loops_;
  // One per worker: after the loops (their sweeps are the loops' timers),
  // before the workers (their frames' TLS sockets leave them).
  std::vector<std::unique_ptr<TlsBufferKeeper>> tls_buffers_;
  std::vector<std::unique_ptr<asio::io_context>> workers_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<ListenerRuntime>> listeners_;
  std::unique_ptr<AdminHttp> admin_;
  bool stopped_ = false;
};

Result<tcp::endpoint> endpointOf(const std::string& hostport) {
  MESHID_ASSIGN_OR_RETURN(auto hp, splitHostPort(hostport));
  asio::error_code ec;
  auto addr = asio::ip::make_address(hp.first == "localhost" ? "127.0.0.1" : hp.first, ec);
  if (ec) {
    return Error::invalidArgument(
        fmt::format("\"{}\": give an IP address (names are not resolved)", hostport));
  }
  return tcp::endpoint(addr, static_cast<unsigned short>(hp.second));
}

Result<void> ProxyImpl::init(const CertSourceFactory& sources) {
  MESHID_ASSIGN_OR_RETURN(certs_,
                          sources ? sources(config_, store_) : makeFileCertSource(config_, store_));
  MESHID_RETURN_IF_ERROR(certs_->loadFirst());
  metrics_.certificateLoaded(store_.current()->not_after);
  size_t n = config_.workers ? config_.workers : std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 0; i < n; ++i) {
    buffers_.push_back(std::make_unique<BufferPool>());
    workers_.push_back(std::make_unique<asio::io_context>(1));
    loops_.push_back(std::make_unique<ReadinessLoop>(*workers_.back()));
    if (!loops_.back()->ok())
      return Error::internal(fmt::format("epoll_create1: {}", std::strerror(errno)));
    loops_.back()->setBusyPoll(config_.busy_poll, config_.busy_poll_adaptive, kAutoBusyPollMax);
    tls_buffers_.push_back(
        std::make_unique<TlsBufferKeeper>(loops_.back().get(), config_.kept_buffers));
  }

  auto bind = [&](ListenerRuntime& l, const std::string& listen) -> Result<void> {
    MESHID_ASSIGN_OR_RETURN(tcp::endpoint ep, endpointOf(listen));
    for (size_t i = 0; i < workers_.size(); ++i) {
      auto fd = listenTcp(ep.data(), static_cast<socklen_t>(ep.size()), 1024);
      if (!fd.ok()) {
        return Error::unavailable(
            fmt::format("listener {} cannot listen on {}: {}", l.name, listen, fd.error().message));
      }
      auto a = std::make_unique<Acceptor>();
      a->fd = std::move(*fd);
      if (!a->ready.watch(*loops_[i], a->fd.get()))
        return Error::internal(fmt::format("listener {}: epoll: {}", l.name, std::strerror(errno)));
      ep.port(static_cast<unsigned short>(localPort(a->fd.get())));  // the others join this port
      l.acceptors.push_back(std::move(a));
    }
    l.port = ep.port();
    return okResult();
  };
  for (const auto& in : config_.inbound) {
    auto l = std::make_unique<ListenerRuntime>();
    l->name = in.name;
    l->inbound = &in;
    l->mode = in.mode;
    l->allowed = std::make_shared<const AllowList>(in.allow_list);
    l->alpn = alpnWire(in.alpn);
    l->stats = &metrics_.listener(in.name, "inbound");
    MESHID_ASSIGN_OR_RETURN(l->target, endpointOf(in.forward));
    MESHID_RETURN_IF_ERROR(bind(*l, in.listen));
    listeners_.push_back(std::move(l));
  }
  for (const auto& out : config_.outbound) {
    auto l = std::make_unique<ListenerRuntime>();
    l->name = out.name;
    l->outbound = &out;
    l->allowed = std::make_shared<const AllowList>(out.expected);
    l->alpn = alpnWire(out.alpn);
    l->stats = &metrics_.listener(out.name, "outbound");
    MESHID_ASSIGN_OR_RETURN(l->target, endpointOf(out.destination));
    MESHID_RETURN_IF_ERROR(bind(*l, out.listen));
    l->sessions = std::vector<SessionSlot>(workers_.size());
    listeners_.push_back(std::move(l));
  }

  std::vector<HttpRoute> routes;
  routes.push_back(
      {"/metrics", [this] {
         noteScrapedValues();
         return HttpReply{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.serialize()};
       }});
  routes.push_back({"/stats", [this] {
                      noteScrapedValues();
                      return HttpReply{200, "application/json", metrics_.statsJson()};
                    }});
  routes.push_back({"/certs", [this] { return HttpReply{200, "application/json", certsJson()}; }});
  routes.push_back({"/listeners", [this] {
                      return HttpReply{200, "application/json", listenersJson()};
                    }});
  HttpRoute mode;
  mode.path = "/listeners/mode";
  mode.post = [this](const std::map<std::string, std::string>& p) { return modeCall(p); };
  routes.push_back(std::move(mode));
  routes.push_back({"/healthz", [] { return HttpReply{200, "text/plain", "ok\n"}; }});
  MESHID_ASSIGN_OR_RETURN(admin_, AdminHttp::start(config_.admin_listen, std::move(routes)));

  certs_->start([this](bool ok) {
    metrics_.reload(ok);
    if (ok)
      metrics_.certificateLoaded(store_.current()->not_after);
  });
  for (auto& l : listeners_) {
    for (size_t i = 0; i < workers_.size(); ++i) {
      asio::co_spawn(*workers_[i], acceptLoop(*l, i), asio::detached);
    }
  }
  for (auto& loop : loops_)
    threads_.emplace_back([loop = loop.get()] { loop->run(); });
  return okResult();
}

// Accepts until the listener has nothing more, then waits for its next edge.
awaitable<void> ProxyImpl::acceptLoop(ListenerRuntime& l, size_t worker) {
  Acceptor& acceptor = *l.acceptors[worker];
  LoopTimer backoff;
  for (;;) {
    int fd = ::accept4(acceptor.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      asio::error_code ec;
      if (wouldBlock(e)) {
        acceptor.ready.readDrained();
        co_await acceptor.ready.waitRead(withError(ec));
      } else if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        // Out of descriptors or memory: the connection stays queued; try
        // again in a while rather than spin on it (nginx waits 500 ms).
        spdlog::warn("listener {}: cannot accept: {}; retrying in 100 ms", l.name,
                     std::strerror(e));
        count(*l.stats, Failure::kOverloaded);
        LoopEvent due(*loops_[worker]);
        backoff.set(*loops_[worker], Steady::now() + std::chrono::milliseconds(100),
                    [&due] { due.fire(); });
        co_await due.wait(withError(ec));
        backoff.cancel();
      } else if (e != EINTR && e != ECONNABORTED && e != EPROTO) {
        co_return;  // the listener is gone (shutdown)
      }
      if (ec)
        co_return;  // the loop was detached
      continue;
    }
    SocketFd sock(fd);
    l.stats->connections->Increment();
    if (l.active.load(std::memory_order_relaxed) >= config_.max_connections) {
      count(*l.stats, Failure::kOverloaded);
      continue;  // the socket closes here
    }
    setNoDelay(sock.get());
    auto session = std::make_shared<Session>(std::move(sock), *buffers_[worker],
                                             *tls_buffers_[worker], *loops_[worker]);
    if (!session->down_ready.watch(session->loop, session->down.get())) {
      spdlog::warn("listener {}: epoll refused a connection: {}", l.name, std::strerror(errno));
      count(*l.stats, Failure::kOverloaded);
      continue;
    }
    l.active.fetch_add(1, std::memory_order_relaxed);
    l.stats->active->Increment();
    auto done = [&l](std::exception_ptr) {
      l.active.fetch_sub(1, std::memory_order_relaxed);
      l.stats->active->Decrement();
    };
    auto ex = loops_[worker]->executor();
    if (l.inbound)
      asio::co_spawn(ex, serveInbound(std::move(session), l), done);
    else
      asio::co_spawn(ex, serveOutbound(std::move(session), l, l.sessions[worker]), done);
  }
}

awaitable<bool> ProxyImpl::connectUp(Session& s, ListenerRuntime& l) {
  bool in_progress = false;
  auto fd = startConnect(l.target.data(), static_cast<socklen_t>(l.target.size()), in_progress);
  if (!fd.ok()) {
    count(*l.stats, Failure::kUpstreamConnect);
    co_return false;
  }
  s.up = std::move(*fd);
  // Joined after connect() began: a socket that is not connecting yet
  // reports EPOLLHUP, which Readiness would keep as "peer closed".
  if (!s.up_ready.watch(s.loop, s.up.get())) {
    spdlog::warn("listener {}: epoll refused the upstream connection: {}", l.name,
                 std::strerror(errno));
    count(*l.stats, Failure::kUpstreamConnect);
    co_return false;
  }
  if (in_progress) {
    // Not writable until the handshake with the destination ends; the
    // edge that says so (or that it failed) is queued from the join on.
    s.up_ready.writeBlocked();
    asio::error_code ec;
    co_await s.up_ready.waitWrite(withError(ec));
    if (ec || connectError(s.up.get()) != 0) {
      count(*l.stats, Failure::kUpstreamConnect);
      co_return false;
    }
  }
  setNoDelay(s.up.get());
  co_return true;
}

// A resumed session skips chain verification, and a session can outlive the
// short-lived certificate it was made with: never accept one whose peer
// certificate has expired since.
bool peerExpired(const X509* peer) {
  return peer == nullptr || X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0;
}

// Counts why a handshake failed, from what the verify callback recorded.
void countHandshakeFailure(ListenerStats& stats, const SSL* ssl, bool timed_out) {
  if (spdlog::should_log(spdlog::level::debug)) {
    char buf[256];
    unsigned long e = ERR_peek_last_error();
    ERR_error_string_n(e, buf, sizeof buf);
    spdlog::debug("handshake failed reason={} verify={}", e ? buf : "none",
                  X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
  }
  if (timed_out) {
    count(stats, Failure::kHandshakeTimeout);
    return;
  }
  switch (verifyFailureOf(ssl)) {
    case VerifyFailure::kVerifyError:
      count(stats, Failure::kFailVerifyError);
      return;
    case VerifyFailure::kVerifySan:
      count(stats, Failure::kFailVerifySan);
      return;
    default:
      break;
  }
  if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
    count(stats, Failure::kNoCertificate);
  else
    count(stats, Failure::kConnectionError);
}

// The handshake and what both directions check after it: a resumed session
// whose peer certificate has expired since is refused, then the peer's
// SPIFFE ID (the chain verified and the leaf passed the SVID checks in the
// verify callback). Every failure is counted; nothing is returned then.
awaitable<std::optional<pki::SpiffeId>> handshakePeer(TlsSocket& tls, Session& s,
                                                      ListenerRuntime& l) {
  auto started = Steady::now();
  if (!co_await tls.handshake()) {
    countHandshakeFailure(*l.stats, tls.ssl(), s.timed_out);
    co_return std::nullopt;
  }
  l.stats->handshake_seconds->Observe(
      std::chrono::duration<double>(Steady::now() - started).count());
  const X509* peer = SSL_get0_peer_certificate(tls.ssl());
  if (SSL_session_reused(tls.ssl()) && peerExpired(peer)) {
    count(*l.stats, Failure::kFailVerifyError);
    co_return std::nullopt;
  }
  auto id = pki::checkSvidLeaf(peer);
  if (!id.ok()) {
    count(*l.stats, Failure::kFailVerifySan);
    spdlog::debug("peer is not an X.509-SVID listener={}: {}", l.name, id.error().message);
    co_return std::nullopt;
  }
  co_return std::move(*id);
}

// A handshake that passed every check, counted.
void established(ListenerRuntime& l, const SSL* ssl, const pki::SpiffeId& peer) {
  const bool resumed = SSL_session_reused(ssl) == 1;
  l.stats->handshakes->Increment();
  if (resumed)
    l.stats->resumed->Increment();
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("{} listener={} peer={} resumed={} alpn={}",
                  l.inbound ? "connection accepted" : "upstream connected", l.name, peer.str(),
                  resumed, negotiatedAlpn(ssl));
}

awaitable<void> ProxyImpl::serveInbound(std::shared_ptr<Session> s, ListenerRuntime& l) {
  const Mode mode = l.mode.load(std::memory_order_relaxed);  // this connection's, to its end
  const auto allowed = l.allowed.load();
  s->deadline(config_.handshake_timeout);
  InboundPath path = InboundPath::kPlaintext;  // DISABLE: no look at the bytes
  if (mode != Mode::kDisable) {
    // Peeking leaves the bytes for whoever reads them (OpenSSL or the pipe).
    std::array<unsigned char, kSniffBytes> first{};
    ssize_t n = -1;
    for (;;) {
      n = recvNow(s->down.get(), first.data(), first.size(), MSG_PEEK);
      if (n >= 0 || !wouldBlock(errno))
        break;
      s->down_ready.readDrained();
      asio::error_code ec;
      co_await s->down_ready.waitRead(withError(ec));
      if (ec)
        break;  // aborted: the deadline, or shutdown
    }
    if (n <= 0) {
      if (s->timed_out)
        count(*l.stats, Failure::kHandshakeTimeout);
      co_return;
    }
    path = sniffInbound(mode, std::span<const unsigned char>(first.data(), static_cast<size_t>(n)));
    if (path == InboundPath::kRefused) {
      count(*l.stats, Failure::kPlaintextRefused);
      co_return;
    }
  }
  if (path == InboundPath::kPlaintext) {
    l.stats->plaintext->Increment();
    if (!co_await connectUp(*s, l))
      co_return;
    s->watchIdle(config_.idle_timeout);
    PlainSocket down(s->down.get(), s->down_ready), up(s->up.get(), s->up_ready);
    co_await both(pipe(down, up, *s, l.stats->bytes_in), pipe(up, down, *s, l.stats->bytes_out),
                  *s);
    co_return;
  }

  auto snapshot = store_.current();  // once per connection
  SslPtr ssl(SSL_new(snapshot->server->native_handle()));
  SSL_set_accept_state(ssl.get());
  if (!l.alpn.empty())
    setAlpnChoices(ssl.get(), &l.alpn);
  TlsSocket down(s->down.get(), s->down_ready, std::move(ssl), s->tls_buffers, s->buffers,
                 Tls13Stream::Role::kServer,
                 config_.own_record_layer ? l.stats->record_layer : nullptr);
  auto id = co_await handshakePeer(down, *s, l);
  if (!id)
    co_return;
  if (!(id->trustDomain() == config_.trust_domain) || !allowed->allows(*id)) {
    count(*l.stats, Failure::kAuthzDenied);
    spdlog::debug("connection denied listener={} peer={}", l.name, id->str());
    co_return;
  }
  established(l, down.ssl(), *id);
  down.dropSslOnceMoved();
  if (!co_await connectUp(*s, l))
    co_return;
  s->watchIdle(config_.idle_timeout);
  PlainSocket up(s->up.get(), s->up_ready);
  co_await both(pipe(down, up, *s, l.stats->bytes_in), pipe(up, down, *s, l.stats->bytes_out), *s);
}

awaitable<void> ProxyImpl::serveOutbound(std::shared_ptr<Session> s, ListenerRuntime& l,
                                         SessionSlot& slot) {
  const OutboundListener& cfg = *l.outbound;
  const auto expected = l.allowed.load();
  s->deadline(config_.handshake_timeout);
  if (!co_await connectUp(*s, l))
    co_return;
  auto snapshot = store_.current();
  auto pinned = snapshot->pinned_clients.find(cfg.name);
  asio::ssl::context& ctx =
      pinned != snapshot->pinned_clients.end() ? *pinned->second : *snapshot->client;
  SslPtr ssl(SSL_new(ctx.native_handle()));
  SSL_set_connect_state(ssl.get());
  if (!cfg.sni.empty())
    SSL_set_tlsext_host_name(ssl.get(), cfg.sni.c_str());
  if (!l.alpn.empty()) {
    SSL_set_alpn_protos(ssl.get(), reinterpret_cast<const unsigned char*>(l.alpn.data()),
                        static_cast<unsigned int>(l.alpn.size()));
  }
  // Resume the last session to this destination, if it was made with the
  // certificates we hold now; the new session OpenSSL hands back replaces it.
  if (cfg.resumption) {
    if (slot.session && slot.generation == snapshot->generation &&
        !peerExpired(SSL_SESSION_get0_peer(slot.session)))
      SSL_set_session(ssl.get(), slot.session);
    if (slot.generation != snapshot->generation)
      slot.replace(nullptr, snapshot->generation);
    SSL_set_ex_data(ssl.get(), slotIndex(), &slot);
  }
  TlsSocket up(s->up.get(), s->up_ready, std::move(ssl), s->tls_buffers, s->buffers,
               Tls13Stream::Role::kClient,
               config_.own_record_layer ? l.stats->record_layer : nullptr);
  auto id = co_await handshakePeer(up, *s, l);
  if (!id)
    co_return;
  if (!expected->allows(*id)) {
    count(*l.stats, Failure::kFailVerifySan);
    spdlog::debug("upstream identity refused listener={} peer={}", l.name, id->str());
    co_return;
  }
  established(l, up.ssl(), *id);
  up.dropSslOnceMoved();
  s->watchIdle(config_.idle_timeout);
  PlainSocket down(s->down.get(), s->down_ready);
  co_await both(pipe(down, up, *s, l.stats->bytes_in), pipe(up, down, *s, l.stats->bytes_out), *s);
}

void ProxyImpl::noteScrapedValues() {
  auto snap = store_.current();
  if (snap && snap->sessions)
    metrics_.sessionCache(snap->sessions->size(), snap->sessions->evicted());
  else
    metrics_.sessionCache(0, 0);
  ReadinessLoop::PollStats polls;
  for (const auto& loop : loops_) {
    auto s = loop->pollStats();
    polls.caught += s.caught;
    polls.missed += s.missed;
    polls.budget = std::max(polls.budget, s.budget);
  }
  metrics_.busyPolls(polls.caught, polls.missed, polls.budget);
  size_t kept = 0;
  uint64_t released = 0;
  for (const auto& k : tls_buffers_) {
    kept += k->kept();
    released += k->released();
  }
  metrics_.tlsBuffers(kept, released);
}

// The agent's /certs shape (Envoy's): the bundle's roots as ca_cert, our
// leaf as cert_chain; plus the snapshot generation.
std::string ProxyImpl::certsJson() const {
  auto snap = store_.current();
  const SystemTime now = clock_.now();
  nlohmann::json ca = nlohmann::json::array();
  if (auto roots = pki::parseCertificatesPem(snap->bundle_pem); roots.ok()) {
    for (const auto& r : *roots)
      ca.push_back(pki::envoyCertDetails(r.get(), "ROOTCA", now));
  }
  nlohmann::json chain = nlohmann::json::array();
  if (auto leaf = pki::parseCertificatesPem(snap->leaf_chain_pem); leaf.ok() && !leaf->empty()) {
    auto id = pki::checkSvidLeaf(leaf->front().get());
    chain.push_back(
        pki::envoyCertDetails(leaf->front().get(), id.ok() ? id->str() : "default", now));
  }
  return nlohmann::json{
      {"certificates", nlohmann::json::array({{{"ca_cert", ca}, {"cert_chain", chain}}})},
      {"generation", snap->generation}}
      .dump(2);
}

ListenerRuntime* ProxyImpl::find(const std::string& name) const {
  for (const auto& l : listeners_) {
    if (l->name == name)
      return l.get();
  }
  return nullptr;
}

Result<void> ProxyImpl::reload(const std::string& config_path) {
  std::lock_guard lock(reconfigure_mu_);
  auto fail = [this](Error e) {
    metrics_.configReload(false);
    return e;
  };
  auto loaded = loadProxyConfig(config_path);
  if (!loaded.ok())
    return fail(loaded.error());
  const ProxyConfig& next = *loaded;
  if (auto r = checkReloadable(config_, next); !r.ok())
    return fail(r.error());
  for (const auto& in : next.inbound) {
    ListenerRuntime* l = find(in.name);
    Mode was = l->mode.exchange(in.mode);
    l->allowed = std::make_shared<const AllowList>(in.allow_list);
    if (was != in.mode)
      spdlog::info("listener mode changed listener={} from={} to={}", in.name, modeName(was),
                   modeName(in.mode));
  }
  for (const auto& out : next.outbound)
    find(out.name)->allowed = std::make_shared<const AllowList>(out.expected);
  metrics_.configReload(true);
  spdlog::info("configuration reloaded");
  return okResult();
}

Result<void> ProxyImpl::setMode(const std::string& listener, Mode mode) {
  std::lock_guard lock(reconfigure_mu_);
  ListenerRuntime* l = find(listener);
  if (!l || !l->inbound)
    return Error::notFound(fmt::format("no inbound listener \"{}\"", listener));
  Mode was = l->mode.exchange(mode);
  spdlog::info("listener mode changed listener={} from={} to={} by=admin", listener, modeName(was),
               modeName(mode));
  return okResult();
}

HttpReply ProxyImpl::modeCall(const std::map<std::string, std::string>& params) {
  auto listener = params.find("listener");
  auto mode = params.find("mode");
  if (listener == params.end() || mode == params.end())
    return {400, "text/plain", "give listener=NAME and mode=STRICT|PERMISSIVE|DISABLE\n"};
  auto m = parseMode(mode->second);
  if (!m.ok())
    return {400, "text/plain", m.error().message + "\n"};
  auto r = setMode(listener->second, *m);
  if (!r.ok())
    return {404, "text/plain", r.error().message + "\n"};
  return {200, "application/json", listenersJson()};
}

std::string ProxyImpl::listenersJson() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& l : listeners_) {
    nlohmann::json j{{"name", l->name},
                     {"direction", l->inbound ? "inbound" : "outbound"},
                     {"port", l->port},
                     {"allow", l->allowed.load()->entries()}};
    if (l->inbound)
      j["mode"] = modeName(l->mode.load());
    list.push_back(std::move(j));
  }
  return nlohmann::json{{"listeners", list}}.dump(2);
}

void ProxyImpl::shutdown() {
  if (stopped_)
    return;
  stopped_ = true;
  if (certs_)
    certs_->stop();
  for (auto& loop : loops_)
    loop->stop();
  for (auto& t : threads_)
    t.join();
  for (auto& l : loops_)
    l->detach();  // the waits' handlers go to the idle workers, which free them
  for (auto& l : listeners_)
    l->acceptors.clear();  // the port closes now; their frames are freed with the workers
  if (admin_)
    admin_->stop();
}

}  // namespace

Result<std::unique_ptr<Proxy>> startProxy(const ProxyConfig& config, const Clock& clock,
                                          const CertSourceFactory& sources) {
  auto p = std::make_unique<ProxyImpl>(config, clock);
  MESHID_RETURN_IF_ERROR(p->init(sources));
  return std::unique_ptr<Proxy>(std::move(p));
}

}  // namespace meshid::proxy
