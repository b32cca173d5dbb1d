// The gRPC transport's ceiling for the CA benchmark: Istio's
// CreateCertificate served over the same TLS setup as `meshid ca serve`
// (same serving identity, client certificate verified when given), but
// answered with a fixed chain, without parsing, signing or recording anything.
// Whatever this reaches on one core is the most any signing CA behind that
// transport could reach there before the signatures' own cost is added.
// Two transports: gRPC C++ (the default: its callback or completion-queue
// API) and meshid's own (--transport rpc: src/rpc, what `meshid ca serve`
// runs on).
// Not a test and not part of meshid: bench/ca_issuance.sh runs it beside the CA.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <CLI/CLI.hpp>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "common/file_util.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "rpc/grpc_server.h"

namespace {

namespace auth = istio::v1::auth;

// With --handoff the answer comes from another thread, as meshid's signing
// queue does, to price the hand-off apart from gRPC itself.
class Handoff {
 public:
  Handoff() : thread_([this] { run(); }) {}
  ~Handoff() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void push(grpc::ServerUnaryReactor* r) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(r);
    }
    cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return;
      std::deque<grpc::ServerUnaryReactor*> batch;
      batch.swap(queue_);
      lock.unlock();
      for (auto* r : batch)
        r->Finish(grpc::Status::OK);
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<grpc::ServerUnaryReactor*> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

class FixedAnswer final : public auth::IstioCertificateService::CallbackService {
 public:
  FixedAnswer(std::vector<std::string> chain, Handoff* handoff)
      : chain_(std::move(chain)), handoff_(handoff) {}

  grpc::ServerUnaryReactor* CreateCertificate(grpc::CallbackServerContext* ctx,
                                              const auth::IstioCertificateRequest* req,
                                              auth::IstioCertificateResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->csr().empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty csr"));
      return reactor;
    }
    for (const auto& pem : chain_)
      resp->add_cert_chain(pem);
    if (handoff_)
      handoff_->push(reactor);
    else
      reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  std::vector<std::string> chain_;
  Handoff* handoff_;
};

// The same answer through gRPC's completion-queue API (--cq): the classic
// request/finish state machine, polled by `threads` threads. The CA uses the
// callback API; this prices the other one on the same transport.
class CqAnswer {
 public:
  CqAnswer(std::vector<std::string> chain, auth::IstioCertificateService::AsyncService& service,
           std::vector<std::unique_ptr<grpc::ServerCompletionQueue>>& queues)
      : chain_(std::move(chain)), service_(service) {
    for (auto& q : queues)
      threads_.emplace_back([this, cq = q.get()] { poll(cq); });
  }
  ~CqAnswer() {
    for (auto& t : threads_)
      t.join();
  }

 private:
  struct Call {
    grpc::ServerContext ctx;
    auth::IstioCertificateRequest request;
    grpc::ServerAsyncResponseWriter<auth::IstioCertificateResponse> responder{&ctx};
    bool finishing = false;
  };
  void requestNext(grpc::ServerCompletionQueue* cq) {
    auto* call = new Call;
    service_.RequestCreateCertificate(&call->ctx, &call->request, &call->responder, cq, cq, call);
  }
  void poll(grpc::ServerCompletionQueue* cq) {
    // Several calls waiting per queue, so a burst finds one ready.
    for (int i = 0; i < 64; ++i)
      requestNext(cq);
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
      auto* call = static_cast<Call*>(tag);
      if (!ok || call->finishing) {
        delete call;
        continue;
      }
      requestNext(cq);
      call->finishing = true;
      if (call->request.csr().empty()) {
        call->responder.FinishWithError(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty csr"), call);
        continue;
      }
      auth::IstioCertificateResponse resp;
      for (const auto& pem : chain_)
        resp.add_cert_chain(pem);
      call->responder.Finish(resp, grpc::Status::OK, call);
    }
  }

  std::vector<std::string> chain_;
  auth::IstioCertificateService::AsyncService& service_;
  std::vector<std::thread> threads_;
};

// A PEM bundle split into its certificates, leaf first.
std::vector<std::string> splitPem(const std::string& bundle) {
  static constexpr std::string_view kEnd = "-----END CERTIFICATE-----\n";
  std::vector<std::string> out;
  size_t from = 0;
  while (true) {
    size_t begin = bundle.find("-----BEGIN CERTIFICATE-----", from);
    if (begin == std::string::npos)
      break;
    size_t end = bundle.find(kEnd, begin);
    if (end == std::string::npos)
      break;
    out.push_back(bundle.substr(begin, end + kEnd.size() - begin));
    from = end + kEnd.size();
  }
  return out;
}

// The same fixed answer on meshid's own transport, answered on the loop that
// read the call, as the CA answers.
int serveOnRpc(const std::string& identity, const std::string& roots, const std::string& listen,
               const std::vector<std::string>& chain) {
  auth::IstioCertificateResponse fixed;
  for (const auto& pem : chain)
    fixed.add_cert_chain(pem);
  const std::string answer = fixed.SerializeAsString();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  meshid::rpc::GrpcServerOptions options;
  options.listen = listen;
  options.identity_file = identity;
  options.roots_file = roots;
  options.reload_interval = std::chrono::minutes(10);
  options.handlers["/istio.v1.auth.IstioCertificateService/CreateCertificate"] =
      [&answer](meshid::rpc::CallPtr call) {
        auth::IstioCertificateRequest request;  // parsed, as a CA must
        request.ParseFromArray(call->request().data(), static_cast<int>(call->request().size()));
        call->finishWith(answer);
      };
  auto server = meshid::rpc::GrpcServer::start(std::move(options));
  if (!server.ok()) {
    std::fprintf(stderr, "cannot serve: %s\n", server.error().message.c_str());
    return 1;
  }
  std::printf("listening port=%d\n", (*server)->port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  (*server)->shutdown(std::chrono::seconds(2));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fixed-answer IstioCertificateService over TLS: the gRPC ceiling"};
  std::string identity, roots, chain_file, listen = "127.0.0.1:0";
  bool handoff = false;
  int cq_threads = 0;
  app.add_option("--identity", identity, "PEM key + certificate chain to serve with")->required();
  app.add_option("--roots", roots, "PEM roots that verify client certificates")->required();
  app.add_option("--chain", chain_file, "PEM chain to answer with, leaf first")->required();
  app.add_option("--listen", listen, "address to listen on");
  app.add_flag("--handoff", handoff, "answer from another thread, as meshid's queue does");
  app.add_option("--cq", cq_threads,
                 "answer through the completion-queue API, with this many polling threads");
  std::string transport = "grpc";
  app.add_option("--transport", transport, "grpc (gRPC C++) or rpc (meshid's src/rpc)")
      ->check(CLI::IsMember({"grpc", "rpc"}));
  CLI11_PARSE(app, argc, argv);

  auto chain_pem = meshid::readFile(chain_file, 1 << 20);
  if (!chain_pem) {
    std::fprintf(stderr, "cannot read %s\n", chain_file.c_str());
    return 1;
  }
  auto chain = splitPem(*chain_pem);
  if (chain.size() < 2) {
    std::fprintf(stderr, "%s holds fewer than two certificates\n", chain_file.c_str());
    return 1;
  }

  if (transport == "rpc")
    return serveOnRpc(identity, roots, listen, chain);

  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      identity, identity, roots, 600);
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_root_certs();
  tls.watch_identity_key_cert_pairs();
  tls.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);

  // Blocked before any thread starts, so every thread inherits it and
  // sigwait below sees the signal.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::unique_ptr<Handoff> queue;
  if (handoff)
    queue = std::make_unique<Handoff>();
  FixedAnswer service(chain, queue.get());
  auth::IstioCertificateService::AsyncService async_service;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, grpc::experimental::TlsServerCredentials(tls), &port);
  if (cq_threads > 0) {
    builder.RegisterService(&async_service);
    for (int i = 0; i < cq_threads; ++i)
      queues.push_back(builder.AddCompletionQueue());
  } else {
    builder.RegisterService(&service);
  }
  auto server = builder.BuildAndStart();
  std::unique_ptr<CqAnswer> cq_answer;
  if (server && cq_threads > 0)
    cq_answer = std::make_unique<CqAnswer>(chain, async_service, queues);
  if (!server || port == 0) {
    std::fprintf(stderr, "cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::printf("listening port=%d\n", port);
  std::fflush(stdout);

  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  for (auto& q : queues)
    q->Shutdown();
  cq_answer.reset();  // joins the pollers once their queues drained
  return 0;
}
