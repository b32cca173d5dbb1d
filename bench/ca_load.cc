// Load generator for the CA issuance benchmark (bench/ca_issuance.sh): keeps
// C requests outstanding against meshid (gRPC+TLS, Istio's CreateCertificate)
// or cfssl (HTTP POST /api/v1/cfssl/sign) for a fixed time, with CSRs made
// before the clock starts, and prints one JSON line of results.
// meshid is called through one of two clients (--transport): "h2", gRPC's
// wire protocol written on nghttp2 + OpenSSL in one thread (the default: it
// costs a fraction of the CPU per call), or "grpc", the gRPC C++ client.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>
#include <vector>

#include "common/file_util.h"
#include "common/result.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "pki/csr.h"
#include "pki/key.h"
#include "pki/ossl.h"
#include "pki/ossl_error.h"

using Clock = std::chrono::steady_clock;

namespace {

struct Results {
  std::mutex mu;
  std::vector<double> latencies_ms;  // guarded by mu
  uint64_t errors = 0;               // guarded by mu
  std::string first_error;           // guarded by mu
  void add(double ms, bool ok, const std::string& err) {
    std::lock_guard lock(mu);
    if (ok) {
      latencies_ms.push_back(ms);
    } else {
      ++errors;
      if (first_error.empty())
        first_error = err;
    }
  }
};

// This process's CPU time (all threads) over the measured phase, for
// --print-cpu: what the client itself spends per call.
struct CpuClock {
  double user_s = 0, sys_s = 0;
  void start() { sample(-1); }
  void stop() { sample(+1); }

 private:
  void sample(int sign) {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    user_s += sign * (static_cast<double>(u.ru_utime.tv_sec) + u.ru_utime.tv_usec / 1e6);
    sys_s += sign * (static_cast<double>(u.ru_stime.tv_sec) + u.ru_stime.tv_usec / 1e6);
  }
};

std::vector<std::string> makeCsrs(const std::string& key_type, const std::string& spiffe_id,
                                  int count, int distinct_keys) {
  auto type = meshid::pki::parseKeyType(key_type);
  auto id = meshid::pki::SpiffeId::parse(spiffe_id);
  if (!type.ok() || !id.ok()) {
    std::fprintf(stderr, "bad --key-type or --spiffe-id\n");
    std::exit(2);
  }
  std::vector<meshid::pki::EvpPkeyPtr> keys;
  for (int i = 0; i < distinct_keys; ++i)
    keys.push_back(std::move(*meshid::pki::generateKey(*type)));
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    auto req = meshid::pki::buildCsr(keys[i % keys.size()].get(), *id);
    out.push_back(meshid::pki::csrToPem(req->get()));
  }
  return out;
}

// gRPC: C chains of back-to-back calls on one channel (as many agents behind
// one connection would look to the server).
class GrpcWorker {
 public:
  GrpcWorker(istio::v1::auth::IstioCertificateService::Stub& stub,
             const std::vector<std::string>& csrs, size_t offset, Results& results,
             std::atomic<bool>& stop, std::atomic<int>& live, std::condition_variable& done_cv)
      : stub_(stub),
        csrs_(csrs),
        next_(offset),
        results_(results),
        stop_(stop),
        live_(live),
        done_cv_(done_cv) {}

  void start() { send(); }

 private:
  void send() {
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    req_.set_csr(csrs_[next_++ % csrs_.size()]);
    req_.set_validity_duration(3600);
    resp_.Clear();
    started_ = Clock::now();
    stub_.async()->CreateCertificate(ctx_.get(), &req_, &resp_, [this](grpc::Status s) {
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
      bool ok = s.ok() && resp_.cert_chain_size() >= 2;
      results_.add(ms, ok, s.ok() ? "short chain" : s.error_message());
      if (stop_.load()) {
        if (--live_ == 0)
          done_cv_.notify_all();
        return;
      }
      send();
    });
  }

  istio::v1::auth::IstioCertificateService::Stub& stub_;
  const std::vector<std::string>& csrs_;
  size_t next_;
  Results& results_;
  std::atomic<bool>& stop_;
  std::atomic<int>& live_;
  std::condition_variable& done_cv_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  istio::v1::auth::IstioCertificateRequest req_;
  istio::v1::auth::IstioCertificateResponse resp_;
  Clock::time_point started_;
};

void runGrpc(const std::string& addr, const std::string& root, const std::string& cert,
             const std::string& key, const std::string& token, const std::vector<std::string>& csrs,
             int concurrency, double seconds, double warmup, Results& results, CpuClock& cpu) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = *meshid::readFile(root, 1 << 20);
  if (!cert.empty()) {
    o.pem_cert_chain = *meshid::readFile(cert, 1 << 20);
    o.pem_private_key = *meshid::readFile(key, 1 << 20);
  }
  grpc::ChannelArguments args;
  auto channel = grpc::CreateCustomChannel(addr, grpc::SslCredentials(o), args);
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel);
  (void)token;
  std::atomic<bool> stop{false};
  std::atomic<int> live{concurrency};
  std::condition_variable done_cv;
  std::mutex done_mu;
  Results warm;
  // Warm-up: the same load, results discarded (TLS handshake, caches).
  {
    std::atomic<bool> wstop{false};
    std::atomic<int> wlive{concurrency};
    std::vector<std::unique_ptr<GrpcWorker>> workers;
    for (int i = 0; i < concurrency; ++i) {
      workers.push_back(
          std::make_unique<GrpcWorker>(*stub, csrs, i * 7919, warm, wstop, wlive, done_cv));
      workers.back()->start();
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(warmup));
    wstop = true;
    std::unique_lock lock(done_mu);
    done_cv.wait(lock, [&] { return wlive.load() == 0; });
  }
  std::vector<std::unique_ptr<GrpcWorker>> workers;
  for (int i = 0; i < concurrency; ++i) {
    workers.push_back(
        std::make_unique<GrpcWorker>(*stub, csrs, i * 7919 + 13, results, stop, live, done_cv));
  }
  cpu.start();
  for (auto& w : workers)
    w->start();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  std::unique_lock lock(done_mu);
  done_cv.wait(lock, [&] { return live.load() == 0; });
  cpu.stop();
}

// --- gRPC over HTTP/2 on nghttp2 + OpenSSL (--transport h2) ---------------
//
// gRPC C++'s client spends so much CPU per call that one core of it tops out
// near 6,400 calls/s, below what the CA may answer. This client speaks the
// same wire protocol with a fraction of the work: one TLS connection, one
// thread, poll(), HTTP/2 framing by nghttp2, C streams kept open.

using H2SessionPtr =
    std::unique_ptr<nghttp2_session, meshid::pki::OsslDeleter<nghttp2_session_del>>;
using H2CallbacksPtr = std::unique_ptr<nghttp2_session_callbacks,
                                       meshid::pki::OsslDeleter<nghttp2_session_callbacks_del>>;

constexpr std::string_view kCreateCertificatePath =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";
// The same deadline the gRPC transport gives each call; it also bounds the
// wait for the calls still open when a phase ends, and connection set-up.
constexpr auto kCallTimeout = std::chrono::seconds(10);
// Flow-control windows the server never fills, so no call waits on a
// WINDOW_UPDATE (answers are a few KiB each).
constexpr int32_t kWindow = (1 << 30);
// Bigger than any answer we accept; a larger one fails its call.
constexpr size_t kMaxResponseBytes = 4 << 20;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// grpc-message is percent-encoded (gRPC's PROTOCOL-HTTP2.md).
std::string percentDecode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

struct H2Target {
  std::string addr;  // HOST:PORT, also the :authority (as gRPC C++ sends it)
  std::string root, cert, key;
};

// One TLS connection carrying CreateCertificate calls. Not thread-safe: one
// thread owns it and drives it through run().
class H2Connection {
 public:
  // Connects, verifies the server (CA file, and the host of --addr as IP or DNS
  // name, as gRPC C++ checks it), agrees on "h2" by ALPN and sends the client
  // preface and SETTINGS. Waits at most kCallTimeout.
  static meshid::Result<std::unique_ptr<H2Connection>> create(const H2Target& t);
  // The session goes first: anything it still calls back into finds calls_.
  ~H2Connection() { session_.reset(); }

  // A closed loop of `concurrency` calls for `seconds`, then waits for the calls
  // still open (at most kCallTimeout). Each finished call goes to `results`.
  // A lost connection or a GOAWAY fails the open calls and ends the loop early;
  // a later run() on the same connection then records one error.
  void run(const std::vector<std::string>& csrs, size_t offset, int concurrency, double seconds,
           Results& results);

 private:
  struct Call {
    int32_t stream_id = 0;  // 0 = not open
    Clock::time_point started;
    std::string request;  // gRPC frame: 5-byte prefix + IstioCertificateRequest
    size_t request_sent = 0;
    std::string response;  // DATA payload as received
    int http_status = 0;
    int grpc_status = -1;  // -1 until a grpc-status header arrives
    std::string grpc_message;
    std::string failure;  // set locally (deadline, connection lost)
  };

  H2Connection() = default;
  meshid::Result<void> connectTls(const H2Target& t);
  meshid::Result<void> startSession();
  bool usable() const { return broken_.empty() && !goaway_; }
  void submit(Call& call);
  void finish(Call& call, uint32_t error_code);
  void failAll(const std::string& why);
  void fail(const std::string& why);
  bool flush();
  bool readAvailable();
  int pollTimeoutMs(Clock::time_point now, Clock::time_point until) const;

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* self);
  static int onDataChunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                         size_t len, void* self);
  static int onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self);
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static ssize_t readBody(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source* source, void* self);

  Fd fd_;
  meshid::pki::SslCtxPtr ctx_;
  meshid::pki::SslPtr ssl_;
  H2SessionPtr session_;
  std::string authority_;
  std::vector<nghttp2_nv> headers_;
  std::string out_;  // bytes from nghttp2 not yet taken by SSL_write
  size_t out_sent_ = 0;
  bool write_wants_read_ = false;  // SSL_write asked to wait for readability
  std::vector<uint8_t> in_ = std::vector<uint8_t>(64 * 1024);
  std::string broken_;  // why the connection is unusable; empty while it is fine
  bool goaway_ = false;

  // Per run().
  std::vector<std::unique_ptr<Call>> calls_;
  std::vector<Call*> ready_;  // calls to start again
  int live_ = 0;
  const std::vector<std::string>* csrs_ = nullptr;
  size_t next_csr_ = 0;
  Results* results_ = nullptr;
  istio::v1::auth::IstioCertificateRequest req_;
  istio::v1::auth::IstioCertificateResponse resp_;
};

meshid::Result<std::unique_ptr<H2Connection>> H2Connection::create(const H2Target& t) {
  std::unique_ptr<H2Connection> c(new H2Connection);
  MESHID_RETURN_IF_ERROR(c->connectTls(t));
  MESHID_RETURN_IF_ERROR(c->startSession());
  return c;
}

meshid::Result<void> H2Connection::connectTls(const H2Target& t) {
  using meshid::Error;
  authority_ = t.addr;
  size_t colon = t.addr.rfind(':');
  if (colon == std::string::npos)
    return Error::invalidArgument("--addr must be HOST:PORT: " + t.addr);
  std::string host = t.addr.substr(0, colon), port = t.addr.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto deadline = Clock::now() + kCallTimeout;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return Error::unavailable("resolve " + t.addr + ": " + gai_strerror(rc));
  // OsslDeleter takes any C free function.
  std::unique_ptr<addrinfo, meshid::pki::OsslDeleter<freeaddrinfo>> ai(found);
  auto waitFor = [&](short events) -> bool {
    pollfd p{fd_.get(), events, 0};
    return ::poll(&p, 1, pollTimeoutMs(Clock::now(), deadline)) > 0;
  };
  // Each resolved address in turn, as gRPC C++ does ("localhost" may give ::1
  // first while the server listens on 127.0.0.1).
  std::string connect_error = "no address";
  for (addrinfo* a = ai.get(); a; a = a->ai_next) {
    fd_.reset(::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, 0));
    if (fd_.get() < 0) {
      connect_error = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    if (::connect(fd_.get(), a->ai_addr, a->ai_addrlen) == 0) {
      connect_error.clear();
      break;
    }
    if (errno != EINPROGRESS) {
      connect_error = std::strerror(errno);
      continue;
    }
    if (!waitFor(POLLOUT)) {
      connect_error = "timed out";
      break;
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) {
      connect_error.clear();
      break;
    }
    connect_error = std::strerror(err);
  }
  if (!connect_error.empty())
    return Error::unavailable("connect " + t.addr + ": " + connect_error);
  int one = 1;
  setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  ctx_.reset(SSL_CTX_new(TLS_client_method()));
  if (!ctx_ || SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION) != 1 ||
      SSL_CTX_load_verify_locations(ctx_.get(), t.root.c_str(), nullptr) != 1)
    return meshid::pki::opensslError(meshid::Code::kInvalidArgument, "ca file " + t.root);
  if (!t.cert.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx_.get(), t.cert.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx_.get(), t.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
       SSL_CTX_check_private_key(ctx_.get()) != 1))
    return meshid::pki::opensslError(meshid::Code::kInvalidArgument,
                                     "client certificate " + t.cert + " or key " + t.key);
  SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(ctx_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
  ssl_.reset(SSL_new(ctx_.get()));
  if (!ssl_ || SSL_set_fd(ssl_.get(), fd_.get()) != 1)
    return meshid::pki::opensslError(meshid::Code::kInternal, "SSL_new");
  // gRPC C++ checks the host of its target against the certificate and sends
  // it as SNI unless it is an IP address.
  in6_addr ip;
  if (inet_pton(AF_INET, host.c_str(), &ip) == 1 || inet_pton(AF_INET6, host.c_str(), &ip) == 1) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), host.c_str()) != 1)
      return meshid::pki::opensslError(meshid::Code::kInvalidArgument, "server ip " + host);
  } else if (SSL_set1_host(ssl_.get(), host.c_str()) != 1 ||
             SSL_set_tlsext_host_name(ssl_.get(), host.c_str()) != 1) {
    return meshid::pki::opensslError(meshid::Code::kInvalidArgument, "server name " + host);
  }
  static constexpr unsigned char kAlpn[] = {2, 'h', '2'};
  if (SSL_set_alpn_protos(ssl_.get(), kAlpn, sizeof kAlpn) != 0)  // 0 = success here
    return meshid::pki::opensslError(meshid::Code::kInternal, "alpn");
  while (true) {
    int rc = SSL_connect(ssl_.get());
    if (rc == 1)
      break;
    int err = SSL_get_error(ssl_.get(), rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      long verify = SSL_get_verify_result(ssl_.get());
      std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify)
                                            : meshid::pki::drainOpensslErrors();
      meshid::pki::drainOpensslErrors();
      return Error::unavailable("tls handshake with " + t.addr + ": " + why);
    }
    if (!waitFor(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT))
      return Error::unavailable("tls handshake with " + t.addr + ": timed out");
  }
  const unsigned char* proto = nullptr;
  unsigned proto_len = 0;
  SSL_get0_alpn_selected(ssl_.get(), &proto, &proto_len);
  if (std::string_view(reinterpret_cast<const char*>(proto), proto_len) != "h2")
    return Error::unavailable("server " + t.addr + " did not agree on h2 by alpn");
  return meshid::okResult();
}

meshid::Result<void> H2Connection::startSession() {
  nghttp2_session_callbacks* raw_cbs = nullptr;
  if (nghttp2_session_callbacks_new(&raw_cbs) != 0)
    return meshid::Error::internal("nghttp2_session_callbacks_new");
  H2CallbacksPtr cbs(raw_cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs.get(), &onHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs.get(), &onDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs.get(), &onStreamClose);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs.get(), &onFrameRecv);
  nghttp2_session* raw = nullptr;
  if (nghttp2_session_client_new(&raw, cbs.get(), this) != 0)
    return meshid::Error::internal("nghttp2_session_client_new");
  session_.reset(raw);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kWindow)},
  };
  if (nghttp2_submit_settings(session_.get(), NGHTTP2_FLAG_NONE, settings, std::size(settings)) !=
          0 ||
      nghttp2_session_set_local_window_size(session_.get(), NGHTTP2_FLAG_NONE, 0, kWindow) != 0)
    return meshid::Error::internal("nghttp2 settings");
  auto nv = [](std::string_view name, std::string_view value) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                      value.size(), NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
  };
  // Names and values outlive every stream (literals and authority_).
  headers_ = {nv(":method", "POST"),
              nv(":scheme", "https"),
              nv(":path", kCreateCertificatePath),
              nv(":authority", authority_),
              nv("content-type", "application/grpc"),
              nv("te", "trailers")};
  if (!flush())
    return meshid::Error::unavailable("sending the http/2 preface: " + broken_);
  return meshid::okResult();
}

void H2Connection::run(const std::vector<std::string>& csrs, size_t offset, int concurrency,
                       double seconds, Results& results) {
  results_ = &results;
  csrs_ = &csrs;
  next_csr_ = offset;
  calls_.clear();
  ready_.clear();
  live_ = 0;
  if (!usable()) {
    results.add(0, false, broken_.empty() ? "server sent goaway" : broken_);
    return;
  }
  for (int i = 0; i < concurrency; ++i) {
    calls_.push_back(std::make_unique<Call>());
    ready_.push_back(calls_.back().get());
  }
  auto start = Clock::now();
  auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto drain_until = end + kCallTimeout;
  while (true) {
    auto now = Clock::now();
    bool stopping = now >= end;
    if (!stopping) {
      for (size_t i = 0; i < ready_.size() && usable(); ++i)
        submit(*ready_[i]);
      ready_.clear();
    }
    if (live_ == 0 && (stopping || !usable()))
      break;
    if (now >= drain_until) {
      fail("calls still open " + std::to_string(live_) + " after the run");
      break;
    }
    // The gRPC transport's per-call deadline.
    for (auto& c : calls_) {
      if (c->stream_id != 0 && c->failure.empty() && now - c->started >= kCallTimeout) {
        c->failure = "deadline exceeded";
        nghttp2_submit_rst_stream(session_.get(), NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
      }
    }
    if (!flush())
      break;
    if (!nghttp2_session_want_read(session_.get()) && !nghttp2_session_want_write(session_.get())) {
      fail("http/2 session ended");
      break;
    }
    Clock::time_point until = stopping ? drain_until : end;
    for (auto& c : calls_) {
      if (c->stream_id != 0 && c->failure.empty())
        until = std::min(until, c->started + kCallTimeout);
    }
    short events = POLLIN;
    if (out_sent_ < out_.size() && !write_wants_read_)
      events |= POLLOUT;
    pollfd p{fd_.get(), events, 0};
    int n = ::poll(&p, 1, pollTimeoutMs(now, until));
    if (n < 0 && errno != EINTR) {
      fail(std::string("poll: ") + std::strerror(errno));
      break;
    }
    if (n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) && !readAvailable())
      break;
  }
  results_ = nullptr;
}

void H2Connection::submit(Call& call) {
  const std::string& csr = (*csrs_)[next_csr_++ % csrs_->size()];
  req_.set_csr(csr);
  req_.set_validity_duration(3600);
  size_t len = req_.ByteSizeLong();
  call.request.resize(5 + len);
  call.request[0] = 0;  // not compressed
  for (int i = 0; i < 4; ++i)
    call.request[1 + i] = static_cast<char>((len >> (24 - 8 * i)) & 0xff);
  req_.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(call.request.data() + 5));
  call.request_sent = 0;
  call.response.clear();
  call.http_status = 0;
  call.grpc_status = -1;
  call.grpc_message.clear();
  call.failure.clear();
  nghttp2_data_provider body;
  body.source.ptr = &call;
  body.read_callback = &readBody;
  call.started = Clock::now();
  int32_t id = nghttp2_submit_request(session_.get(), nullptr, headers_.data(), headers_.size(),
                                      &body, &call);
  if (id < 0) {
    // Out of stream ids or a session shutting down: this connection is done.
    results_->add(0, false, std::string("submitting a call: ") + nghttp2_strerror(id));
    broken_ = std::string("submitting a call: ") + nghttp2_strerror(id);
    return;
  }
  call.stream_id = id;
  ++live_;
}

ssize_t H2Connection::readBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                               uint32_t* data_flags, nghttp2_data_source* source, void*) {
  auto* call = static_cast<Call*>(source->ptr);
  size_t n = std::min(length, call->request.size() - call->request_sent);
  std::memcpy(buf, call->request.data() + call->request_sent, n);
  call->request_sent += n;
  if (call->request_sent == call->request.size())
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int H2Connection::onHeader(nghttp2_session* session, const nghttp2_frame* frame,
                           const uint8_t* name, size_t namelen, const uint8_t* value,
                           size_t valuelen, uint8_t, void*) {
  if (frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  auto* call =
      static_cast<Call*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (!call)
    return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  auto number = [](std::string_view s) {
    int out = -1;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size() ? out : -2;
  };
  if (n == ":status")
    call->http_status = number(v);
  else if (n == "grpc-status")
    call->grpc_status = number(v);
  else if (n == "grpc-message")
    call->grpc_message = percentDecode(v);
  return 0;
}

int H2Connection::onDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                              const uint8_t* data, size_t len, void*) {
  auto* call = static_cast<Call*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (!call)
    return 0;
  if (call->response.size() + len > kMaxResponseBytes) {
    if (call->failure.empty()) {
      call->failure = "response larger than " + std::to_string(kMaxResponseBytes) + " bytes";
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    }
    return 0;
  }
  call->response.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int H2Connection::onStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                                void* self) {
  auto* call = static_cast<Call*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (call && call->stream_id == stream_id)
    static_cast<H2Connection*>(self)->finish(*call, error_code);
  return 0;
}

int H2Connection::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  if (frame->hd.type != NGHTTP2_GOAWAY)
    return 0;
  auto* c = static_cast<H2Connection*>(self);
  // nghttp2 closes the streams above last_stream_id (REFUSED_STREAM); those
  // below may still finish. No new call can start, so the run ends: an error.
  if (!c->goaway_ && c->results_) {
    std::string opaque(reinterpret_cast<const char*>(frame->goaway.opaque_data),
                       std::min<size_t>(frame->goaway.opaque_data_len, 200));
    c->results_->add(0, false,
                     std::string("server sent goaway: ") +
                         nghttp2_http2_strerror(frame->goaway.error_code) +
                         (opaque.empty() ? "" : " " + opaque));
  }
  c->goaway_ = true;
  return 0;
}

void H2Connection::finish(Call& call, uint32_t error_code) {
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - call.started).count();
  std::string err;
  if (!call.failure.empty()) {
    err = call.failure;
  } else if (error_code != NGHTTP2_NO_ERROR) {
    err = std::string("stream reset: ") + nghttp2_http2_strerror(error_code);
  } else if (call.http_status != 200) {
    err = "http status " + std::to_string(call.http_status);
  } else if (call.grpc_status < 0) {
    err = "no grpc-status in the trailers";
  } else if (call.grpc_status != 0) {
    err = call.grpc_message.empty() ? "grpc-status " + std::to_string(call.grpc_status)
                                    : call.grpc_message;
  } else {
    const auto& r = call.response;
    size_t len = r.size() < 5 ? 0
                              : (size_t{static_cast<uint8_t>(r[1])} << 24) |
                                    (size_t{static_cast<uint8_t>(r[2])} << 16) |
                                    (size_t{static_cast<uint8_t>(r[3])} << 8) |
                                    size_t{static_cast<uint8_t>(r[4])};
    if (r.size() < 5 || r[0] != 0 || r.size() != 5 + len)
      err = "response is not one uncompressed grpc message";
    else if (!resp_.ParseFromArray(r.data() + 5, static_cast<int>(len)))
      err = "response does not parse as IstioCertificateResponse";
    else if (resp_.cert_chain_size() < 2)
      err = "short chain";
  }
  if (results_)
    results_->add(ms, err.empty(), err);
  call.stream_id = 0;
  --live_;
  ready_.push_back(&call);
}

void H2Connection::failAll(const std::string& why) {
  for (auto& c : calls_) {
    if (c->stream_id == 0)
      continue;
    if (c->failure.empty())
      c->failure = why;
    finish(*c, NGHTTP2_NO_ERROR);
  }
}

void H2Connection::fail(const std::string& why) {
  if (broken_.empty())
    broken_ = why;
  failAll(why);
}

bool H2Connection::flush() {
  while (true) {
    if (out_sent_ < out_.size()) {
      write_wants_read_ = false;
      int n =
          SSL_write(ssl_.get(), out_.data() + out_sent_, static_cast<int>(out_.size() - out_sent_));
      if (n > 0) {
        out_sent_ += static_cast<size_t>(n);
        continue;
      }
      int err = SSL_get_error(ssl_.get(), n);
      if (err == SSL_ERROR_WANT_WRITE)
        return true;
      if (err == SSL_ERROR_WANT_READ) {
        write_wants_read_ = true;
        return true;
      }
      fail("connection lost while writing: " + meshid::pki::drainOpensslErrors());
      return false;
    }
    out_.clear();
    out_sent_ = 0;
    // Everything nghttp2 has queued goes out in as few TLS records as it fits.
    while (out_.size() < 256 * 1024) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_.get(), &data);
      if (n < 0) {
        fail(std::string("http/2: ") + nghttp2_strerror(static_cast<int>(n)));
        return false;
      }
      if (n == 0)
        break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (out_.empty())
      return true;
  }
}

bool H2Connection::readAvailable() {
  while (true) {
    int n = SSL_read(ssl_.get(), in_.data(), static_cast<int>(in_.size()));
    if (n > 0) {
      ssize_t rv = nghttp2_session_mem_recv(session_.get(), in_.data(), static_cast<size_t>(n));
      if (rv < 0) {
        fail(std::string("http/2: ") + nghttp2_strerror(static_cast<int>(rv)));
        return false;
      }
      continue;
    }
    int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
      return true;
    if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
      fail("connection closed by the server");
    else
      fail("connection lost: " + meshid::pki::drainOpensslErrors());
    return false;
  }
}

int H2Connection::pollTimeoutMs(Clock::time_point now, Clock::time_point until) const {
  if (until <= now)
    return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
  return static_cast<int>(std::min<int64_t>(ms, 1000));
}

void runH2(const H2Target& target, const std::vector<std::string>& csrs, int concurrency,
           double seconds, double warmup, Results& results, CpuClock& cpu) {
  auto conn = H2Connection::create(target);
  if (!conn.ok()) {
    results.add(0, false, conn.error().message);
    return;
  }
  Results warm;
  // Warm-up: the same load, results discarded, as the gRPC transport does.
  (*conn)->run(csrs, 0, concurrency, warmup, warm);
  cpu.start();
  (*conn)->run(csrs, 13, concurrency, seconds, results);
  cpu.stop();
}

void runCfssl(const std::string& host, int port, const std::vector<std::string>& csrs,
              int concurrency, double seconds, double warmup, Results& results, CpuClock& cpu) {
  auto body = [&](size_t i) {
    return nlohmann::json{{"certificate_request", csrs[i % csrs.size()]}}.dump();
  };
  auto phase = [&](double secs, Results& into) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < concurrency; ++t) {
      threads.emplace_back([&, t] {
        httplib::Client cli(host, port);
        cli.set_keep_alive(true);
        // Without it cfssl's answers wait out the client's delayed ACK (Nagle on
        // a request written in two pieces): ~44 ms per request at any load,
        // which measured the stall, not cfssl.
        cli.set_tcp_nodelay(true);
        cli.set_read_timeout(10, 0);
        size_t i = static_cast<size_t>(t) * 7919;
        while (!stop.load()) {
          auto start = Clock::now();
          auto res = cli.Post("/api/v1/cfssl/sign", body(i++), "application/json");
          double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
          bool ok =
              res && res->status == 200 && res->body.find("\"success\":true") != std::string::npos;
          into.add(ms, ok, res ? res->body.substr(0, 200) : "no response");
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
    stop = true;
    for (auto& th : threads)
      th.join();
  };
  Results warm;
  phase(warmup, warm);
  cpu.start();
  phase(seconds, results);
  cpu.stop();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CA issuance load generator"};
  std::string target = "meshid", transport = "h2", addr, root, cert, key, token,
              key_type = "ec-p256";
  std::string spiffe_id = "spiffe://example.org/ns/bench/sa/load";
  int concurrency = 8, csr_count = 2000, distinct_keys = 2000;
  double seconds = 10, warmup = 2;
  bool print_cpu = false;
  app.add_option("--target", target, "meshid or cfssl");
  app.add_option("--transport", transport,
                 "meshid: h2 (gRPC on nghttp2, light) or grpc (gRPC C++ client)")
      ->check(CLI::IsMember({"h2", "grpc"}));
  app.add_option("--addr", addr, "HOST:PORT")->required();
  app.add_option("--root", root, "meshid: CA root PEM");
  app.add_option("--cert", cert, "meshid: client certificate chain (mTLS identity)");
  app.add_option("--key", key, "meshid: client key");
  app.add_option("--token", token, "unused; reserved");
  app.add_option("--key-type", key_type, "CSR key type");
  app.add_option("--spiffe-id", spiffe_id, "identity in the CSRs");
  app.add_option("--concurrency", concurrency, "requests outstanding");
  app.add_option("--seconds", seconds, "measured time");
  app.add_option("--warmup", warmup, "warm-up time");
  app.add_option("--csrs", csr_count, "distinct CSRs to cycle through");
  app.add_option("--keys", distinct_keys, "distinct keys behind them");
  app.add_flag("--print-cpu", print_cpu,
               "print this process's CPU per call over the measured phase on stderr");
  CLI11_PARSE(app, argc, argv);

  auto csrs = makeCsrs(key_type, spiffe_id, csr_count, std::min(distinct_keys, csr_count));
  Results results;
  CpuClock cpu;
  if (target == "meshid" && transport == "h2") {
    runH2({.addr = addr, .root = root, .cert = cert, .key = key}, csrs, concurrency, seconds,
          warmup, results, cpu);
  } else if (target == "meshid") {
    runGrpc(addr, root, cert, key, token, csrs, concurrency, seconds, warmup, results, cpu);
  } else {
    size_t colon = addr.rfind(':');
    runCfssl(addr.substr(0, colon), std::stoi(addr.substr(colon + 1)), csrs, concurrency, seconds,
             warmup, results, cpu);
  }
  std::sort(results.latencies_ms.begin(), results.latencies_ms.end());
  auto pct = [&](double p) {
    if (results.latencies_ms.empty())
      return 0.0;
    size_t i = std::min(results.latencies_ms.size() - 1,
                        static_cast<size_t>(p * static_cast<double>(results.latencies_ms.size())));
    return results.latencies_ms[i];
  };
  nlohmann::json j = {{"target", target},
                      {"key_type", key_type},
                      {"concurrency", concurrency},
                      {"ok", results.latencies_ms.size()},
                      {"errors", results.errors},
                      {"per_second", static_cast<double>(results.latencies_ms.size()) / seconds},
                      {"p50_ms", pct(0.50)},
                      {"p90_ms", pct(0.90)},
                      {"p99_ms", pct(0.99)},
                      {"max_ms", pct(1.0)}};
  if (!results.first_error.empty())
    j["first_error"] = results.first_error;
  std::printf("%s\n", j.dump().c_str());
  if (print_cpu) {
    double calls = static_cast<double>(results.latencies_ms.size() + results.errors);
    std::fprintf(stderr, "load cpu: user_s=%.3f sys_s=%.3f calls=%.0f us_per_call=%.2f\n",
                 cpu.user_s, cpu.sys_s, calls,
                 calls > 0 ? (cpu.user_s + cpu.sys_s) * 1e6 / calls : 0.0);
  }
  return results.errors == 0 ? 0 : 1;
}
