// `meshid proxy --config proxy.yaml`: the mTLS sidecar.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/context.h"
#include "cli/output.h"
#include "proxy/run.h"
#include "proxy/sds_client.h"

namespace meshid::cli {

void addProxyCommands(CLI::App& app, Context& ctx) {
  struct Options {
    std::string config;
    std::string log_level = "info";
  };
  auto o = std::make_shared<Options>();
  CLI::App* p = app.add_subcommand("proxy",
                                   "Run the mTLS sidecar: inbound and outbound listeners with "
                                   "SPIFFE authorization; SIGHUP reloads proxy.yaml");
  p->add_option("--config", o->config, "proxy.yaml")->required();
  p->add_option("--log-level", o->log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  p->callback([&ctx, o] {
    auto r = proxy::runUntilSignalled(o->config, o->log_level, ctx.clock, proxy::makeCertSource);
    ctx.exit_code = r.ok() ? kExitOk : reportError(ctx.out, ctx.err, r.error(), false);
  });
}

}  // namespace meshid::cli
