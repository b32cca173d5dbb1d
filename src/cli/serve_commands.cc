// `meshid ca serve` and `meshid token create`.
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include "ca/config.h"
#include "ca/join_token.h"
#include "ca/server.h"
#include "cli/buffered_fd_sink.h"
#include "cli/commands.h"
#include "cli/context.h"
#include "cli/output.h"
#include "cli/thread_cache.h"
#include "common/duration.h"
#include "store/sqlite_store.h"

namespace meshid::cli {
namespace {

struct ServeOptions {
  std::string config;
  std::string log_level = "info";
  std::string shutdown_grace = "10s";
};

struct TokenOptions {
  std::string config;
  std::string spiffe_id;
  std::string ttl = "10m";
  bool json = false;
};

// Everything to stdout, each line written at once, except the "issuance"
// logger's: the Issuer flushes those once per signed batch.
void setUpLogging(const std::string& level) {
  auto sink = std::make_shared<BufferedFdSink>(STDOUT_FILENO);
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("meshid", sink));
  auto issuance = std::make_shared<spdlog::logger>("issuance", sink);
  spdlog::drop("issuance");
  spdlog::register_logger(issuance);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
  issuance->flush_on(spdlog::level::warn);
}

Result<int> runServe(Context& ctx, const ServeOptions& o) {
  MESHID_ASSIGN_OR_RETURN(ca::CaConfig config, ca::loadCaConfig(o.config));
  MESHID_ASSIGN_OR_RETURN(Seconds grace, parseDuration(o.shutdown_grace));
  // First, before any file or thread is opened: it may exec this binary again.
  ThreadCacheNote cache = ensureThreadCache(config.malloc_thread_cache, ctx.argv);
  setUpLogging(o.log_level);
  if (cache.warning)
    spdlog::warn("{}", cache.line);
  else
    spdlog::info("{}", cache.line);
  // Block the stop signals before any thread starts, so every thread inherits
  // the mask and sigwait below is the only place they land.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  MESHID_ASSIGN_OR_RETURN(auto server, ca::CaServer::start(config, ctx.clock));
  spdlog::info("meshid CA serving trust_domain={} grpc={}:{} admin={}:{} signer={}",
               config.trust_domain.name(), config.listen.substr(0, config.listen.rfind(':')),
               server->grpcPort(), config.admin_listen.substr(0, config.admin_listen.rfind(':')),
               server->adminPort(), config.signer.type);
  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("shutting down signal={} grace={}", sig, formatDuration(grace));
  server->shutdown(grace);
  spdlog::info("stopped");
  return kExitOk;
}

Result<void> runToken(Context& ctx, const TokenOptions& o) {
  MESHID_ASSIGN_OR_RETURN(ca::CaConfig config, ca::loadCaConfig(o.config));
  MESHID_ASSIGN_OR_RETURN(pki::SpiffeId id, pki::SpiffeId::parse(o.spiffe_id));
  if (!(id.trustDomain() == config.trust_domain)) {
    return Error::invalidArgument(fmt::format("{} is not in this CA's trust domain {}", id.str(),
                                              config.trust_domain.name()));
  }
  if (id.isTrustDomainId()) {
    return Error::invalidArgument("a join token needs a workload SPIFFE ID (with a path)");
  }
  MESHID_ASSIGN_OR_RETURN(Seconds ttl, parseDuration(o.ttl));
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  MESHID_ASSIGN_OR_RETURN(auto store, store::SqliteStore::open(config.databasePath()));
  MESHID_ASSIGN_OR_RETURN(std::string token, ca::generateJoinToken());
  SystemTime now = ctx.clock.now();
  store::JoinTokenRecord record{.token_hash = ca::hashJoinToken(token),
                                .spiffe_id = id.str(),
                                .created_at = now,
                                .expires_at = now + ttl,
                                .used_at = std::nullopt};
  MESHID_RETURN_IF_ERROR(store->createJoinToken(record));
  if (o.json) {
    nlohmann::json j = {{"token", token},
                        {"spiffe_id", id.str()},
                        {"expires_at", formatRfc3339(record.expires_at)}};
    ctx.out << j.dump(2) << "\n";
  } else {
    ctx.out << token << "\n";
    ctx.err << fmt::format("one-time join token for {}, valid until {} ({})\n", id.str(),
                           formatRfc3339(record.expires_at), formatDuration(ttl));
  }
  return okResult();
}

}  // namespace

void addServeCommands(CLI::App& app, Context& ctx) {
  CLI::App* ca = app.get_subcommand("ca");
  auto serve = std::make_shared<ServeOptions>();
  CLI::App* s = ca->add_subcommand("serve", "Run the certificate authority (gRPC + admin HTTP)");
  s->add_option("--config", serve->config, "ca.yaml")->required();
  s->add_option("--log-level", serve->log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  s->add_option("--shutdown-grace", serve->shutdown_grace,
                "How long in-flight requests may take after SIGTERM")
      ->capture_default_str();
  s->callback([&ctx, serve] {
    auto r = runServe(ctx, *serve);
    ctx.exit_code = r.ok() ? *r : reportError(ctx.out, ctx.err, r.error(), false);
  });

  auto token = std::make_shared<TokenOptions>();
  CLI::App* t = app.add_subcommand("token", "Join tokens for hosts without Kubernetes");
  t->require_subcommand(1);
  CLI::App* c = t->add_subcommand(
      "create", "Print a one-time token that lets a host get its first certificate");
  c->add_option("--config", token->config, "The CA's ca.yaml (its database is used)")->required();
  c->add_option("--spiffe-id", token->spiffe_id, "The identity the token grants")->required();
  c->add_option("--ttl", token->ttl, "How long the token stays usable")->capture_default_str();
  c->add_flag("--json", token->json, "Print JSON");
  c->callback([&ctx, token] {
    auto r = runToken(ctx, *token);
    ctx.exit_code = r.ok() ? kExitOk : reportError(ctx.out, ctx.err, r.error(), token->json);
  });
}

}  // namespace meshid::cli
