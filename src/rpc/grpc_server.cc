#include "rpc/grpc_server.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <thread>

#include "common/admin_http.h"
#include "pki/ossl_error.h"
#include "rpc/h2_connection.h"

namespace meshid::rpc {
namespace {

using detail::H2Connection;
using detail::Loop;
using detail::SharedSslCtx;

std::string drainSslErrors() {
  std::string reasons = pki::drainOpensslErrors();
  return reasons.empty() ? "unknown error" : reasons;
}

// Offers only h2: gRPC runs on nothing else. A client that offers ALPN
// without h2 is refused; one that offers none is served (prior knowledge).
int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof kH2, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

Result<SharedSslCtx> buildContext(const GrpcServerOptions& o) {
  ERR_clear_error();
  SharedSslCtx ctx(SSL_CTX_new(TLS_server_method()), detail::SslCtxFree{});
  if (!ctx)
    return Error::internal("cannot create a TLS context: " + drainSslErrors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  const std::string identity = o.identity_file.string();
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), identity.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx.get(), identity.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    return Error::failedPrecondition(
        fmt::format("cannot use the serving identity {}: {}", identity, drainSslErrors()));
  }
  const std::string roots = o.roots_file.string();
  if (SSL_CTX_load_verify_locations(ctx.get(), roots.c_str(), nullptr) != 1) {
    return Error::failedPrecondition(
        fmt::format("cannot load the client roots {}: {}", roots, drainSslErrors()));
  }
  // Verify a client certificate when one is given, never require one: token
  // callers and join-token bootstraps have none (PROTOCOLS.md §1).
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_alpn_select_cb(ctx.get(), selectAlpn, nullptr);
  return ctx;
}

// A file's identity for change detection: modification time and size.
struct FileStamp {
  int64_t mtime_ns = -1;
  int64_t size = -1;
  bool operator==(const FileStamp&) const = default;
};

FileStamp stampOf(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0)
    return {};
  return {static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
          static_cast<int64_t>(st.st_size)};
}

class GrpcServerImpl final : public GrpcServer {
 public:
  explicit GrpcServerImpl(GrpcServerOptions options) : options_(std::move(options)) {
    shared_.options = &options_;
  }
  ~GrpcServerImpl() override {
    shutdown(std::chrono::milliseconds(0));
    if (shared_.callbacks)
      nghttp2_session_callbacks_del(shared_.callbacks);
    if (shared_.session_options)
      nghttp2_option_del(shared_.session_options);
  }

  Result<void> init();
  int port() const override { return port_; }
  GrpcServerStats stats() const override;
  void shutdown(std::chrono::milliseconds grace) override;

 private:
  void accept();
  void scheduleReload();
  void reloadIfChanged();
  SharedSslCtx context() {
    std::lock_guard lock(ctx_mu_);
    return ctx_;
  }

  GrpcServerOptions options_;
  mutable detail::ServerShared shared_;
  std::vector<std::shared_ptr<Loop>> loops_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;  // on loops_[0]
  std::unique_ptr<asio::steady_timer> reload_timer_;   // on loops_[0]
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  size_t next_loop_ = 0;  // loops_[0]'s thread only
  std::mutex ctx_mu_;
  SharedSslCtx ctx_;                        // guarded by ctx_mu_
  FileStamp identity_stamp_, roots_stamp_;  // loops_[0]'s thread only (after init)
  int port_ = 0;
  bool stopped_ = false;
};

Result<void> GrpcServerImpl::init() {
  shared_.callbacks = detail::newSessionCallbacks();
  shared_.session_options = detail::newSessionOptions();
  if (!shared_.callbacks || !shared_.session_options)
    return Error::internal("cannot set up HTTP/2");
  identity_stamp_ = stampOf(options_.identity_file);
  roots_stamp_ = stampOf(options_.roots_file);
  MESHID_ASSIGN_OR_RETURN(ctx_, buildContext(options_));

  size_t threads =
      options_.threads ? options_.threads : std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 0; i < threads; ++i)
    loops_.push_back(std::make_shared<Loop>());

  MESHID_ASSIGN_OR_RETURN(auto host_port, splitHostPort(options_.listen));
  auto [host, port] = host_port;
  if (host.empty() || host == "*")
    host = "0.0.0.0";
  std::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec)
    return Error::invalidArgument("bad listen address " + options_.listen);
  acceptor_ = std::make_unique<asio::ip::tcp::acceptor>(loops_[0]->io);
  asio::ip::tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec)
    acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    acceptor_->bind(endpoint, ec);
  if (!ec)
    acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error::unavailable(
        fmt::format("cannot listen on {}: {}", options_.listen, ec.message()));
  }
  port_ = acceptor_->local_endpoint().port();
  reload_timer_ = std::make_unique<asio::steady_timer>(loops_[0]->io);

  for (auto& loop : loops_) {
    guards_.push_back(asio::make_work_guard(loop->io));
    loop->thread = std::thread([l = loop.get()] { l->io.run(); });
  }
  asio::post(loops_[0]->io, [this] {
    accept();
    scheduleReload();
  });
  return okResult();
}

void GrpcServerImpl::accept() {
  auto& target = loops_[next_loop_++ % loops_.size()];
  acceptor_->async_accept(
      target->io, [this, target](std::error_code ec, asio::ip::tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_->is_open())
          return;
        if (ec) {
          // Out of descriptors or similar: say so, and try again shortly rather
          // than spinning.
          spdlog::warn("grpc: accept failed: {}", ec.message());
          auto retry = std::make_shared<asio::steady_timer>(loops_[0]->io);
          retry->expires_after(std::chrono::milliseconds(100));
          retry->async_wait([this, retry](std::error_code e) {
            if (!e && acceptor_->is_open())
              accept();
          });
          return;
        }
        auto ctx = context();
        asio::post(target->io, [target, ctx, s = std::move(socket), shared = &shared_]() mutable {
          std::make_shared<H2Connection>(target, std::move(s), ctx, *shared)->start();
        });
        accept();
      });
}

void GrpcServerImpl::scheduleReload() {
  reload_timer_->expires_after(options_.reload_interval);
  reload_timer_->async_wait([this](std::error_code ec) {
    if (ec)
      return;
    reloadIfChanged();
    scheduleReload();
  });
}

void GrpcServerImpl::reloadIfChanged() {
  FileStamp identity = stampOf(options_.identity_file);
  FileStamp roots = stampOf(options_.roots_file);
  if (identity == identity_stamp_ && roots == roots_stamp_)
    return;
  auto ctx = buildContext(options_);
  if (!ctx.ok()) {
    // The files may be mid-replacement; the old context keeps serving and
    // the next tick tries again.
    spdlog::warn("grpc: keeping the current TLS identity: {}", ctx.error().message);
    return;
  }
  identity_stamp_ = identity;
  roots_stamp_ = roots;
  std::lock_guard lock(ctx_mu_);
  ctx_ = std::move(*ctx);
}

GrpcServerStats GrpcServerImpl::stats() const {
  GrpcServerStats s;
  {
    std::lock_guard lock(shared_.mu);
    s.connections_open = shared_.connections;
  }
  s.connections_accepted = shared_.accepted.load(std::memory_order_relaxed);
  s.handshakes_failed = shared_.handshakes_failed.load(std::memory_order_relaxed);
  s.protocol_errors = shared_.protocol_errors.load(std::memory_order_relaxed);
  s.calls_refused = shared_.calls_refused.load(std::memory_order_relaxed);
  return s;
}

void GrpcServerImpl::shutdown(std::chrono::milliseconds grace) {
  if (stopped_)
    return;
  stopped_ = true;
  if (loops_.empty() || !acceptor_)
    return;
  auto deadline = std::chrono::steady_clock::now() + grace;
  asio::post(loops_[0]->io, [this] {
    std::error_code ec;
    acceptor_->close(ec);
    reload_timer_->cancel();
  });
  for (auto& loop : loops_) {
    asio::post(loop->io, [l = loop.get()] {
      auto connections = l->connections;  // drain() may close and erase
      for (const auto& c : connections)
        c->drain();
    });
  }
  {
    std::unique_lock lock(shared_.mu);
    shared_.cv.wait_until(lock, deadline, [&] { return shared_.connections == 0; });
  }
  shared_.closing.store(true);
  for (auto& loop : loops_) {
    asio::post(loop->io, [l = loop.get()] {
      auto connections = l->connections;
      for (const auto& c : connections)
        c->close("server stopped");
    });
  }
  guards_.clear();
  for (auto& loop : loops_) {
    if (loop->thread.joinable())
      loop->thread.join();
  }
  // Connections accepted but not yet started are in the loops' queues; their
  // destruction with the loops closes them.
}

}  // namespace

Result<std::unique_ptr<GrpcServer>> GrpcServer::start(GrpcServerOptions options) {
  auto server = std::make_unique<GrpcServerImpl>(std::move(options));
  MESHID_RETURN_IF_ERROR(server->init());
  return std::unique_ptr<GrpcServer>(std::move(server));
}

}  // namespace meshid::rpc
