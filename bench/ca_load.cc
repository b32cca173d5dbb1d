// Load generator for the CA issuance benchmark (bench/ca_issuance.sh): keeps
// C requests outstanding against meshid (gRPC+TLS, Istio's CreateCertificate)
// or cfssl (HTTP POST /api/v1/cfssl/sign) for a fixed time, with CSRs made
// before the clock starts, and prints one JSON line of results.
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "common/file_util.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "pki/csr.h"
#include "pki/key.h"

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
             int concurrency, double seconds, double warmup, Results& results) {
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
  for (auto& w : workers)
    w->start();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  std::unique_lock lock(done_mu);
  done_cv.wait(lock, [&] { return live.load() == 0; });
}

void runCfssl(const std::string& host, int port, const std::vector<std::string>& csrs,
              int concurrency, double seconds, double warmup, Results& results) {
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
  phase(seconds, results);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CA issuance load generator"};
  std::string target = "meshid", addr, root, cert, key, token, key_type = "ec-p256";
  std::string spiffe_id = "spiffe://example.org/ns/bench/sa/load";
  int concurrency = 8, csr_count = 2000, distinct_keys = 2000;
  double seconds = 10, warmup = 2;
  app.add_option("--target", target, "meshid or cfssl");
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
  CLI11_PARSE(app, argc, argv);

  auto csrs = makeCsrs(key_type, spiffe_id, csr_count, std::min(distinct_keys, csr_count));
  Results results;
  if (target == "meshid") {
    runGrpc(addr, root, cert, key, token, csrs, concurrency, seconds, warmup, results);
  } else {
    size_t colon = addr.rfind(':');
    runCfssl(addr.substr(0, colon), std::stoi(addr.substr(colon + 1)), csrs, concurrency, seconds,
             warmup, results);
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
  return results.errors == 0 ? 0 : 1;
}
