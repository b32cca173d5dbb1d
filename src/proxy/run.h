// Runs a proxy in the foreground until SIGTERM/SIGINT; SIGHUP rereads the
// config file and applies what can change live. Shared by `meshid proxy`
// (which passes the SDS-capable source factory) and the standalone
// `meshid-proxy` binary (files only).
#pragma once

#include <string>

#include "common/clock.h"
#include "common/result.h"
#include "proxy/cert_source.h"

namespace meshid::proxy {

Result<void> runUntilSignalled(const std::string& config_path, const std::string& log_level,
                               const Clock& clock, const CertSourceFactory& sources = nullptr);

}  // namespace meshid::proxy
