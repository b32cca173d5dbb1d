// `meshid proxy --config proxy.yaml`: the mTLS sidecar.
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/context.h"
#include "cli/output.h"
#include "proxy/config.h"
#include "proxy/proxy.h"

namespace meshid::cli {
namespace {

struct ProxyOptions {
  std::string config;
  std::string log_level = "info";
};

Result<int> runProxy(Context& ctx, const ProxyOptions& o) {
  MESHID_ASSIGN_OR_RETURN(proxy::ProxyConfig config, proxy::loadProxyConfig(o.config));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  spdlog::flush_on(spdlog::level::info);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  MESHID_ASSIGN_OR_RETURN(auto p, proxy::startProxy(config, ctx.clock));
  std::string ports;
  for (const auto& l : config.inbound)
    ports += fmt::format(" {}=inbound:{}:{}", l.name, proxy::modeName(l.mode), p->port(l.name));
  for (const auto& l : config.outbound)
    ports += fmt::format(" {}=outbound:{}", l.name, p->port(l.name));
  spdlog::info("meshid proxy running admin={}:{}{}",
               config.admin_listen.substr(0, config.admin_listen.rfind(':')), p->adminPort(),
               ports);
  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("shutting down signal={}", sig);
  p->shutdown();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace

void addProxyCommands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ProxyOptions>();
  CLI::App* p = app.add_subcommand(
      "proxy", "Run the mTLS sidecar: inbound and outbound listeners with SPIFFE authorization");
  p->add_option("--config", o->config, "proxy.yaml")->required();
  p->add_option("--log-level", o->log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  p->callback([&ctx, o] {
    auto r = runProxy(ctx, *o);
    ctx.exit_code = r.ok() ? *r : reportError(ctx.out, ctx.err, r.error(), false);
  });
}

}  // namespace meshid::cli
