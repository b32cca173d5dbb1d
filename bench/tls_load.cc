// Load generator and backend for the proxy benchmark (bench/proxy_compare.sh).
//
//   serve  a plaintext backend: echoes what it reads, or swallows a bulk
//          transfer ('S' + 8-byte big-endian length + payload) and answers 'K'.
//          SIGUSR1 prints its counters, so the script can check that every
//          handshake a client counted reached the backend.
//   hs     new connections, one after another on C slots: handshake, one small
//          echo, close. The echo is what makes the count honest: a proxy
//          forwards nothing before it has finished the handshake and verified
//          the client certificate, so a counted handshake is a completed,
//          verified one on the server (openssl s_time -new with TLS 1.3 closes
//          right after its Finished and never learns whether the server did).
//          --resume offers each slot's newest session on its next connection
//          (--tls1_2: TLS 1.2 only, where the client waits for the server's
//          Finished).
//   rr     C keep-alive connections, each sending a small request and waiting
//          for its echo: requests/s, p50 and p99 latency.
//   bulk   one connection sends --bytes one way to the backend's sink.
//   idle   opens C connections (handshake + one round trip to the backend
//          each), prints "ready", holds them for --seconds.
//
// rr and bulk take --target "NAME HOST:PORT PIDS|- tls|plain" (repeated)
// instead of --connect: the systems are loaded in turns (--slice seconds for
// rr, --slice-bytes for bulk) within one run, each turn ending once its
// requests in flight have come back, and one result line per system, starting
// "target=NAME", sums its turns. A drift of the machine's speed then falls on
// all of them alike instead of on whichever ran in a slower minute.
// Without --cert/--key/--ca the client speaks plaintext (the direct baseline).
// With --pids, the CPU (utime + stime) of those processes over the measured
// window is reported, so set-up outside the window is not charged to them.
// Results are one line of key=value pairs on stdout.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pki/ossl.h"

namespace {

using meshid::pki::OsslDeleter;
using meshid::pki::SslCtxPtr;
using meshid::pki::SslPtr;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, OsslDeleter<SSL_SESSION_free>>;
using Clock = std::chrono::steady_clock;

constexpr size_t kBufSize = 64 * 1024;
constexpr char kSinkTag = 'S';
constexpr char kSinkAck = 'K';

struct Options {
  std::string connect = "127.0.0.1:0";
  std::string listen = "127.0.0.1:0";
  std::string cert, key, ca;
  int conns = 1;
  double seconds = 5;
  double warmup = 1;
  size_t size = 64;                        // request (and echo) size
  uint64_t bytes = 1024ull * 1024 * 1024;  // bulk transfer size
  bool tls12 = false;
  bool resume = false;
  std::vector<int> pids;
  std::vector<std::string> targets;            // interleaved systems (rr, bulk)
  double slice = 0.5;                          // rr: seconds per turn
  uint64_t slice_bytes = 64ull * 1024 * 1024;  // bulk: bytes per turn
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "tls_load: %s\n", what.c_str());
  std::exit(1);
}

// The OpenSSL error queue, drained, as one message.
std::string sslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += out.empty() ? "" : "; ";
    out += buf;
  }
  return out.empty() ? std::strerror(errno) : out;
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  void reset(int fd = -1) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

sockaddr_in parseEndpoint(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (colon == std::string::npos ||
      inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &sa.sin_addr) != 1)
    die("not an IPv4 host:port: " + hostport);
  std::string port = hostport.substr(colon + 1);
  char* end = nullptr;
  long v = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || v <= 0 || v > 65535)
    die("not a port: " + hostport);
  sa.sin_port = htons(static_cast<uint16_t>(v));
  return sa;
}

// A socket connecting to `to`; non-blocking ones may still be in progress.
Fd openSocket(const sockaddr_in& to, bool non_blocking) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | (non_blocking ? SOCK_NONBLOCK : 0), 0));
  if (fd.get() < 0)
    die(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  // Small requests must leave at once, as in an RPC client.
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 &&
      !(non_blocking && errno == EINPROGRESS))
    return Fd();
  return fd;
}

// Called for each session the server hands out (TLS 1.3: each ticket). The
// slot keeps the newest and offers it next, like a client's session cache;
// a server that sends no new ticket on a resumed handshake gets the previous
// one again (still valid for a stateless server).
int keepSession(SSL* ssl, SSL_SESSION* session);

// The client context, or null for plaintext.
SslCtxPtr makeClientCtx(const Options& o) {
  if (o.cert.empty() && o.key.empty() && o.ca.empty())
    return nullptr;
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx || SSL_CTX_use_certificate_chain_file(ctx.get(), o.cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx.get(), o.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_load_verify_locations(ctx.get(), o.ca.c_str(), nullptr) != 1)
    die("client TLS set-up: " + sslErrors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (o.tls12)
    SSL_CTX_set_max_proto_version(ctx.get(), TLS1_2_VERSION);
  // The server is checked against the bundle like a mesh client would; its
  // SPIFFE ID is not, as the proxies under test do not differ there.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  // Sessions are kept per slot (see --resume), not in OpenSSL's cache.
  SSL_CTX_set_session_cache_mode(ctx.get(),
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx.get(), &keepSession);
  return ctx;
}

// CPU seconds (utime + stime, all threads) of the given processes.
double cpuSeconds(const std::vector<int>& pids) {
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  double total = 0;
  for (int pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    auto paren = line.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos)
      die("cannot read /proc/" + std::to_string(pid) + "/stat");
    std::istringstream fields(line.substr(paren + 2));
    std::string f;
    // Fields 3..13 precede utime (14) and stime (15).
    for (int i = 3; i <= 13; ++i)
      fields >> f;
    unsigned long long utime = 0, stime = 0;
    fields >> utime >> stime;
    total += static_cast<double>(utime + stime) / ticks;
  }
  return total;
}

double percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty())
    return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(i), v.end());
  return v[i];
}

// A system the load goes to: --connect (no name), or one --target.
struct Endpoint {
  std::string name;
  sockaddr_in to{};
  SSL_CTX* ctx = nullptr;  // null = plaintext
  std::vector<int> pids;   // whose CPU is reported

  // The start of its result line.
  std::string prefix() const { return name.empty() ? "" : "target=" + name + " "; }
};

// "NAME HOST:PORT PIDS|- tls|plain", PIDS comma-separated.
Endpoint parseTarget(const std::string& spec, SSL_CTX* ctx) {
  std::istringstream in(spec);
  std::string name, hostport, pids, mode, extra;
  if (!(in >> name >> hostport >> pids >> mode) || (in >> extra) ||
      (mode != "tls" && mode != "plain"))
    die("--target wants \"NAME HOST:PORT PIDS|- tls|plain\", got \"" + spec + "\"");
  if (mode == "tls" && !ctx)
    die("--target " + name + ": tls needs --cert, --key and --ca");
  Endpoint e{name, parseEndpoint(hostport), mode == "tls" ? ctx : nullptr, {}};
  std::istringstream list(pids == "-" ? "" : pids);
  for (std::string pid; std::getline(list, pid, ',');) {
    char* end = nullptr;
    long v = std::strtol(pid.c_str(), &end, 10);
    if (pid.empty() || *end != '\0' || v <= 0 || v > INT32_MAX)
      die("--target " + name + ": not a process id: \"" + pid + "\"");
    e.pids.push_back(static_cast<int>(v));
  }
  return e;
}

// ---------------------------------------------------------------------------
// Blocking connections (bulk, idle)

struct Link {
  Fd fd;
  SslPtr ssl;  // null = plaintext

  bool writeAll(const char* p, size_t n) {
    while (n > 0) {
      long w = ssl ? SSL_write(ssl.get(), p, static_cast<int>(std::min<size_t>(n, 1 << 30)))
                   : ::write(fd.get(), p, n);
      if (w <= 0)
        return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }
  bool readAll(char* p, size_t n) {
    while (n > 0) {
      long r = ssl ? SSL_read(ssl.get(), p, static_cast<int>(n)) : ::read(fd.get(), p, n);
      if (r <= 0)
        return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
};

// Connects, handshakes and makes one round trip to the backend: after it the server
// has finished the handshake and opened its backend connection.
Link openLink(const sockaddr_in& to, SSL_CTX* ctx) {
  Link l{openSocket(to, false), nullptr};
  if (l.fd.get() < 0)
    die(std::string("connect: ") + std::strerror(errno));
  if (ctx) {
    l.ssl.reset(SSL_new(ctx));
    SSL_set_fd(l.ssl.get(), l.fd.get());
    if (SSL_connect(l.ssl.get()) != 1)
      die("handshake: " + sslErrors());
  }
  // An empty sink message: the backend's answer leaves the connection free
  // for any kind of message after it.
  char empty[9] = {kSinkTag}, ack = 0;
  if (!l.writeAll(empty, sizeof empty) || !l.readAll(&ack, 1) || ack != kSinkAck)
    die("no answer through the connection: " + sslErrors());
  return l;
}

// One sink message of n bytes through l, answered once the backend has it all.
bool sink(Link& l, const std::vector<char>& buf, uint64_t bytes) {
  char header[9] = {kSinkTag};
  for (int i = 0; i < 8; ++i)
    header[1 + i] = static_cast<char>(bytes >> (56 - 8 * i));
  bool ok = l.writeAll(header, sizeof header);
  for (uint64_t left = bytes; ok && left > 0;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    ok = l.writeAll(buf.data(), n);
    left -= n;
  }
  char ack = 0;
  return ok && l.readAll(&ack, 1) && ack == kSinkAck;
}

// --bytes through each endpoint's connection. With several, they take turns
// of --slice-bytes, so a drift of this VM's speed falls on all of them alike.
int runBulk(const Options& o, const std::vector<Endpoint>& endpoints) {
  struct Run {
    Link link;
    uint64_t sent = 0;
    double secs = 0, cpu = 0;
  };
  std::vector<Run> runs;
  for (const auto& e : endpoints)
    runs.push_back({openLink(e.to, e.ctx)});
  std::vector<char> buf(kBufSize, 'x');
  uint64_t turn = endpoints.size() == 1 ? o.bytes : std::max<uint64_t>(1, o.slice_bytes);
  for (bool more = true; more;) {
    more = false;
    for (size_t i = 0; i < runs.size(); ++i) {
      auto& r = runs[i];
      uint64_t n = std::min(turn, o.bytes - r.sent);
      if (n == 0)
        continue;
      double cpu0 = cpuSeconds(endpoints[i].pids);
      auto t0 = Clock::now();
      if (!sink(r.link, buf, n))
        die(endpoints[i].prefix() + "bulk transfer broke off: " + sslErrors());
      r.secs += std::chrono::duration<double>(Clock::now() - t0).count();
      r.cpu += cpuSeconds(endpoints[i].pids) - cpu0;
      r.sent += n;
      more = true;
    }
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    auto& r = runs[i];
    // The suite is printed so that a run shows every system did the same crypto.
    const char* suite = r.link.ssl ? SSL_get_cipher_name(r.link.ssl.get()) : "none";
    std::printf("%smode=bulk bytes=%llu secs=%.3f mb_per_s=%.1f cpu_s=%.2f cipher=%s\n",
                endpoints[i].prefix().c_str(), static_cast<unsigned long long>(o.bytes), r.secs,
                static_cast<double>(o.bytes) / r.secs / 1e6, r.cpu, suite);
  }
  return 0;
}

int runIdle(const Options& o, SSL_CTX* ctx) {
  auto to = parseEndpoint(o.connect);
  std::vector<Link> links;
  links.reserve(static_cast<size_t>(o.conns));
  for (int i = 0; i < o.conns; ++i)
    links.push_back(openLink(to, ctx));
  std::printf("ready conns=%d\n", o.conns);
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  return 0;
}

// ---------------------------------------------------------------------------
// Non-blocking connections on one epoll loop (hs, rr)

enum class Step { kConnecting, kHandshaking, kSending, kReceiving };

struct Target;

struct Conn {
  Target* target = nullptr;
  Fd fd;
  SslPtr ssl;
  SslSessionPtr session;  // the newest one this slot got, offered with --resume
  Step step = Step::kConnecting;
  size_t done = 0;  // bytes of the current request sent or of its echo read
  bool in_flight = false;
  Clock::time_point sent_at;
};

int keepSession(SSL* ssl, SSL_SESSION* session) {
  auto* c = static_cast<Conn*>(SSL_get_app_data(ssl));
  if (!c || !SSL_SESSION_is_resumable(session))
    return 0;  // not ours to keep: OpenSSL frees it
  c->session.reset(session);
  return 1;  // we own it now
}

struct Totals {
  uint64_t handshakes = 0, resumed = 0, requests = 0, errors = 0;
  std::string first_error;
  std::vector<uint32_t> latencies_us;
};

// An endpoint's connections and counts in a run.
struct Target : Endpoint {
  std::vector<Conn> conns;
  Totals totals;
  bool active = false;    // its connections may start requests
  bool counting = false;  // in a measured slice: completions count
  int in_flight = 0;
  double secs = 0, cpu = 0;  // measured, summed over its slices
};

enum class Io { kDone, kWait, kFailed };

class Loop {
 public:
  Loop(const Options& o, std::vector<Target>& targets, bool new_conn_per_request)
      : o_(o),
        targets_(targets),
        per_request_(new_conn_per_request),
        epoll_(epoll_create1(0)),
        request_(o.size, 'E'),
        reply_(o.size, 0) {}

  int run(const char* mode) {
    for (auto& t : targets_) {
      t.conns.resize(static_cast<size_t>(o_.conns));
      for (auto& c : t.conns) {
        c.target = &t;
        start(c);
      }
    }
    if (targets_.size() == 1) {
      // One continuous window after the warm-up, as a client would run.
      activate(targets_[0]);
      window(targets_[0], o_.warmup, false);
      window(targets_[0], o_.seconds, true);
    } else {
      // Interleaved: each target in turn gets a slice while the others idle,
      // so a drift of this VM's speed falls on all of them alike.
      for (auto& t : targets_)
        slice(t, o_.warmup, false);
      for (bool more = true; more;) {
        more = false;
        for (auto& t : targets_) {
          double left = o_.seconds - t.secs;
          if (left <= 1e-3)
            continue;
          slice(t, std::min(left, o_.slice), true);
          more = true;
        }
      }
    }
    for (auto& t : targets_) {
      auto& r = t.totals;
      std::printf(
          "%smode=%s conns=%d secs=%.3f handshakes=%llu resumed=%llu requests=%llu "
          "per_s=%.1f p50_us=%.0f p99_us=%.0f cpu_s=%.2f errors=%llu",
          t.prefix().c_str(), mode, o_.conns, t.secs, static_cast<unsigned long long>(r.handshakes),
          static_cast<unsigned long long>(r.resumed), static_cast<unsigned long long>(r.requests),
          static_cast<double>(per_request_ ? r.handshakes : r.requests) / t.secs,
          percentile(r.latencies_us, 0.50), percentile(r.latencies_us, 0.99), t.cpu,
          static_cast<unsigned long long>(r.errors));
      if (!r.first_error.empty())
        std::printf(" first_error=\"%s\"", r.first_error.c_str());
      std::printf("\n");
    }
    return 0;
  }

 private:
  // Runs the loop for `secs` with t active; a counted window adds its time
  // and t's CPU to t's totals.
  void window(Target& t, double secs, bool count) {
    auto begin = Clock::now();
    double cpu0 = count ? cpuSeconds(t.pids) : 0;
    t.counting = count;
    auto end =
        begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
    pump([&] { return Clock::now() >= end; });
    if (count) {
      t.secs += std::chrono::duration<double>(Clock::now() - begin).count();
      t.cpu += cpuSeconds(t.pids) - cpu0;
    }
  }

  // A window, then no new requests until those in flight have come back
  // (counted with the slice), so the next target starts on an idle system.
  void slice(Target& t, double secs, bool count) {
    auto begin = Clock::now();
    double cpu0 = count ? cpuSeconds(t.pids) : 0;
    t.counting = count;
    activate(t);
    auto end =
        begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
    pump([&] { return Clock::now() >= end; });
    t.active = false;
    auto give_up = Clock::now() + std::chrono::seconds(10);
    pump([&] { return t.in_flight == 0 || Clock::now() >= give_up; });
    if (t.in_flight > 0)
      die("target " + t.name + ": requests still in flight 10 s after its slice");
    t.counting = false;
    if (count) {
      t.secs += std::chrono::duration<double>(Clock::now() - begin).count();
      t.cpu += cpuSeconds(t.pids) - cpu0;
    }
  }

  void activate(Target& t) {
    t.active = true;
    for (auto& c : t.conns)
      if (c.step == Step::kSending && c.done == 0)
        drive(c);  // parked after its last echo or its handshake
  }

  template <typename Done>
  void pump(Done done) {
    epoll_event events[256];
    while (!done()) {
      int n = epoll_wait(epoll_.get(), events, 256, 50);
      for (int i = 0; i < n; ++i)
        drive(*static_cast<Conn*>(events[i].data.ptr));
    }
  }

  void start(Conn& c) {
    c.ssl.reset();
    c.fd = openSocket(c.target->to, true);
    c.step = Step::kConnecting;
    c.done = 0;
    if (c.fd.get() < 0)
      return fail(c, std::string("connect: ") + std::strerror(errno));
    // Edge-triggered: drive() always runs a connection until it must wait.
    epoll_event ev{EPOLLIN | EPOLLOUT | EPOLLET, {.ptr = &c}};
    epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev);
  }

  void fail(Conn& c, const std::string& why) {
    auto& t = *c.target;
    if (t.counting)
      ++t.totals.errors;
    if (t.totals.first_error.empty())
      t.totals.first_error = why;
    if (c.in_flight) {
      c.in_flight = false;
      --t.in_flight;
    }
    c.session.reset();  // a broken session is not offered again
    c.fd.reset();
    // A refused or dead server would otherwise be retried in a tight loop.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    start(c);
  }

  void drive(Conn& c) {
    for (;;) {
      Io r = step(c);
      if (r == Io::kWait)
        return;
      if (r == Io::kFailed)
        return fail(c, sslErrors());
    }
  }

  Io step(Conn& c) {
    switch (c.step) {
      case Step::kConnecting:
        return connected(c);
      case Step::kHandshaking:
        return handshake(c);
      case Step::kSending:
        return send(c);
      case Step::kReceiving:
        return receive(c);
    }
    return Io::kFailed;
  }

  Io connected(Conn& c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == EINPROGRESS || err == EALREADY)
      return Io::kWait;
    if (err != 0) {
      errno = err;
      return Io::kFailed;
    }
    if (!c.target->ctx) {
      c.step = Step::kSending;
      return Io::kDone;
    }
    c.ssl.reset(SSL_new(c.target->ctx));
    SSL_set_fd(c.ssl.get(), c.fd.get());
    SSL_set_app_data(c.ssl.get(), &c);
    if (o_.resume && c.session) {
      // A copy: a TLS 1.3 resumption rewrites the offered session's secret
      // in place, so offering the same object twice fails on the server's
      // binder check (a full handshake) when no new ticket came in between.
      SslSessionPtr copy(SSL_SESSION_dup(c.session.get()));
      SSL_set_session(c.ssl.get(), copy.get());
    }
    c.step = Step::kHandshaking;
    return Io::kDone;
  }

  Io handshake(Conn& c) {
    int r = SSL_connect(c.ssl.get());
    if (r != 1)
      return sslWait(c, r);
    c.step = Step::kSending;
    return Io::kDone;
  }

  Io send(Conn& c) {
    if (c.done == 0) {
      if (!c.target->active)
        return Io::kWait;  // parked until its target's next slice
      c.sent_at = Clock::now();
      if (!c.in_flight) {
        c.in_flight = true;
        ++c.target->in_flight;
      }
    }
    const char* p = request_.data() + c.done;
    size_t left = request_.size() - c.done;
    long w =
        c.ssl ? SSL_write(c.ssl.get(), p, static_cast<int>(left)) : ::write(c.fd.get(), p, left);
    if (w <= 0)
      return c.ssl ? sslWait(c, static_cast<int>(w)) : sysWait(w);
    c.done += static_cast<size_t>(w);
    if (c.done == request_.size()) {
      c.done = 0;
      c.step = Step::kReceiving;
    }
    return Io::kDone;
  }

  Io receive(Conn& c) {
    char* p = reply_.data() + c.done;
    size_t left = reply_.size() - c.done;
    long r = c.ssl ? SSL_read(c.ssl.get(), p, static_cast<int>(left)) : ::read(c.fd.get(), p, left);
    if (r <= 0)
      return c.ssl ? sslWait(c, static_cast<int>(r)) : sysWait(r);
    c.done += static_cast<size_t>(r);
    if (c.done < reply_.size())
      return Io::kDone;
    if (reply_ != request_) {
      errno = EPROTO;
      return Io::kFailed;
    }
    completed(c);
    return per_request_ ? Io::kWait : Io::kDone;  // a restarted conn waits for its connect
  }

  void completed(Conn& c) {
    auto& t = *c.target;
    if (t.counting) {
      ++t.totals.requests;
      t.totals.latencies_us.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - c.sent_at).count()));
    }
    c.in_flight = false;
    --t.in_flight;
    c.done = 0;
    c.step = Step::kSending;
    if (!per_request_)
      return;
    if (c.ssl) {
      // Counted only now, after the echo: the server surely finished it.
      if (t.counting) {
        ++t.totals.handshakes;
        t.totals.resumed += SSL_session_reused(c.ssl.get()) ? 1 : 0;
      }
      SSL_shutdown(c.ssl.get());  // close_notify, as a polite client sends
    } else if (t.counting) {
      ++t.totals.handshakes;  // plaintext: a connection, no handshake
    }
    start(c);  // adding the new socket to epoll reports it once connected
  }

  Io sslWait(Conn& c, int r) {
    int e = SSL_get_error(c.ssl.get(), r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? Io::kWait : Io::kFailed;
  }
  static Io sysWait(long r) {
    if (r == 0)
      errno = ECONNRESET;
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? Io::kWait : Io::kFailed;
  }

  const Options& o_;
  std::vector<Target>& targets_;
  bool per_request_;
  Fd epoll_;
  std::string request_, reply_;
};

// ---------------------------------------------------------------------------
// The backend (serve)

volatile sig_atomic_t g_report = 0;

struct Peer {
  enum class State { kFresh, kEcho, kSinkHeader, kSink };
  Fd fd;
  State state = State::kFresh;
  int header_got = 0;
  uint64_t remaining = 0;
  std::string out;  // waiting to be written; nothing is read meanwhile
  bool want_out = false;
};

class Backend {
 public:
  explicit Backend(const std::string& listen) : epoll_(epoll_create1(0)) {
    auto sa = parseEndpoint(listen);
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    int one = 1;
    setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(listener_.get(), 4096) != 0)
      die("listen on " + listen + ": " + std::strerror(errno));
    epoll_event ev{EPOLLIN, {.ptr = nullptr}};
    epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &ev);
  }

  [[noreturn]] void run() {
    std::vector<epoll_event> events(256);
    std::vector<char> buf(kBufSize);
    for (;;) {
      int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 200);
      if (g_report) {
        g_report = 0;
        std::printf("accepted=%llu active=%zu bytes_in=%llu\n",
                    static_cast<unsigned long long>(accepted_), peers_.size(),
                    static_cast<unsigned long long>(bytes_in_));
        std::fflush(stdout);
      }
      for (int i = 0; i < n; ++i) {
        auto* p = static_cast<Peer*>(events[static_cast<size_t>(i)].data.ptr);
        if (!p)
          acceptAll();
        else if (!serve(*p, buf))
          peers_.erase(std::find_if(peers_.begin(), peers_.end(),
                                    [p](const auto& q) { return q.get() == p; }));
      }
    }
  }

 private:
  void acceptAll() {
    for (;;) {
      int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK);
      if (fd < 0)
        return;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ++accepted_;
      auto p = std::make_unique<Peer>();
      p->fd.reset(fd);
      epoll_event ev{EPOLLIN, {.ptr = p.get()}};
      epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
      peers_.push_back(std::move(p));
    }
  }

  // False when the peer is gone.
  bool serve(Peer& p, std::vector<char>& buf) {
    if (p.out.empty()) {
      long r = ::read(p.fd.get(), buf.data(), buf.size());
      if (r == 0 || (r < 0 && errno != EAGAIN))
        return false;
      if (r > 0) {
        bytes_in_ += static_cast<uint64_t>(r);
        consume(p, buf.data(), static_cast<size_t>(r));
      }
    }
    if (!p.out.empty()) {
      long w = ::write(p.fd.get(), p.out.data(), p.out.size());
      if (w < 0 && errno != EAGAIN)
        return false;
      if (w > 0)
        p.out.erase(0, static_cast<size_t>(w));
    }
    // Backpressure: while an answer is pending, wait to write, not to read.
    bool want_out = !p.out.empty();
    if (want_out != p.want_out) {
      p.want_out = want_out;
      epoll_event ev{static_cast<uint32_t>(want_out ? EPOLLOUT : EPOLLIN), {.ptr = &p}};
      epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, p.fd.get(), &ev);
    }
    return true;
  }

  static void consume(Peer& p, const char* data, size_t n) {
    while (n > 0) {
      switch (p.state) {
        case Peer::State::kFresh:  // the first byte of a message picks its kind
          p.state = data[0] == kSinkTag ? Peer::State::kSinkHeader : Peer::State::kEcho;
          if (p.state == Peer::State::kSinkHeader) {
            ++data, --n;
            p.header_got = 0;
            p.remaining = 0;
          }
          break;
        case Peer::State::kEcho:
          p.out.append(data, n);
          return;
        case Peer::State::kSinkHeader:
          p.remaining = (p.remaining << 8) | static_cast<unsigned char>(*data);
          ++data, --n;
          if (++p.header_got == 8)
            p.state = Peer::State::kSink;
          if (p.state == Peer::State::kSink && p.remaining == 0)
            finishSink(p);
          break;
        case Peer::State::kSink: {
          size_t take = static_cast<size_t>(std::min<uint64_t>(p.remaining, n));
          data += take, n -= take;
          p.remaining -= take;
          if (p.remaining == 0)
            finishSink(p);
          break;
        }
      }
    }
  }
  static void finishSink(Peer& p) {
    p.out += kSinkAck;
    p.state = Peer::State::kFresh;
  }

  Fd epoll_, listener_;
  std::vector<std::unique_ptr<Peer>> peers_;
  uint64_t accepted_ = 0, bytes_in_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mTLS load generator and backend for bench/proxy_compare.sh"};
  app.require_subcommand(1);
  Options o;
  auto* serve = app.add_subcommand("serve", "plaintext echo/sink backend");
  serve->add_option("--listen", o.listen, "host:port")->required();
  std::vector<CLI::App*> clients;
  for (auto [name, help] : {std::pair{"hs", "new connection per request: handshakes/s"},
                            std::pair{"rr", "keep-alive request/response: req/s and latency"},
                            std::pair{"bulk", "one connection, --bytes one way"},
                            std::pair{"idle", "hold --conns connections for --seconds"}}) {
    auto* c = app.add_subcommand(name, help);
    c->add_option("--connect", o.connect, "host:port");
    c->add_option("--cert", o.cert, "client certificate chain (PEM); none = plaintext");
    c->add_option("--key", o.key, "client key (PEM)");
    c->add_option("--ca", o.ca, "roots that verify the server");
    c->add_option("--conns", o.conns, "concurrent connections")->check(CLI::Range(1, 100000));
    c->add_option("--seconds", o.seconds, "measured time (idle: hold time)");
    c->add_option("--warmup", o.warmup, "seconds before the measured window");
    c->add_option("--size", o.size, "request and echo size in bytes")
        ->check(CLI::Range(1, 1 << 20));
    c->add_option("--bytes", o.bytes, "bulk transfer size");
    c->add_flag("--tls1_2", o.tls12, "offer TLS 1.2 only");
    c->add_flag("--resume", o.resume, "hs: resume each slot's newest session");
    c->add_option("--pids", o.pids, "processes whose CPU to report")->delimiter(',');
    if (std::string(name) == "rr" || std::string(name) == "bulk") {
      c->add_option("--target", o.targets,
                    "instead of --connect, repeated: \"NAME HOST:PORT PIDS|- tls|plain\"; "
                    "the systems take turns");
      c->add_option("--slice", o.slice, "rr with --target: seconds per turn")
          ->check(CLI::PositiveNumber);
      c->add_option("--slice-bytes", o.slice_bytes, "bulk with --target: bytes per turn");
    }
    clients.push_back(c);
  }
  CLI11_PARSE(app, argc, argv);
  // A peer that goes away must show as an error, not kill the process.
  signal(SIGPIPE, SIG_IGN);
  if (serve->parsed()) {
    signal(SIGUSR1, [](int) { g_report = 1; });
    Backend(o.listen).run();
  }
  if (o.cert.empty() != o.key.empty() || o.cert.empty() != o.ca.empty())
    die("--cert, --key and --ca go together");
  SslCtxPtr ctx = makeClientCtx(o);
  bool has_connect = o.connect != "127.0.0.1:0";
  if (has_connect == !o.targets.empty())
    die("give either --connect or --target");
  std::vector<Endpoint> endpoints;
  if (has_connect)
    endpoints.push_back({"", parseEndpoint(o.connect), ctx.get(), o.pids});
  for (const auto& spec : o.targets)
    endpoints.push_back(parseTarget(spec, ctx.get()));
  if (clients[2]->parsed())
    return runBulk(o, endpoints);
  if (clients[3]->parsed())
    return runIdle(o, ctx.get());
  std::vector<Target> targets(endpoints.size());
  for (size_t i = 0; i < endpoints.size(); ++i)
    static_cast<Endpoint&>(targets[i]) = endpoints[i];
  return Loop(o, targets, clients[0]->parsed()).run(clients[0]->parsed() ? "hs" : "rr");
}
