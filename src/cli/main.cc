// meshid: one binary, one subcommand per job.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "cli/context.h"

int main(int argc, char** argv) {
  meshid::SystemClock clock;
  meshid::cli::Context ctx{.clock = clock, .argv = argv};

  CLI::App app{"meshid: SPIFFE identities for a service mesh, issued and rotated"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("meshid ") + MESHID_VERSION);
  meshid::cli::addCaCommands(app, ctx);
  meshid::cli::addCertCommands(app, ctx);
  meshid::cli::addCsrCommands(app, ctx);
  meshid::cli::addServeCommands(app, ctx);
  meshid::cli::addRecordsCommand(app, ctx);
  meshid::cli::addRequestCommand(app, ctx);
  meshid::cli::addAgentCommands(app, ctx);
#ifdef MESHID_WITH_PROXY
  meshid::cli::addProxyCommands(app, ctx);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return meshid::cli::kExitUsage;
  }
  return ctx.exit_code;
}
