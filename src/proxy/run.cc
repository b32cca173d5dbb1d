#include "proxy/run.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include "pki/builtin_ec_keys.h"
#include "proxy/config.h"
#include "proxy/proxy.h"

namespace meshid::proxy {

Result<void> runUntilSignalled(const std::string& config_path, const std::string& log_level,
                               const Clock& clock, const CertSourceFactory& sources) {
  MESHID_ASSIGN_OR_RETURN(ProxyConfig config, loadProxyConfig(config_path));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::flush_on(spdlog::level::info);
  // Block the stop signals before any thread starts, so sigwait below is the
  // only place they land; a peer that hangs up must not kill the proxy.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Before any certificate is parsed: the handshakes' certificate keys then
  // skip OpenSSL 3.0's decoder (pki/builtin_ec_keys.h).
  if (auto r = pki::useBuiltinEcKeysForCertificates(); !r.ok())
    spdlog::warn("certificate keys take OpenSSL's slower decoder path: {}", r.error().message);
  MESHID_ASSIGN_OR_RETURN(auto p, startProxy(config, clock, sources));
  std::string ports;
  for (const auto& l : config.inbound)
    ports += fmt::format(" {}=inbound:{}:{}", l.name, modeName(l.mode), p->port(l.name));
  for (const auto& l : config.outbound)
    ports += fmt::format(" {}=outbound:{}", l.name, p->port(l.name));
  // Before the "running" line, which tests and scripts wait for.
  if (config.busy_poll.count() == 0)
    spdlog::info("busy polling: off");
  else if (config.busy_poll_adaptive)
    spdlog::info(
        "busy polling: auto ({}us before a sleep, up to {}us when the usual wait is longer; "
        "while that catches events)",
        config.busy_poll.count(), kAutoBusyPollMax.count());
  else
    spdlog::info("busy polling: each worker polls for {}us before it sleeps (CPU for latency)",
                 config.busy_poll.count());
  spdlog::info("meshid proxy running admin={}:{}{}",
               config.admin_listen.substr(0, config.admin_listen.rfind(':')), p->adminPort(),
               ports);
  int sig = 0;
  for (;;) {
    sigwait(&stop, &sig);
    if (sig != SIGHUP)
      break;
    // A reload is all or nothing: a bad file or a change that needs a
    // restart is logged and the running config stays.
    if (auto r = p->reload(config_path); !r.ok())
      spdlog::error("configuration reload refused, keeping the running one: {}", r.error().message);
  }
  spdlog::info("shutting down signal={}", sig);
  p->shutdown();
  spdlog::info("stopped");
  return okResult();
}

}  // namespace meshid::proxy
