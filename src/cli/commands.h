#pragma once

namespace CLI {
class App;
}

namespace meshid::cli {

struct Context;

void addCaCommands(CLI::App& app, Context& ctx);
void addCertCommands(CLI::App& app, Context& ctx);
void addCsrCommands(CLI::App& app, Context& ctx);
// After addCaCommands: adds `ca serve` and `token`.
void addServeCommands(CLI::App& app, Context& ctx);
// After addCaCommands: adds `ca issuances`.
void addRecordsCommand(CLI::App& app, Context& ctx);
// After addCertCommands: adds `cert request`.
void addRequestCommand(CLI::App& app, Context& ctx);
// `agent` and `agent status`.
void addAgentCommands(CLI::App& app, Context& ctx);
// `proxy`.
void addProxyCommands(CLI::App& app, Context& ctx);

}  // namespace meshid::cli
