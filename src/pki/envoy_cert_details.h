// One certificate in the shape of Envoy's admin `/certs` (path,
// serial_number, subject_alt_names, days_until_expiration, valid_from,
// expiration_time), shared by the agent's and the proxy's admin ports so
// dashboards and scripts read both alike.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

#include <openssl/types.h>

#include "common/clock.h"

namespace meshid::pki {

nlohmann::json envoyCertDetails(const X509* cert, const std::string& path, SystemTime now);

}  // namespace meshid::pki
