// `meshid agent --config agent.yaml` (run the agent) and `meshid agent status`
// (ask a running agent over its admin socket).
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/config.h"
#include "cli/commands.h"
#include "cli/context.h"
#include "cli/output.h"
#include "common/duration.h"
#include "meshid/v1/agent.grpc.pb.h"

namespace meshid::cli {
namespace {

struct AgentOptions {
  std::string config;
  std::string log_level = "info";
};

struct StatusOptions {
  std::string admin_socket;
  std::string config;
  bool json = false;
};

Result<int> runAgent(Context& ctx, const AgentOptions& o) {
  MESHID_ASSIGN_OR_RETURN(agent::AgentConfig config,
                          agent::loadAgentConfig(o.config, agent::processEnvironment()));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  spdlog::flush_on(spdlog::level::info);
  // Block the stop signals before any thread starts, so sigwait below is the
  // only place they land. SIGPIPE is ignored: a workload that hangs up must
  // not kill the agent.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  SystemRandom random;
  MESHID_ASSIGN_OR_RETURN(auto agent, agent::startAgent(config, ctx.clock, random));
  spdlog::info(
      "meshid agent running trust_domain={} entries={} ttl={} admin={}:{} sds={} "
      "workload_api={}",
      config.trust_domain.name(), config.entries.size(), formatDuration(config.ttl),
      config.admin_listen.substr(0, config.admin_listen.rfind(':')), agent->adminPort(),
      config.sds_socket.string(), config.workload_api_socket.string());
  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("shutting down signal={}", sig);
  agent->shutdown();
  spdlog::info("stopped");
  return kExitOk;
}

std::string cell(const nlohmann::json& j, const char* key) {
  if (!j.contains(key))
    return "-";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

Result<int> runStatus(Context& ctx, const StatusOptions& o) {
  std::string socket = o.admin_socket;
  if (socket.empty() && !o.config.empty()) {
    MESHID_ASSIGN_OR_RETURN(agent::AgentConfig config, agent::loadAgentConfig(o.config, {}));
    socket = config.admin_socket.string();
  }
  if (socket.empty())
    return Error::invalidArgument("give --admin-socket, or --config with sockets.admin set");
  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  grpc::ClientContext call;
  call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  meshid::v1::AgentStatusResponse response;
  grpc::Status s = meshid::v1::AgentAdmin::NewStub(channel)->Status(
      &call, meshid::v1::AgentStatusRequest(), &response);
  if (!s.ok()) {
    return Error{static_cast<Code>(s.error_code()),
                 fmt::format("agent admin socket {}: {}", socket, s.error_message())};
  }
  auto j = nlohmann::json::parse(response.json(), nullptr, false);
  if (j.is_discarded())
    return Error::internal("the agent answered with invalid JSON");
  if (o.json) {
    ctx.out << j.dump(2) << "\n";
    return kExitOk;
  }
  ctx.out << fmt::format("trust domain {}  CA {}  bundle v{} ({} root(s))  open streams {}\n\n",
                         cell(j, "trust_domain"), cell(j, "ca"),
                         j.contains("bundle") ? cell(j["bundle"], "version") : "-",
                         j.contains("bundle") ? cell(j["bundle"], "roots") : "-",
                         cell(j, "streams"));
  ctx.out << fmt::format("{:<56} {:<9} {:<34} {:<21} {:>9} {:>5}  {}\n", "SPIFFE ID", "STATE",
                         "SERIAL", "EXPIRES", "ROTATIONS", "FAILS", "NEXT ATTEMPT");
  bool all_ok = true;
  for (const auto& id : j["identities"]) {
    std::string name = cell(id, "spiffe_id") + (id.value("agent_self", false) ? " (agent)" : "");
    std::string state = cell(id, "state");
    all_ok = all_ok && (state == "ok" || state == "renewing");
    ctx.out << fmt::format("{:<56} {:<9} {:<34} {:<21} {:>9} {:>5}  {}\n", name, state,
                           cell(id, "serial"), cell(id, "not_after"), cell(id, "rotations"),
                           cell(id, "failures"), cell(id, "next_attempt"));
    if (id.contains("last_error"))
      ctx.out << "    last error: " << id["last_error"].get<std::string>() << "\n";
  }
  return all_ok ? kExitOk : kExitFailure;
}

}  // namespace

void addAgentCommands(CLI::App& app, Context& ctx) {
  auto run = std::make_shared<AgentOptions>();
  CLI::App* a = app.add_subcommand(
      "agent",
      "Run the node agent: keys, CSRs and rotation for local workloads (SDS, Workload "
      "API, files)");
  a->add_option("--config", run->config, "agent.yaml");
  a->add_option("--log-level", run->log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  auto st = std::make_shared<StatusOptions>();
  CLI::App* s = a->add_subcommand("status", "Show a running agent's identities and rotation state");
  s->add_option("--admin-socket", st->admin_socket, "The agent's admin socket");
  s->add_option("--config", st->config, "Or the agent's agent.yaml (for sockets.admin)");
  s->add_flag("--json", st->json, "Print JSON");
  s->callback([&ctx, st] {
    auto r = runStatus(ctx, *st);
    ctx.exit_code = r.ok() ? *r : reportError(ctx.out, ctx.err, r.error(), st->json);
  });
  a->callback([&ctx, run, s] {
    if (s->parsed())
      return;
    if (run->config.empty()) {
      ctx.exit_code =
          reportError(ctx.out, ctx.err,
                      Error::invalidArgument("meshid agent needs --config agent.yaml"), false);
      return;
    }
    auto r = runAgent(ctx, *run);
    ctx.exit_code = r.ok() ? *r : reportError(ctx.out, ctx.err, r.error(), false);
  });
}

}  // namespace meshid::cli
