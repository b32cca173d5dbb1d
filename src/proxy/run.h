// Runs a proxy in the foreground until SIGTERM/SIGINT: shared by
// `meshid proxy` and the standalone `meshid-proxy` binary.
#pragma once

#include <string>

#include "common/clock.h"
#include "common/result.h"

namespace meshid::proxy {

Result<void> runUntilSignalled(const std::string& config_path, const std::string& log_level,
                               const Clock& clock);

}  // namespace meshid::proxy
