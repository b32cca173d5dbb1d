#include "pki/tls_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "pki/ossl_error.h"

namespace meshid::pki {
namespace {

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool isIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Connects within timeout; the socket stays non-blocking so the handshake can
// be bounded by the same deadline.
Result<int> connectWithTimeout(const std::string& host, uint16_t port,
                               std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    return Error::unavailable(fmt::format("cannot resolve {}: {}", host, gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(res, freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    Socket sock(fd);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n <= 0) {
      last_error = n == 0 ? "connection timed out" : std::strerror(errno);
      continue;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) {
      last_error = std::strerror(soerr);
      continue;
    }
    return ::dup(fd);  // stays non-blocking; Socket closes the original
  }
  return Error::unavailable(fmt::format("cannot connect to {}:{}: {}", host, port, last_error));
}

}  // namespace

Result<TlsProbeResult> probeTls(const TlsProbeOptions& options) {
  if (options.host.empty() || options.port == 0) {
    return Error::invalidArgument("endpoint must be HOST:PORT");
  }
  if (options.timeout.count() <= 0) {
    return Error::invalidArgument("timeout must be positive");
  }
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    return opensslError(Code::kInternal, "cannot create TLS context");
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // The chain is judged afterwards by verifyChain, with reasons in words.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  if (options.client_key) {
    if (options.client_chain.empty() ||
        SSL_CTX_use_certificate(ctx.get(), options.client_chain.front().get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx.get(), options.client_key.get()) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1) {
      return opensslError(Code::kInvalidArgument, "client certificate and key do not form a pair");
    }
    for (size_t i = 1; i < options.client_chain.size(); ++i) {
      SSL_CTX_add1_chain_cert(ctx.get(), options.client_chain[i].get());
    }
  }
  MESHID_ASSIGN_OR_RETURN(int fd, connectWithTimeout(options.host, options.port, options.timeout));
  Socket sock(fd);
  SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd);
  std::string sni = !options.server_name.empty() ? options.server_name
                    : isIpLiteral(options.host)  ? std::string()
                                                 : options.host;
  if (!sni.empty()) {
    SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  }
  // One deadline for the whole handshake: a peer that drips bytes cannot
  // stretch it (per-read socket timeouts would reset on every byte).
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  for (;;) {
    int rc = SSL_connect(ssl.get());
    if (rc == 1)
      break;
    int err = SSL_get_error(ssl.get(), rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      return opensslError(Code::kUnavailable, fmt::format("TLS handshake with {}:{} failed",
                                                          options.host, options.port));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      drainOpensslErrors();
      return Error::unavailable(fmt::format("TLS handshake with {}:{} timed out after {} ms",
                                            options.host, options.port, options.timeout.count()));
    }
  }
  TlsProbeResult out;
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl.get());  // client side: leaf included
  for (int i = 0; chain && i < sk_X509_num(chain); ++i) {
    out.presented.push_back(shareX509(sk_X509_value(chain, i)));
  }
  out.protocol = SSL_get_version(ssl.get());
  out.cipher = SSL_get_cipher_name(ssl.get());
  SSL_shutdown(ssl.get());
  drainOpensslErrors();
  if (out.presented.empty()) {
    return Error::unavailable(
        fmt::format("{}:{} presented no certificate", options.host, options.port));
  }
  return out;
}

}  // namespace meshid::pki
