// A small gRPC server of our own: the gRPC wire protocol (PROTOCOLS.md §1) on
// HTTP/2 (nghttp2) over TLS (OpenSSL), one asio event loop per thread.
//
// Why not gRPC C++: behind it the CA spent 48–74 µs of CPU per call in the
// transport alone, more than the 40 µs the throughput target leaves
// for everything but the two signature operations (docs/PERFORMANCE.md).
// This server does what the CA's APIs need and nothing else: unary and
// server-streaming calls, identity encoding only, client certificates
// verified when given and never required, a graceful GOAWAY on shutdown.
// Messages are opaque bytes here; the services parse their own protobufs.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace meshid::rpc {

// One call as its handler sees it. The views stay valid while the Call lives;
// a handler that answers later keeps its CallPtr. Answering is thread-safe:
// write/finish may be called from any thread; after the first finish the
// others do nothing.
class Call {
 public:
  virtual ~Call() = default;

  virtual std::string_view method() const = 0;   // "/package.Service/Method"
  virtual std::string_view request() const = 0;  // the request message's bytes
  // A request header by lower-case name (not pseudo-headers); the last one
  // sent wins.
  virtual std::optional<std::string_view> header(std::string_view name) const = 0;
  virtual std::string_view peer() const = 0;  // "ipv4:127.0.0.1:4242", as gRPC writes it
  // The client certificate's leaf (PEM) when the caller presented one; it
  // verified against the roots at handshake time. Empty otherwise.
  virtual const std::string& peerCertificatePem() const = 0;

  // Sends one response message (a server stream sends many).
  virtual void write(std::string message) = 0;
  // Ends the call with a status (kOk for success).
  virtual void finish(Code code, std::string message = {}) = 0;
  // write(message) then finish(kOk), in one hop to the connection's thread.
  virtual void finishWith(std::string message) = 0;
  // Runs once if the call ends without finish(): the client cancelled it or
  // the connection went away. Runs at once if that has already happened.
  virtual void onCancel(std::function<void()> callback) = 0;
};
using CallPtr = std::shared_ptr<Call>;
using Handler = std::function<void(CallPtr)>;

struct GrpcServerOptions {
  std::string listen = "127.0.0.1:0";  // host:port; port 0 picks one
  // Key and certificate chain in one PEM file, and the roots client
  // certificates must chain to. Both are re-read when they change.
  std::filesystem::path identity_file;
  std::filesystem::path roots_file;
  std::chrono::milliseconds reload_interval{1000};
  size_t max_message_bytes = 64 * 1024;    // larger requests: RESOURCE_EXHAUSTED
  uint32_t max_concurrent_streams = 1024;  // per connection (HTTP/2 SETTINGS)
  size_t threads = 0;                      // event loops; 0 = one per core
  std::chrono::milliseconds handshake_timeout{10000};
  std::map<std::string, Handler, std::less<>> handlers;  // by method path
  // Work that handlers defer to the end of a read (a signing batch): called
  // on the loop's thread after a read's calls went to their handlers, it does
  // one unit and returns whether more is waiting. The connection sends its
  // answers between units. Answers given on a loop's own thread skip the
  // hop through its queue.
  std::function<bool()> run_deferred;
};

// What the transport saw, for metrics. Counters only grow.
struct GrpcServerStats {
  uint64_t connections_open = 0;
  uint64_t connections_accepted = 0;
  uint64_t handshakes_failed = 0;  // TLS handshake refused, broken or timed out
  uint64_t protocol_errors = 0;    // HTTP/2 errors that ended a connection
  uint64_t calls_refused = 0;      // answered by the transport: unknown method,
                                   // foreign content type, bad framing, too large
};

class GrpcServer {
 public:
  // Binds, loads the TLS identity and starts the loops; errors name what
  // could not be done.
  static Result<std::unique_ptr<GrpcServer>> start(GrpcServerOptions options);
  virtual ~GrpcServer() = default;

  virtual int port() const = 0;
  virtual GrpcServerStats stats() const = 0;
  // Stops accepting, tells every client to open no new calls (GOAWAY), waits
  // until the calls in flight are answered or `grace` has passed, then
  // closes what is left and stops the loops. Handlers may still answer
  // afterwards; those answers go nowhere. Idempotent.
  virtual void shutdown(std::chrono::milliseconds grace) = 0;
};

}  // namespace meshid::rpc
