// One client connection of the gRPC server: TLS on a non-blocking socket,
// an HTTP/2 session (nghttp2) in memory, and the calls open on it. Lives on
// one event loop; everything but Call's answering methods runs on that
// loop's thread.
#pragma once

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <asio.hpp>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "rpc/grpc_server.h"
#include "rpc/idle_reset_filter.h"

namespace meshid::rpc::detail {

class H2Connection;

struct SslCtxFree {
  void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
using SharedSslCtx = std::shared_ptr<SSL_CTX>;

// An event loop: one thread running one io_context, and the connections it
// owns (touched only from that thread).
struct Loop {
  asio::io_context io{1};
  std::unordered_set<std::shared_ptr<H2Connection>> connections;
  std::thread thread;
};

// What every connection of a server shares.
struct ServerShared {
  const GrpcServerOptions* options = nullptr;
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_option* session_options = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  size_t connections = 0;            // guarded by mu; shutdown waits for it to reach 0
  std::atomic<bool> closing{false};  // a connection that starts now closes at once
  std::atomic<uint64_t> accepted{0}, handshakes_failed{0}, protocol_errors{0}, calls_refused{0};

  void connectionOpened();
  void connectionClosed();
};

class CallImpl final : public Call, public std::enable_shared_from_this<CallImpl> {
 public:
  CallImpl(std::weak_ptr<H2Connection> connection, std::weak_ptr<Loop> loop, int32_t stream_id,
           std::shared_ptr<const std::string> peer, std::shared_ptr<const std::string> peer_pem)
      : connection_(std::move(connection)),
        loop_(std::move(loop)),
        stream_id_(stream_id),
        peer_(std::move(peer)),
        peer_pem_(std::move(peer_pem)) {}

  std::string_view method() const override { return path_; }
  std::string_view request() const override { return request_; }
  std::optional<std::string_view> header(std::string_view name) const override;
  std::string_view peer() const override { return *peer_; }
  const std::string& peerCertificatePem() const override { return *peer_pem_; }
  void write(std::string message) override;
  void finish(Code code, std::string message) override;
  void finishWith(std::string message) override;
  void onCancel(std::function<void()> callback) override;

 private:
  friend class H2Connection;
  template <class F>
  void toLoop(F f);
  // The first finish wins: false for every later one.
  bool markFinished();
  // The stream ended before finish(): runs the cancel callback once.
  void cancelled();

  const std::weak_ptr<H2Connection> connection_;
  const std::weak_ptr<Loop> loop_;
  const int32_t stream_id_;
  const std::shared_ptr<const std::string> peer_;  // shared with the connection
  const std::shared_ptr<const std::string> peer_pem_;
  std::atomic<bool> finished_{false};
  std::mutex cancel_mu_;
  bool was_cancelled_ = false;             // guarded by cancel_mu_
  std::function<void()> cancel_callback_;  // guarded by cancel_mu_

  // Request side, filled while the stream's frames arrive (loop thread).
  std::string path_;
  std::string http_method_;
  std::string content_type_;
  std::vector<std::pair<std::string, std::string>> headers_;
  size_t header_bytes_ = 0;
  std::string body_;
  std::string_view request_;
  bool answered_early_ = false;  // refused while its body still arrived

  // Response side (loop thread).
  bool open_ = true;  // the HTTP/2 stream has not closed
  bool headers_sent_ = false;
  bool trailers_pending_ = false;
  std::string out_;  // framed messages not yet taken by nghttp2
  size_t out_offset_ = 0;
  Code status_code_ = Code::kOk;
  std::string status_message_;
};

// The callbacks and options every session of a server shares (free with
// nghttp2_session_callbacks_del and nghttp2_option_del).
nghttp2_session_callbacks* newSessionCallbacks();
nghttp2_option* newSessionOptions();

class H2Connection : public std::enable_shared_from_this<H2Connection> {
 public:
  H2Connection(std::shared_ptr<Loop> loop, asio::ip::tcp::socket socket, SharedSslCtx ctx,
               ServerShared& shared);
  ~H2Connection();

  void start();                    // TLS handshake, then HTTP/2
  void drain();                    // GOAWAY: no new calls; closes once the open ones end
  void close(const char* reason);  // logged at debug level
  std::string_view peerName() const { return peer_ ? std::string_view(*peer_) : "?"; }

  // nghttp2's callbacks (static trampolines in the .cc call these).
  int onBeginHeaders(const nghttp2_frame* frame);
  int onHeader(const nghttp2_frame* frame, std::string_view name, std::string_view value);
  int onDataChunk(int32_t stream_id, const uint8_t* data, size_t len);
  int onFrameRecv(const nghttp2_frame* frame);
  int onStreamClose(int32_t stream_id);
  int onFrameSend(const nghttp2_frame* frame);
  ssize_t readResponse(CallImpl& call, uint8_t* buf, size_t length, uint32_t* flags);

  // Answers, on the loop thread.
  void sendMessage(CallImpl& call, std::string message);
  void sendStatus(CallImpl& call, Code code, std::string message);

 private:
  void handshake();
  void startSession();
  void onReadable();
  void waitReadable();
  void flush();
  void flushSoon();
  void dispatch(const std::shared_ptr<CallImpl>& call);
  void refuse(CallImpl& call, Code code, std::string_view message);
  void submitTrailersOnly(CallImpl& call, Code code, std::string_view message);

  std::shared_ptr<Loop> loop_;
  asio::ip::tcp::socket socket_;
  SharedSslCtx ctx_;
  ServerShared& shared_;
  SSL* ssl_ = nullptr;
  nghttp2_session* session_ = nullptr;
  IdleResetFilter inbound_filter_;  // between TLS and nghttp2
  asio::steady_timer handshake_timer_;
  std::shared_ptr<const std::string> peer_;
  std::shared_ptr<const std::string> peer_pem_;
  std::unordered_map<int32_t, std::shared_ptr<CallImpl>> calls_;
  std::vector<std::shared_ptr<CallImpl>> ready_;  // complete requests to dispatch
  std::string out_;                               // bytes from nghttp2 that TLS has not taken yet
  size_t out_offset_ = 0;
  bool closed_ = false;
  bool draining_ = false;
  bool waiting_writable_ = false;
  bool flush_posted_ = false;
  bool counted_ = false;
};

}  // namespace meshid::rpc::detail
