#include "rpc/h2_connection.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include "pki/ossl_error.h"
#include "rpc/grpc_wire.h"

namespace meshid::rpc::detail {
namespace {

// One wake-up reads at most this many TLS records before letting the loop's
// other connections run.
constexpr int kReadsPerWake = 64;
constexpr size_t kReadBuffer = 16 * 1024;
// nghttp2 output gathered into one TLS write.
constexpr size_t kFlushBytes = 64 * 1024;
// Request headers other than pseudo-headers, per call.
constexpr size_t kMaxHeaderBytes = 16 * 1024;
// HTTP/2 flow-control windows we grant: large enough that a client never
// waits for a WINDOW_UPDATE to send a request.
constexpr int32_t kStreamWindow = 1 << 20;
constexpr int32_t kConnectionWindow = 16 << 20;

nghttp2_nv header(std::string_view name, std::string_view value, uint8_t flags) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), flags};
}
constexpr uint8_t kStatic = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
constexpr uint8_t kStaticName = NGHTTP2_NV_FLAG_NO_COPY_NAME;

ssize_t readResponseCallback(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                             uint32_t* flags, nghttp2_data_source* source, void* user) {
  auto* connection = static_cast<H2Connection*>(user);
  return connection->readResponse(*static_cast<CallImpl*>(source->ptr), buf, length, flags);
}

std::string describePeer(const asio::ip::tcp::socket& socket) {
  std::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec)
    return "unknown";
  if (ep.address().is_v4())
    return "ipv4:" + ep.address().to_string() + ":" + std::to_string(ep.port());
  return "ipv6:[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
}

std::string lastSslError() {
  std::string reasons = pki::drainOpensslErrors();
  return reasons.empty() ? "connection closed" : reasons;
}

}  // namespace

void ServerShared::connectionOpened() {
  accepted.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu);
  ++connections;
}

void ServerShared::connectionClosed() {
  {
    std::lock_guard lock(mu);
    --connections;
  }
  cv.notify_all();
}

// ---- CallImpl: answering from any thread --------------------------------

std::optional<std::string_view> CallImpl::header(std::string_view name) const {
  for (auto it = headers_.rbegin(); it != headers_.rend(); ++it) {
    if (it->first == name)
      return std::string_view(it->second);
  }
  return std::nullopt;
}

template <class F>
void CallImpl::toLoop(F f) {
  auto loop = loop_.lock();
  if (!loop)
    return;  // the server is gone; nobody to answer
  if (loop->io.get_executor().running_in_this_thread()) {
    auto connection = connection_.lock();
    if (connection && open_)
      f(*connection, *this);
    return;
  }
  asio::post(loop->io, [self = shared_from_this(), f = std::move(f)]() mutable {
    auto connection = self->connection_.lock();
    if (connection && self->open_)
      f(*connection, *self);
  });
}

void CallImpl::write(std::string message) {
  if (finished_.load(std::memory_order_acquire))
    return;
  toLoop([m = std::move(message)](H2Connection& c, CallImpl& call) mutable {
    c.sendMessage(call, std::move(m));
  });
}

bool CallImpl::markFinished() {
  if (finished_.exchange(true))
    return false;
  std::lock_guard lock(cancel_mu_);
  cancel_callback_ = nullptr;  // what it holds is no longer needed
  return true;
}

void CallImpl::finish(Code code, std::string message) {
  if (!markFinished())
    return;
  toLoop([code, m = std::move(message)](H2Connection& c, CallImpl& call) mutable {
    c.sendStatus(call, code, std::move(m));
  });
}

void CallImpl::finishWith(std::string message) {
  if (!markFinished())
    return;
  toLoop([m = std::move(message)](H2Connection& c, CallImpl& call) mutable {
    c.sendMessage(call, std::move(m));
    c.sendStatus(call, Code::kOk, {});
  });
}

void CallImpl::onCancel(std::function<void()> callback) {
  {
    std::lock_guard lock(cancel_mu_);
    if (!was_cancelled_) {
      cancel_callback_ = std::move(callback);
      return;
    }
  }
  callback();
}

void CallImpl::cancelled() {
  std::function<void()> callback;
  {
    std::lock_guard lock(cancel_mu_);
    if (was_cancelled_)
      return;
    was_cancelled_ = true;
    callback = std::move(cancel_callback_);
  }
  if (callback)
    callback();
}

// ---- H2Connection ------------------------------------------------------

H2Connection::H2Connection(std::shared_ptr<Loop> loop, asio::ip::tcp::socket socket,
                           SharedSslCtx ctx, ServerShared& shared)
    : loop_(std::move(loop)),
      socket_(std::move(socket)),
      ctx_(std::move(ctx)),
      shared_(shared),
      handshake_timer_(loop_->io) {}

H2Connection::~H2Connection() {
  if (session_)
    nghttp2_session_del(session_);
  if (ssl_)
    SSL_free(ssl_);
}

void H2Connection::start() {
  shared_.connectionOpened();
  counted_ = true;
  loop_->connections.insert(shared_from_this());
  if (shared_.closing.load()) {
    close("server shutting down");
    return;
  }
  std::error_code ec;
  socket_.non_blocking(true, ec);
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  peer_ = std::make_shared<const std::string>(describePeer(socket_));
  ssl_ = SSL_new(ctx_.get());
  if (!ssl_ || SSL_set_fd(ssl_, socket_.native_handle()) != 1) {
    spdlog::warn("grpc: cannot set up TLS for peer={}", *peer_);
    close("TLS setup failed");
    return;
  }
  handshake_timer_.expires_after(shared_.options->handshake_timeout);
  handshake_timer_.async_wait([weak = weak_from_this()](std::error_code e) {
    auto self = weak.lock();
    if (!e && self && !self->session_ && !self->closed_) {
      self->shared_.handshakes_failed.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("grpc: TLS handshake timed out peer={}", *self->peer_);
      self->close("TLS handshake timed out");
    }
  });
  handshake();
}

void H2Connection::handshake() {
  if (closed_)
    return;
  ERR_clear_error();
  int r = SSL_accept(ssl_);
  if (r == 1) {
    handshake_timer_.cancel();
    startSession();
    return;
  }
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    auto kind =
        e == SSL_ERROR_WANT_READ ? asio::socket_base::wait_read : asio::socket_base::wait_write;
    socket_.async_wait(kind, [self = shared_from_this()](std::error_code ec) {
      if (!ec)
        self->handshake();
    });
    return;
  }
  shared_.handshakes_failed.fetch_add(1, std::memory_order_relaxed);
  spdlog::debug("grpc: TLS handshake failed peer={} error={}", *peer_, lastSslError());
  close("TLS handshake failed");
}

void H2Connection::startSession() {
  std::string pem;
  if (X509* cert = SSL_get0_peer_certificate(ssl_);
      cert && SSL_get_verify_result(ssl_) == X509_V_OK) {
    if (BIO* bio = BIO_new(BIO_s_mem())) {
      if (PEM_write_bio_X509(bio, cert) == 1) {
        char* data = nullptr;
        long n = BIO_get_mem_data(bio, &data);
        pem.assign(data, static_cast<size_t>(n));
      }
      BIO_free(bio);
    }
  }
  peer_pem_ = std::make_shared<const std::string>(std::move(pem));

  if (nghttp2_session_server_new2(&session_, shared_.callbacks, this, shared_.session_options) !=
      0) {
    close("HTTP/2 session setup failed");
    return;
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, shared_.options->max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 2 * kMaxHeaderBytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  if (draining_) {
    drain();
    return;
  }
  flush();
  onReadable();  // the client's preface may already be in TLS's buffer
}

void H2Connection::waitReadable() {
  socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](std::error_code ec) {
    if (!ec)
      self->onReadable();
  });
}

void H2Connection::onReadable() {
  if (closed_)
    return;
  uint8_t buf[kReadBuffer];
  bool peer_gone = false;
  bool more = false;
  for (int i = 0;; ++i) {
    if (i == kReadsPerWake) {
      more = true;
      break;
    }
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      uint64_t dropped_before = inbound_filter_.dropped();
      bool accepted =
          inbound_filter_.feed(buf, static_cast<size_t>(n), [&](const uint8_t* data, size_t len) {
            ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
            if (rv >= 0)
              return true;
            shared_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
            spdlog::debug("grpc: HTTP/2 error peer={} error={}", *peer_,
                          nghttp2_strerror(static_cast<int>(rv)));
            return false;
          });
      if (inbound_filter_.dropped() != dropped_before)
        spdlog::debug("grpc: ignored a reset of a stream the client never opened peer={}", *peer_);
      if (!accepted) {
        peer_gone = true;
        break;
      }
      continue;
    }
    int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ)
      break;
    if (e != SSL_ERROR_ZERO_RETURN)
      spdlog::debug("grpc: connection ended peer={} error={}", *peer_, lastSslError());
    peer_gone = true;
    break;
  }
  std::vector<std::shared_ptr<CallImpl>> ready;
  ready.swap(ready_);
  for (const auto& call : ready)
    dispatch(call);
  if (!ready.empty() && shared_.options->run_deferred) {
    while (shared_.options->run_deferred() && !closed_)
      flush();
  }
  if (peer_gone) {
    close("peer ended the connection or broke HTTP/2");
    return;
  }
  flush();
  if (closed_)
    return;
  if (more) {
    asio::post(loop_->io, [self = shared_from_this()] { self->onReadable(); });
  } else {
    waitReadable();
  }
}

void H2Connection::flushSoon() {
  if (flush_posted_ || closed_)
    return;
  flush_posted_ = true;
  asio::post(loop_->io, [self = shared_from_this()] {
    self->flush_posted_ = false;
    self->flush();
  });
}

void H2Connection::flush() {
  if (closed_ || waiting_writable_ || !session_)
    return;
  for (;;) {
    while (out_.size() - out_offset_ < kFlushBytes) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        spdlog::debug("grpc: HTTP/2 send error peer={} error={}", *peer_,
                      nghttp2_strerror(static_cast<int>(n)));
        close("HTTP/2 send error");
        return;
      }
      if (n == 0)
        break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (out_offset_ == out_.size())
      break;
    ERR_clear_error();
    int w = SSL_write(ssl_, out_.data() + out_offset_, static_cast<int>(out_.size() - out_offset_));
    if (w > 0) {
      out_offset_ += static_cast<size_t>(w);
      if (out_offset_ == out_.size()) {
        out_.clear();
        out_offset_ = 0;
      }
      continue;
    }
    if (SSL_get_error(ssl_, w) == SSL_ERROR_WANT_WRITE) {
      waiting_writable_ = true;
      socket_.async_wait(asio::socket_base::wait_write,
                         [self = shared_from_this()](std::error_code ec) {
                           self->waiting_writable_ = false;
                           if (!ec)
                             self->flush();
                         });
      return;
    }
    spdlog::debug("grpc: write failed peer={} error={}", *peer_, lastSslError());
    close("TLS write failed");
    return;
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_))
    close("HTTP/2 session finished");
}

void H2Connection::drain() {
  draining_ = true;
  if (closed_)
    return;
  if (!session_)
    return;  // startSession() drains once the handshake is done
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  flush();
}

void H2Connection::close(const char* reason) {
  if (closed_)
    return;
  closed_ = true;
  spdlog::debug("grpc: closing connection peer={} reason={}", peerName(), reason);
  handshake_timer_.cancel();
  auto calls = std::move(calls_);
  calls_.clear();
  ready_.clear();
  for (auto& [id, call] : calls) {
    call->open_ = false;
    if (!call->finished_.load())
      call->cancelled();
  }
  if (ssl_ && session_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify, best effort; never waits
  }
  std::error_code ec;
  socket_.close(ec);
  if (counted_) {
    counted_ = false;
    shared_.connectionClosed();
  }
  // Last: this may drop the final reference other than the caller's.
  loop_->connections.erase(shared_from_this());
}

// ---- HTTP/2 callbacks --------------------------------------------------

int H2Connection::onBeginHeaders(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  auto call = std::make_shared<CallImpl>(weak_from_this(), std::weak_ptr<Loop>(loop_),
                                         frame->hd.stream_id, peer_, peer_pem_);
  calls_[frame->hd.stream_id] = std::move(call);
  return 0;
}

int H2Connection::onHeader(const nghttp2_frame* frame, std::string_view name,
                           std::string_view value) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;  // trailers from a client carry nothing a unary call needs
  auto it = calls_.find(frame->hd.stream_id);
  if (it == calls_.end())
    return 0;
  CallImpl& call = *it->second;
  if (name == ":path") {
    call.path_ = value;
  } else if (name == ":method") {
    call.http_method_ = value;
  } else if (name == "content-type") {
    call.content_type_ = value;
  } else if (!name.starts_with(":")) {
    call.header_bytes_ += name.size() + value.size();
    if (call.header_bytes_ > kMaxHeaderBytes)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream only
    call.headers_.emplace_back(name, value);
  }
  return 0;
}

int H2Connection::onDataChunk(int32_t stream_id, const uint8_t* data, size_t len) {
  auto it = calls_.find(stream_id);
  if (it == calls_.end())
    return 0;
  CallImpl& call = *it->second;
  if (call.answered_early_)
    return 0;
  // The prefix's 5 bytes plus the largest message accepted.
  if (call.body_.size() + len > shared_.options->max_message_bytes + 5) {
    call.answered_early_ = true;
    call.finished_.store(true);
    shared_.calls_refused.fetch_add(1, std::memory_order_relaxed);
    submitTrailersOnly(call, Code::kResourceExhausted,
                       "received message larger than max (more than " +
                           std::to_string(shared_.options->max_message_bytes) + " bytes)");
    call.body_.clear();
    call.body_.shrink_to_fit();
    return 0;
  }
  call.body_.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int H2Connection::onFrameRecv(const nghttp2_frame* frame) {
  if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  auto it = calls_.find(frame->hd.stream_id);
  if (it != calls_.end() && !it->second->answered_early_)
    ready_.push_back(it->second);
  return 0;
}

int H2Connection::onFrameSend(const nghttp2_frame* frame) {
  // nghttp2 answers a client's protocol error with a GOAWAY naming it, and
  // the connection ends once that is out.
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
    shared_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("grpc: GOAWAY sent peer={} error={}", *peer_,
                  nghttp2_http2_strerror(frame->goaway.error_code));
  }
  return 0;
}

int H2Connection::onStreamClose(int32_t stream_id) {
  auto it = calls_.find(stream_id);
  if (it == calls_.end())
    return 0;
  std::shared_ptr<CallImpl> call = std::move(it->second);
  calls_.erase(it);
  call->open_ = false;
  if (!call->finished_.load())
    call->cancelled();
  return 0;
}

// ---- calls -----------------------------------------------------------------

void H2Connection::dispatch(const std::shared_ptr<CallImpl>& call) {
  if (!call->open_)
    return;  // reset while waiting in ready_
  if (call->http_method_ != "POST" || !isGrpcContentType(call->content_type_)) {
    // Not a gRPC request (gRPC's HTTP mapping: 415 for a foreign content type).
    call->finished_.store(true);
    shared_.calls_refused.fetch_add(1, std::memory_order_relaxed);
    const nghttp2_nv nva[] = {header(":status", "415", kStatic),
                              header("content-type", "text/plain", kStatic)};
    nghttp2_submit_response(session_, call->stream_id_, nva, std::size(nva), nullptr);
    return;
  }
  auto handler = shared_.options->handlers.find(call->path_);
  if (handler == shared_.options->handlers.end()) {
    refuse(*call, Code::kUnimplemented, "unknown method " + call->path_);
    return;
  }
  // grpc-encoding alone is harmless: a message that claims compression is
  // refused by unframeRequest.
  auto message = unframeRequest(call->body_, shared_.options->max_message_bytes);
  if (!message.ok()) {
    refuse(*call, message.error().code, message.error().message);
    return;
  }
  call->request_ = *message;
  try {
    handler->second(call);
  } catch (const std::exception& e) {
    spdlog::error("grpc: handler for {} threw: {}", call->path_, e.what());
    call->finish(Code::kInternal, "internal error");
  }
}

void H2Connection::refuse(CallImpl& call, Code code, std::string_view message) {
  call.finished_.store(true);
  shared_.calls_refused.fetch_add(1, std::memory_order_relaxed);
  submitTrailersOnly(call, code, message);
}

void H2Connection::submitTrailersOnly(CallImpl& call, Code code, std::string_view message) {
  std::string status = std::to_string(static_cast<int>(code));
  std::string encoded = percentEncode(message);
  nghttp2_nv nva[] = {
      header(":status", "200", kStatic), header("content-type", "application/grpc", kStatic),
      header("grpc-status", status, kStaticName), header("grpc-message", encoded, kStaticName)};
  call.headers_sent_ = true;
  nghttp2_submit_response(session_, call.stream_id_, nva, encoded.empty() ? 3 : 4, nullptr);
  flushSoon();
}

void H2Connection::sendMessage(CallImpl& call, std::string message) {
  if (call.trailers_pending_)
    return;
  appendFramedMessage(call.out_, message);
  if (!call.headers_sent_) {
    call.headers_sent_ = true;
    const nghttp2_nv nva[] = {header(":status", "200", kStatic),
                              header("content-type", "application/grpc", kStatic),
                              header("grpc-accept-encoding", "identity", kStatic)};
    nghttp2_data_provider provider;
    provider.source.ptr = &call;
    provider.read_callback = readResponseCallback;
    nghttp2_submit_response(session_, call.stream_id_, nva, std::size(nva), &provider);
  } else {
    nghttp2_session_resume_data(session_, call.stream_id_);
  }
  flushSoon();
}

void H2Connection::sendStatus(CallImpl& call, Code code, std::string message) {
  if (!call.headers_sent_) {
    submitTrailersOnly(call, code, message);
    return;
  }
  if (call.trailers_pending_)
    return;
  call.trailers_pending_ = true;
  call.status_code_ = code;
  call.status_message_ = std::move(message);
  nghttp2_session_resume_data(session_, call.stream_id_);
  flushSoon();
}

ssize_t H2Connection::readResponse(CallImpl& call, uint8_t* buf, size_t length, uint32_t* flags) {
  size_t n = std::min(length, call.out_.size() - call.out_offset_);
  std::memcpy(buf, call.out_.data() + call.out_offset_, n);
  call.out_offset_ += n;
  if (call.out_offset_ == call.out_.size()) {
    call.out_.clear();
    call.out_offset_ = 0;
  }
  if (!call.out_.empty())
    return static_cast<ssize_t>(n);
  if (!call.trailers_pending_)
    return n > 0 ? static_cast<ssize_t>(n) : static_cast<ssize_t>(NGHTTP2_ERR_DEFERRED);
  // Everything is out: end the body and send the status as trailers.
  *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
  std::string status = std::to_string(static_cast<int>(call.status_code_));
  std::string encoded = percentEncode(call.status_message_);
  nghttp2_nv trailers[] = {header("grpc-status", status, kStaticName),
                           header("grpc-message", encoded, kStaticName)};
  nghttp2_submit_trailer(session_, call.stream_id_, trailers, encoded.empty() ? 1 : 2);
  return static_cast<ssize_t>(n);
}

// ---- nghttp2 trampolines -------------------------------------------------

namespace {

H2Connection& of(void* user) {
  return *static_cast<H2Connection*>(user);
}

int beginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  return of(user).onBeginHeaders(frame);
}
int onHeaderCb(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
               const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  return of(user).onHeader(frame, {reinterpret_cast<const char*>(name), namelen},
                           {reinterpret_cast<const char*>(value), valuelen});
}
int dataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
              void* user) {
  return of(user).onDataChunk(stream_id, data, len);
}
int frameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  return of(user).onFrameRecv(frame);
}
int streamClose(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  return of(user).onStreamClose(stream_id);
}
int frameSend(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  return of(user).onFrameSend(frame);
}

int sessionError(nghttp2_session*, int, const char* msg, size_t len, void* user) {
  // Why nghttp2 refused what a peer sent (the GOAWAY it answers with names only a code).
  spdlog::debug("grpc: HTTP/2 peer error peer={} detail={}", of(user).peerName(),
                std::string_view(msg, len));
  return 0;
}

int invalidFrame(nghttp2_session*, const nghttp2_frame* frame, int error, void* user) {
  spdlog::debug("grpc: HTTP/2 invalid frame peer={} type={} stream={} flags={} error={}",
                of(user).peerName(), frame->hd.type, frame->hd.stream_id, frame->hd.flags,
                nghttp2_strerror(error));
  return 0;
}

}  // namespace

nghttp2_session_callbacks* newSessionCallbacks() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0)
    return nullptr;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, beginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, onHeaderCb);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, dataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, streamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, frameSend);
  nghttp2_session_callbacks_set_error_callback2(cbs, sessionError);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, invalidFrame);
  return cbs;
}

nghttp2_option* newSessionOptions() {
  nghttp2_option* o = nullptr;
  if (nghttp2_option_new(&o) != 0)
    return nullptr;
  // gRPC's own servers take "authorization: bearer " as sent; refusing the
  // stream for its trailing space would answer INTERNAL where the caller
  // should learn that the credential is bad (UNAUTHENTICATED).
  nghttp2_option_set_no_rfc9113_leading_and_trailing_ws_validation(o, 1);
  return o;
}

}  // namespace meshid::rpc::detail
